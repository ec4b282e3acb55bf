"""Hydra callbacks of `python train.py` (listed under `hydra.callbacks` in conf/train.yaml).

RunDirLock takes the run dir's lock before Hydra writes its `.hydra/` files into the dir, so a second
process started on a busy dir stops without touching it, and keeps the dir's earlier `.hydra/` record so
that a run refused later (a resume that cannot go ahead) can put it back. SweepOutcome makes a multirun's exit code tell
the truth: the runs of a sweep go on when one fails (each failure is in its run's failed.json), and at the
end one line lists the runs that did not complete, with their dirs, and the exit code is 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from softqmix.errors import RunDirBusy, RunDirNotWritable
from softqmix.rundir import acquire_run_dir, release_run_dir

SWEEP_EXIT_CODE = 1  # a sweep in which at least one run failed
OUTCOME_FILES = ("summary.json", "failed.json", "preempted.json")


# Hydra's own record of the run (`.hydra/`) as it was before this process started, for restore_hydra_record:
# each file's bytes and (atime, mtime) in ns; `log`: the job's log file, its size (None: it did not exist) and times.
# `new_dir`: the run dir did not exist before this process (Hydra made it for this command).
_hydra_record: dict[str, Any] = {"dir": None, "files": {}, "times": {}, "log": None, "new_dir": False}


def run_dir_is_new() -> bool:
    """True when this process's Hydra created the run dir (so a refused run may delete it again)."""
    return bool(_hydra_record["new_dir"])


def restore_hydra_record() -> None:
    """Put back the `.hydra/` files this process's Hydra overwrote: a refused run (e.g. a resume of a finished
    run, or one with changed overrides) leaves the run it refused as it was; so does the job's log file, which
    Hydra opens (creating it) before the run starts."""
    if _hydra_record["log"] is not None:
        log, size, times = _hydra_record["log"]
        with contextlib.suppress(OSError):
            if size is None:
                log.unlink(missing_ok=True)
            else:
                os.truncate(log, size)
                os.utime(log, ns=times)
    record_dir, files = _hydra_record["dir"], _hydra_record["files"]
    if record_dir is None or not record_dir.is_dir():
        return
    if not files:  # there was no record before: Hydra's new one goes
        shutil.rmtree(record_dir)
        return
    for path in record_dir.iterdir():
        if path.name not in files:
            path.unlink()
    for name, data in files.items():
        (record_dir / name).write_bytes(data)
        if name in _hydra_record["times"]:  # as it was, to the timestamp
            os.utime(record_dir / name, ns=_hydra_record["times"][name])


class RunDirLock(Callback):
    """A single run's dir is locked from before Hydra writes into it until the run ends (softqmix.rundir)."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            run_dir = Path(str(OmegaConf.select(config, "hydra.run.dir")))
            subdir = OmegaConf.select(config, "hydra.output_subdir")
            job_name = OmegaConf.select(config, "hydra.job.name")
        except Exception:  # a dir Hydra can only resolve inside the job: train() takes the lock there
            return
        new_dir = not run_dir.exists()
        try:
            acquire_run_dir(run_dir)
        except (RunDirBusy, RunDirNotWritable) as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        self.run_dir = run_dir
        if subdir is not None:  # kept for restore_hydra_record, should this run be refused
            record_dir = (run_dir / str(subdir)).resolve()
            paths = [p for p in record_dir.iterdir() if p.is_file()] if record_dir.is_dir() else []
            files = {p.name: p.read_bytes() for p in paths}
            times = {p.name: (p.stat().st_atime_ns, p.stat().st_mtime_ns) for p in paths}
            _hydra_record.update(dir=record_dir, files=files, times=times)
        _hydra_record["new_dir"] = new_dir
        if job_name is not None:
            log = run_dir / f"{job_name}.log"
            stat = log.stat() if log.is_file() else None
            times = (stat.st_atime_ns, stat.st_mtime_ns) if stat else None
            _hydra_record["log"] = (log, stat.st_size if stat else None, times)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.run_dir is not None:
            release_run_dir(self.run_dir)


def _outcome_files(sweep_dir: Path) -> dict[Path, int]:
    """Each run's outcome files and Hydra's per-job overrides.yaml under a sweep dir, with their mtimes."""
    found: dict[Path, int] = {}
    if not sweep_dir.is_dir():
        return found
    for root, dirs, files in os.walk(sweep_dir):
        dirs[:] = [d for d in dirs if d not in ("wandb", "checkpoints", "tensorboard", ".submitit")]
        for name in files:
            if name in OUTCOME_FILES or (name == "overrides.yaml" and root.endswith(f"{os.sep}.hydra")):
                path = Path(root) / name
                with contextlib.suppress(OSError):  # gone since the walk listed it
                    found[path] = path.stat().st_mtime_ns
    return found


def failed_runs(sweep_dir: Path, before: dict[Path, int]) -> tuple[list[tuple[Path, str]], int]:
    """The runs of this sweep that did not complete, each with its error, and how many runs it had.

    "This sweep" = files written since `before` (a snapshot taken at its start), so runs left in the dir by
    an earlier sweep do not count. A run failed when it wrote a failed.json, or when Hydra started it (its
    `.hydra/overrides.yaml`) and it wrote no summary.json (killed, or refused to start in a busy dir).
    """
    now = _outcome_files(sweep_dir)
    fresh = {path for path, mtime in now.items() if before.get(path) != mtime}
    jobs = {p.parent.parent for p in fresh if p.name == "overrides.yaml"}
    jobs |= {p.parent for p in fresh if p.name in OUTCOME_FILES}
    failed = []
    for job in sorted(jobs):
        if job / "summary.json" in fresh and job / "failed.json" not in fresh:
            continue
        if job / "preempted.json" in fresh and job / "failed.json" not in fresh:
            failed.append((job, "preempted"))
        elif job / "failed.json" in fresh:
            try:
                failed.append((job, json.loads((job / "failed.json").read_text())["error"]))
            except (OSError, ValueError, KeyError):
                failed.append((job, "failed"))
        else:
            failed.append((job, "ended without summary.json; its error is in the sweep's output"))
    return failed, len(jobs)


class SweepOutcome(Callback):
    """After a multirun: one line naming each run that failed, and exit code 1 when any did."""

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None
        self.before: dict[Path, int] = {}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(str(OmegaConf.select(config, "hydra.sweep.dir"))).resolve()
        self.before = _outcome_files(self.sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.sweep_dir is None:
            return
        failed, total = failed_runs(self.sweep_dir, self.before)
        if not failed:
            return
        runs = ", ".join(f"{job} ({why})" for job, why in failed)
        print(
            f"error: {len(failed)} of {total} runs of the sweep failed (error and traceback in each run's "
            f"failed.json): {runs}",
            file=sys.stderr,
        )
        sys.exit(SWEEP_EXIT_CODE)
