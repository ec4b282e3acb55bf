"""A quiet console: `python train.py` shows our progress bar, where the run lives and our report; what Lightning,
wandb and jaxmarl say goes to the run's log file."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from softqmix.console import run_console, third_party_output
from tests.helpers import REPO_ROOT

THIRD_PARTY = ("wandb:", "Tip", "GPU available", "TPU available", "litlogger", "Run history", "Run summary")


def _offline_wandb_env(tmp_path: Path) -> dict[str, str]:
    """A user without a wandb key, logging offline, with a home of its own (nothing reaches the real ~/.config)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    return {
        **env,
        "HOME": str(home),
        "NETRC": str(home / ".netrc"),
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path / "wandb_dir"),
        "WANDB_CONFIG_DIR": str(home / ".config" / "wandb"),
        "WANDB_CACHE_DIR": str(home / ".cache" / "wandb"),
        "WANDB_DATA_DIR": str(home / ".local" / "share" / "wandb"),
    }


def _train(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_default_console_shows_our_lines_and_the_log_file_gets_the_rest(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _train("t_max=300", f"hydra.run.dir={run_dir}", env=_offline_wandb_env(tmp_path))  # logger=wandb
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    assert [needle for needle in THIRD_PARTY if needle in console] == [], console[-3000:]
    # ours: where the run lives, the progress bar, the report
    offline_run = next((run_dir / "wandb").glob("offline-run-*"))
    assert f"run dir: {run_dir}\n" in proc.stdout
    assert f"wandb run (offline): {offline_run}; upload it with `wandb sync {offline_run}`" in proc.stdout
    assert "300/300" in proc.stderr  # the progress bar
    assert "Learned Q_tot" in proc.stdout
    # after the table, the verdict: 300 steps is not a setting of the study
    verdict = proc.stdout.index("verdict: the greedy joint action")
    assert proc.stdout.index("Learned Q_tot") < verdict < proc.stdout.index("done: 300 env steps")
    assert "not among those studied" in proc.stdout[verdict:]
    summary = re.escape(f"; summary in {run_dir / 'summary.json'}")
    assert re.search(rf"done: 300 env steps, final test return -?[0-9.]+ \(best -?[0-9.]+\){summary}\n$", proc.stdout)
    # theirs: in the run's log file
    log = (run_dir / "train.log").read_text()
    moved = (*THIRD_PARTY, "Trainer.fit", "Tracking run with wandb", "wandb sync")
    assert [needle for needle in moved if needle not in log] == []


def test_debug_true_keeps_the_libraries_console_output(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = _train("t_max=200", "logger=csv", "debug=true", f"hydra.run.dir={tmp_path}", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GPU available" in proc.stdout + proc.stderr and f"run dir: {tmp_path}" in proc.stdout


def test_third_party_prints_and_logs_go_to_the_log_file_and_everything_is_restored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lightning = logging.getLogger("lightning.pytorch")
    before = (list(logging.getLogger().handlers), list(lightning.handlers), lightning.propagate)
    log = tmp_path / "train.log"
    with run_console(log, quiet=True):
        with third_party_output():  # e.g. jaxmarl's import
            print("Importing submoduled environments...")
            print("Submoduled environments not found. Skipping import.", file=sys.stderr)
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False, used: False")
        print("ours")
    out = capsys.readouterr()
    assert out.out == "ours\n" and out.err == ""
    text = log.read_text()
    assert "[third_party][INFO] - Importing submoduled environments..." in text
    assert "Skipping import." in text and "GPU available: False" in text
    # the next job of a sweep starts from the console as it was
    assert before == (list(logging.getLogger().handlers), list(lightning.handlers), lightning.propagate)
    with third_party_output():
        print("printed again")
    assert capsys.readouterr().out == "printed again\n"


def test_third_party_output_is_caught_even_when_the_library_resets_sys_stdout(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Importing jaxmarl imports modules that put sys.stdout back to the terminal's stream before jaxmarl
    prints; the capture works at the file descriptors, so those lines (and raw writes) still reach the log."""
    log = tmp_path / "train.log"
    with run_console(log, quiet=True):
        with third_party_output():
            sys.stdout = sys.__stdout__  # what an imported module may do
            print("Importing submoduled environments...", flush=True)
            os.write(2, b"a raw line on the error descriptor\n")
        print("ours", flush=True)
    out = capfd.readouterr()
    assert "Importing" not in out.out + out.err and "raw line" not in out.out + out.err
    assert "ours" in out.out
    text = log.read_text()
    assert "Importing submoduled environments..." in text and "a raw line on the error descriptor" in text
