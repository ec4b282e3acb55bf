"""Sweeps through Hydra's parallel launchers, one run made to fail, then tables and the notebook on them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from omegaconf import OmegaConf

from softqmix.results import RunStatus, summarise
from tests.helpers import REPO_ROOT

# 2 ablations × 2 seeds; Hydra numbers the jobs (qmix, 0), (qmix, 1), (full, 0), (full, 1).
SWEEP = ["-m", "experiment=debug/tiny", "algo=soft_qmix", "ablation=qmix,full", "seed=0,1"]
FAILING_JOB = "3_soft_qmix-full_nonmonotonic_s1"
NOTEBOOK = REPO_ROOT / "notebooks" / "analysis.ipynb"


def run_sweep(sweep_dir: Path, launcher: list[str]) -> subprocess.CompletedProcess[str]:
    """The 2 × 2 sweep, after planting an unreadable checkpoint where job 3 will look for one."""
    broken = sweep_dir / FAILING_JOB / "checkpoints" / "last.ckpt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"half a checkpoint")
    return subprocess.run(
        [sys.executable, "train.py", *SWEEP, f"hydra.sweep.dir={sweep_dir}", *launcher],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def check_sweep_exit(proc: subprocess.CompletedProcess[str], sweep_dir: Path) -> None:
    """The sweep ran every job, then said in one line which one failed, and exited 1."""
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: 1 of 4 runs of the sweep failed (error and traceback in each run's failed.json): "
        f"{sweep_dir.resolve() / FAILING_JOB} (ResumeRefused)"
    )


@pytest.fixture(scope="module")
def joblib_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep_dir = tmp_path_factory.mktemp("joblib") / "sweep"
    proc = run_sweep(sweep_dir, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    check_sweep_exit(proc, sweep_dir)
    return sweep_dir


def check_sweep_outcome(sweep_dir: Path, tmp_path: Path) -> None:
    """Three runs finished, the fourth is recorded as failed with its reason, and the table says so."""
    report = summarise([sweep_dir], tmp_path / "results", reps=500)
    status = {r.path.name: r.status for r in report.records}
    assert status.pop(FAILING_JOB) is RunStatus.failed
    assert set(status.values()) == {RunStatus.completed} and len(status) == 3
    counts = dict(zip(report.table.method, report.table.n, strict=True))
    assert counts == {"soft_qmix[full]": 1, "soft_qmix[qmix]": 2}
    assert f"**failed** matrix/nonmonotonic soft_qmix[full] seed 1 ({sweep_dir / FAILING_JOB})" in report.markdown
    assert "cannot be read" in report.markdown
    config = OmegaConf.load(sweep_dir / "0_soft_qmix-qmix_nonmonotonic_s0" / "config.yaml")
    assert config.logger.group == str(sweep_dir)  # one wandb group per sweep


def test_joblib_sweep_survives_a_failing_run(joblib_sweep: Path, tmp_path: Path) -> None:
    check_sweep_outcome(joblib_sweep, tmp_path)


def test_submitit_local_sweep_survives_a_failing_run(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    proc = run_sweep(sweep_dir, ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"])
    check_sweep_exit(proc, sweep_dir)
    assert list((sweep_dir / ".submitit").iterdir())  # the jobs really went through submitit
    check_sweep_outcome(sweep_dir, tmp_path)


def test_analysis_notebook_runs_on_a_sweep(joblib_sweep: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    os.environ["SOFTQMIX_SWEEP_DIR"] = str(joblib_sweep)  # the kernel inherits it
    try:
        NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": REPO_ROOT}}
        ).execute()
    finally:
        del os.environ["SOFTQMIX_SWEEP_DIR"]
    text = "\n".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/markdown", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "| matrix/nonmonotonic |" in text  # the results table
    assert "**failed** matrix/nonmonotonic soft_qmix[full] seed 1" in text
    assert "Learned Q_tot (rows: agent 1, columns: agent 2)" in text  # the matrix-game tables
    images = [
        o
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if "image/png" in o.get("data", {})
    ]
    assert images  # the learning curves
