"""What every parity harness here shares: running one training process with its time, and one of ours quietly.

The drivers next to this file import it by name (a script's own folder is first on sys.path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

# csv only, no report, no bar, no periodic checkpoints: what a driver reads back is summary.json
QUIET = ["logger=csv", "print_report=false", "trainer.enable_progress_bar=false", "checkpoint.interval=0"]


def single_thread_env() -> dict[str, str]:
    """One BLAS/OpenMP thread per run, so runs side by side on the cores do not oversubscribe them; no wandb."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


def timed_run(cmd: list[str], cwd: Path, log: Path) -> tuple[int, float, float]:
    """Run `cmd` with its output in `log`; its exit code, wall seconds and CPU seconds. wait4's usage covers the
    process and every child it waited for (env subprocesses joined when their vec envs close; workers never
    joined are not counted), and runs that go at the same time do not mix, unlike a RUSAGE_CHILDREN difference."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, env=single_thread_env())
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - started, usage.ru_utime + usage.ru_stime


def softqmix_command(overrides: list[str], run_dir: Path) -> list[str]:
    """`python -m softqmix.train` with `overrides`, quiet, in `run_dir` (what the drivers record as the command)."""
    return [sys.executable, "-m", "softqmix.train", *overrides, *QUIET, f"hydra.run.dir={run_dir}"]


def run_softqmix(overrides: list[str], run_dir: Path, log: Path) -> tuple[dict[str, Any], float, float]:
    """One `softqmix_command` run: its summary.json, wall and CPU seconds. Raises with the log's path when the run
    fails."""
    code, wall, cpu = timed_run(softqmix_command(overrides, run_dir), REPO_ROOT, log)
    if code != 0:
        raise RuntimeError(f"softqmix.train exited with {code}; see {log}")
    return json.loads((run_dir / "summary.json").read_text()), wall, cpu
