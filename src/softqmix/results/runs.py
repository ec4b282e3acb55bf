"""Find the runs under sweep directories and read what each one left behind.

A run directory is one that `train.py` (or Hydra, for a job that died before train.py wrote
anything) created: it holds `config.yaml` or `.hydra/config.yaml`. Its status comes from the
files next to it, so that nothing a sweep launched is dropped without being reported:
`summary.json` = completed, `failed.json` = failed (with the error), `preempted.json` = stopped
by a signal after a checkpoint, none of them = incomplete (still running, or killed outright).
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

RETURN = "return"
WIN_RATE = "win_rate"
METRIC_COLUMNS = {RETURN: "test/return_mean", WIN_RATE: "test/battle_won_mean"}
SUMMARY_KEYS = {RETURN: "final_test_return", WIN_RATE: "final_test_battle_won"}
EPISODE_KEYS = {RETURN: "returns", WIN_RATE: "battle_won"}


class RunStatus(StrEnum):
    completed = "completed"
    failed = "failed"
    preempted = "preempted"
    incomplete = "incomplete"


@dataclass
class RunRecord:
    """One run of a sweep, completed or not."""

    path: Path
    status: RunStatus
    env: str  # "<family>/<name>", e.g. "mpe/spread_simple"
    algo: str
    variant: str
    seed: int
    algo_config: dict[str, Any]
    env_config: dict[str, Any] = field(default_factory=dict)
    reports_wins: bool = False
    final: dict[str, float] = field(default_factory=dict)  # metric -> value at the last test
    tests: list[dict[str, Any]] = field(default_factory=list)  # per-evaluation, with per-episode lists
    error: str | None = None
    method: str = ""  # display name, set by label_methods

    @property
    def metrics(self) -> list[str]:
        return [RETURN, WIN_RATE] if self.reports_wins else [RETURN]


def _is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() or (path / ".hydra" / "config.yaml").is_file()


def find_run_dirs(roots: list[Path]) -> list[Path]:
    """Every run directory at or below the given paths (a run dir, a sweep dir, or a tree of sweeps)."""
    found: set[Path] = set()
    for root in roots:
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such directory; give a run or sweep directory")
        candidates = [root, *(p.parent.parent for p in root.rglob(".hydra/config.yaml"))]
        candidates += [p.parent for p in root.rglob("config.yaml") if p.parent.name != ".hydra"]
        found.update(c.resolve() for c in candidates if _is_run_dir(c))
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list[str | int]:
    """Sort job dirs as Hydra numbers them (2_... before 10_...), so methods keep the sweep's order."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def read_run(path: Path) -> RunRecord:
    config_file = path / "config.yaml" if (path / "config.yaml").is_file() else path / ".hydra" / "config.yaml"
    cfg = OmegaConf.load(config_file)
    algo_config = OmegaConf.to_container(cfg.algo, resolve=False)
    env_config = OmegaConf.to_container(cfg.env, resolve=False)
    assert isinstance(algo_config, dict) and isinstance(env_config, dict)
    record = RunRecord(
        path=path,
        status=RunStatus.incomplete,
        env=f"{cfg.env.family}/{cfg.env.name}",
        algo=str(cfg.algo.name),
        variant=str(cfg.algo.get("variant", "default")),
        seed=int(cfg.seed),
        algo_config=algo_config,
        env_config=env_config,
    )
    summary = _read_json(path / "summary.json")
    failure = _read_json(path / "failed.json")
    preempted = _read_json(path / "preempted.json")
    if summary is not None:
        record.status = RunStatus.completed
        record.reports_wins = bool(summary.get("reports_wins", False))
        record.tests = list(summary.get("tests", []))
        record.final = {m: float(summary[k]) for m, k in SUMMARY_KEYS.items() if summary.get(k) is not None}
    elif failure is not None:
        record.status, record.error = RunStatus.failed, f"{failure['error']}: {failure['message']}"
    elif preempted is not None:
        record.status = RunStatus.preempted
        record.error = f"stopped by signal {preempted.get('stop_signal')} at env step {preempted.get('env_steps')}"
    return record


def _differing(configs: list[dict[str, Any]]) -> list[str]:
    # keys every run has: a config written by an older version may lack a newer field
    keys = sorted(set.intersection(*(set(c) for c in configs)))
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]


def label_methods(records: list[RunRecord]) -> None:
    """Name each method `algo[variant]`, plus the algo keys, and the env keys within one env, that tell apart
    runs sharing that name.

    A sweep over `algo.alpha=0.01,0.03` then reads `soft_qmix alpha=0.01` and `soft_qmix alpha=0.03`
    instead of merging the two settings into one row; `env.time_limit_is_termination=true,false` on one map
    reads `qmix env.time_limit_is_termination=True` and `... =False`.
    """
    by_base: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        base = record.algo if record.variant == "default" else f"{record.algo}[{record.variant}]"
        by_base[base].append(record)
    for base, group in by_base.items():
        differing = _differing([r.algo_config for r in group])
        by_env: dict[str, list[RunRecord]] = defaultdict(list)
        for record in group:
            by_env[record.env].append(record)
        for same_env in by_env.values():
            env_differing = _differing([r.env_config for r in same_env])
            for record in same_env:
                parts = [f"{k}={record.algo_config.get(k)}" for k in differing]
                parts += [f"env.{k}={record.env_config.get(k)}" for k in env_differing]
                record.method = " ".join([base, *parts])


def load_runs(roots: list[Path]) -> list[RunRecord]:
    """Read every run below `roots` and name their methods."""
    records = [read_run(path) for path in find_run_dirs(roots)]
    label_methods(records)
    return records


def missing_seeds(records: list[RunRecord]) -> dict[tuple[str, str], list[int]]:
    """Seeds that some method of an env has and another lacks: (env, method) -> missing seeds.

    A sweep launches every method with the same seeds, so a gap means a run that never started
    (or whose directory was removed) and that the tables must not hide.
    """
    seeds_by_env: dict[str, set[int]] = defaultdict(set)
    seeds_by_method: dict[tuple[str, str], set[int]] = defaultdict(set)
    for record in records:
        seeds_by_env[record.env].add(record.seed)
        seeds_by_method[(record.env, record.method)].add(record.seed)
    return {
        key: sorted(seeds_by_env[key[0]] - seeds)
        for key, seeds in sorted(seeds_by_method.items())
        if seeds_by_env[key[0]] - seeds
    }


def read_test_curve(run_dir: Path, column: str = METRIC_COLUMNS[RETURN]) -> tuple[list[float], list[float]]:
    """(env steps, values) of every row of metrics.csv that has `column`; empty if there is no file."""
    steps: list[float] = []
    values: list[float] = []
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return steps, values
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get(column):
                steps.append(float(row["env_step"]))
                values.append(float(row[column]))
    return steps, values
