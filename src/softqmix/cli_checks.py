"""Checks on the raw command line that Hydra's own messages leave unclear."""

from __future__ import annotations

import re
from pathlib import Path

GROUPS = ("algo", "ablation", "env", "logger", "trainer", "experiment")


def group_options(conf_dir: Path, group: str) -> list[str]:
    """Every option of a config group, nested ones as 'family/name' (e.g. env: matrix/nonmonotonic)."""
    root = conf_dir / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def unknown_group_choice(argv: list[str], conf_dir: Path) -> str | None:
    """A one-line error for `group=option` overrides naming an option that does not exist.

    Hydra reports a missing nested option (`env=matrix/nope`) without listing the valid
    ones; this names them all. Sweep values (`algo=qmix,vdn`) are checked one by one;
    sweep functions such as `glob(...)` are left to Hydra.
    """
    for arg in argv:
        match = re.fullmatch(r"(?:\+|~)?([a-z_]+)=(.+)", arg)
        if not match or match.group(1) not in GROUPS or "(" in match.group(2):
            continue
        group, value = match.groups()
        options = group_options(conf_dir, group)
        for choice in value.split(","):
            if choice not in options and choice != "null":
                return f"unknown {group} '{choice}'; valid options: {', '.join(options)}"
    return None


FLAGS_WITHOUT_VALUE = ("-m", "--multirun")


def flags_first(argv: list[str]) -> list[str]:
    """Move `-m`/`--multirun` in front of the overrides.

    Hydra's argparse takes overrides as one positional list, so `train.py algo=x -m seed=0,1`
    (the way people write a sweep) fails with "unrecognized arguments"; with the flag moved
    first it runs the intended sweep.
    """
    flags = [arg for arg in argv if arg in FLAGS_WITHOUT_VALUE]
    return flags + [arg for arg in argv if arg not in FLAGS_WITHOUT_VALUE]


def run_train_cli() -> None:
    """`python train.py ...`, `python -m softqmix.train ...` and `softqmix-train ...`."""
    import sys

    from softqmix import CONF_DIR

    sys.argv[1:] = flags_first(sys.argv[1:])  # `train.py algo=x -m seed=0,1` as well as `train.py -m ...`
    problem = unknown_group_choice(sys.argv[1:], CONF_DIR)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    from softqmix.train import main

    main()


def run_evaluate_cli() -> None:
    """`python evaluate.py run=<run dir>`, `python -m softqmix.evaluate ...` and `softqmix-evaluate ...`."""
    from softqmix.evaluate import main

    main()
