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
