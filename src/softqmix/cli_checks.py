"""Checks on the raw command line that Hydra's own messages leave unclear."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def _explain_override(exc: BaseException) -> str | None:
    """One line for an override Hydra cannot apply: an unknown key (`algo.lamda=0.5`) or a value of the wrong type
    (`algo.gamma=high`). Hydra prints these over six lines (the OmegaConf error with its full_key,
    reference_type and object_type, and a hint about HYDRA_FULL_ERROR)."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    override = re.fullmatch(r"Could not override '([^']+)'\.|Error merging override (\S+)", first)
    cause = exc.__cause__ or exc.__context__
    if override is None or cause is None or not str(cause):
        return None
    reason = str(cause).splitlines()[0]
    if override.group(1) is not None:  # an unknown key
        return f"cannot set {override.group(1)}: {reason}; `python train.py --cfg job` prints every setting"
    return f"cannot set {override.group(2)}: {reason}"


def explain_composition_error(exc: BaseException) -> str | None:
    """One line for a composition failure Hydra reports in its own terms; None for the others.

    `algo=mappo ablation=entropy` fails while Hydra merges the ablation's switches into MAPPO's schema
    ("Key 'mixer' not in 'MAPPOConfig'"): the real mistake is that ablations are variants of another
    algorithm. An unknown key or a wrong type on the command line: _explain_override.
    """
    from softqmix.algos.registry import ALGORITHMS

    match = re.match(r"In 'ablation/([^']+)'", str(exc))
    cause = exc.__cause__ or exc.__context__
    schema = getattr(cause, "object_type", None)
    if match is None or schema is None:
        return _explain_override(exc)
    algos = [spec for spec in ALGORITHMS if spec.config is schema]
    if not algos or any(spec.accepts_ablations for spec in algos):
        return None  # e.g. a typo inside an ablation file of an algorithm that takes ablations: Hydra's message
    owners = [spec.name for spec in ALGORITHMS if spec.accepts_ablations]
    ablation, name = match.group(1), "/".join(spec.name for spec in algos)
    return (
        f"ablation={ablation} is a variant of {', '.join(owners)}, not of algo={name} (the ablations in "
        f"conf/ablation/ are switch bundles of {owners[0]}); use algo={owners[0]} ablation={ablation}, "
        f"or drop ablation= for algo={name}"
    )


@contextlib.contextmanager
def _explained_composition_errors() -> Iterator[None]:
    """While Hydra runs: composition failures that explain_composition_error knows end with its one line.

    Hydra composes inside its own error reporter (`hydra._internal.utils.run_and_report`, which prints the
    exception and exits 1); the function it is given is wrapped here, so the failure is seen first.
    """
    from hydra._internal import utils as hydra_utils
    from hydra.errors import ConfigCompositionException

    report = hydra_utils.run_and_report

    def explained(func: Callable[[], Any]) -> Any:
        def composing() -> Any:
            try:
                return func()
            except ConfigCompositionException as exc:
                problem = explain_composition_error(exc)
                if problem is None:
                    raise
                print(f"error: {problem}", file=sys.stderr)
                sys.exit(2)

        return report(composing)

    hydra_utils.run_and_report = explained
    try:
        yield
    finally:
        hydra_utils.run_and_report = report


def run_train_cli() -> None:
    """`python train.py ...`, `python -m softqmix.train ...` and `softqmix-train ...`."""
    from softqmix import CONF_DIR

    sys.argv[1:] = flags_first(sys.argv[1:])  # `train.py algo=x -m seed=0,1` as well as `train.py -m ...`
    problem = unknown_group_choice(sys.argv[1:], CONF_DIR)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    from softqmix.train import main

    with _explained_composition_errors():
        main()


def run_evaluate_cli() -> None:
    """`python evaluate.py run=<run dir>`, `python -m softqmix.evaluate ...` and `softqmix-evaluate ...`."""
    from softqmix.evaluate import main

    main()
