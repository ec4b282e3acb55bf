"""Fault injection: kills inside checkpoint writes, a full disk, a read-only run dir, bad resumes, random kills.

Each test breaks a run at a chosen point and checks what "nothing lost, nothing silent" promises: the last good
checkpoint loads, a resume is exact (metrics.csv row by row equal to an uninterrupted run), no row is torn or
lost, and a run that cannot go on stops with one line naming the file or dir and the problem.
benchmarks/faults.py runs the same faults at more points and counts them (docs/reliability.md, "Fault injection").
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from softqmix import CONF_DIR
from softqmix.checkpointing import checkpoint_path
from softqmix.errors import OutputWriteError, RunDirNotWritable
from softqmix.rundir import LOCK_FILE
from softqmix.train import train
from tests.fault_child import FullDisk, full_disk_script
from tests.helpers import REPO_ROOT
from tests.test_reliability import SignalAt, _cli, _one_error_line, _rows

# debug/tiny (the matrix game, 400 env steps) with a checkpoint, and the replay buffer, every 100 env steps
TINY = ["experiment=debug/tiny", "logger=csv", "checkpoint.save_buffer=true", "checkpoint.interval=100"]
NO_SPACE = "no space left on the device (the disk is full)"


def _compose(overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted TINY run every broken-and-resumed run must equal."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    assert train(_compose(TINY), run_dir)["status"] == "completed"
    return run_dir


def _q_tot(run_dir: Path) -> list[list[float]]:
    return json.loads((run_dir / "summary.json").read_text())["matrix_game"]["q_tot"]


def _temp_files(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if ".tmp" in p.name)


def _snapshot(run_dir: Path) -> dict[str, tuple[str, int]]:
    """Every file of a run dir with its content hash and mtime (the lock file is the lock's own bookkeeping)."""
    return {
        str(p.relative_to(run_dir)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


# ---------------------------------------------------------------- (a) SIGKILL inside a checkpoint write


@pytest.mark.parametrize(
    "kill",
    [
        "last.ckpt:2",  # the new checkpoint's temp file complete, not yet renamed; its buffer already in place
        "buffer:2:torn",  # half of the new buffer file written
    ],
)
def test_sigkill_inside_a_checkpoint_write_leaves_the_previous_checkpoint_loadable_and_exact(
    straight: Path, tmp_path: Path, kill: str
) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fault_child", f"kill:{kill}", str(run_dir), *TINY],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert _temp_files(run_dir), "the kill did not land inside a write"
    # the previous checkpoint (env step 100) is whole and loads as the docs promise
    assert torch.load(checkpoint_path(run_dir), weights_only=True)["progress"]["t_env"] == 100

    resumed = train(_compose([*TINY, f"resume={run_dir}"]), tmp_path / "elsewhere")
    assert resumed["status"] == "completed" and resumed["resumed_from_step"] == 100
    assert _rows(run_dir) == _rows(straight)  # exact: the buffer that went with checkpoint 100 was loaded
    assert resumed["matrix_game"]["q_tot"] == _q_tot(straight)
    # the kill's leftovers (temp file, the buffer of the checkpoint that never landed) are gone
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["buffer-400.pt.gz", "last.ckpt"]


# ---------------------------------------------------------------- (b) a full disk


@pytest.mark.parametrize(
    ("needle", "nth", "rows_kept", "checkpoint_step"),
    [
        ("last.ckpt", 2, 4, 100),  # the checkpoint at env step 200 (the rows up to 200 are written before it)
        ("buffer", 2, 4, 100),  # its replay buffer, written first
        ("metrics.csv", 2, 1, None),  # the rewrite when the first test adds columns (Lightning truncated the file)
        ("metrics.csv", 6, 4, 200),  # an appended row, after the checkpoint at 200
        ("summary.json", 1, 7, 400),  # after the last checkpoint: the resume only writes the summary
    ],
)
def test_a_full_disk_stops_the_run_in_one_line_naming_the_file_and_loses_nothing(
    straight: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    needle: str,
    nth: int,
    rows_kept: int,
    checkpoint_step: int | None,
) -> None:
    run_dir = tmp_path / "run"
    disk = FullDisk(needle, nth)
    monkeypatch.setattr(builtins, "open", disk)
    with pytest.raises(OutputWriteError) as err:
        train(_compose(TINY), run_dir)
    monkeypatch.undo()
    assert disk.hit is not None
    message = str(err.value)
    target = Path(disk.hit).parent / Path(disk.hit).name.removeprefix(".").split(".tmp-")[0]
    assert "\n" not in message and message.startswith(f"cannot write {target}: {NO_SPACE}; the run stopped")
    assert _temp_files(run_dir) == []  # the half-written temp file went with the failure
    # every row written before the disk filled is on disk, whole and right; no torn row
    assert _rows(run_dir) == _rows(straight)[:rows_kept]

    if checkpoint_step is None:
        assert not checkpoint_path(run_dir).exists() and message.endswith("then start it again")
        return
    assert torch.load(checkpoint_path(run_dir), weights_only=True)["progress"]["t_env"] == checkpoint_step
    assert message.endswith(f"then continue it from its last checkpoint with: python train.py resume={run_dir}")
    resumed = train(_compose([*TINY, f"resume={run_dir}"]), tmp_path / "elsewhere")
    assert resumed["status"] == "completed" and resumed["resumed_from_step"] == checkpoint_step
    assert _rows(run_dir) == _rows(straight) and resumed["matrix_game"]["q_tot"] == _q_tot(straight)


def test_a_full_disk_under_the_cli_exits_1_with_one_line_and_failed_json(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fault_child", "enospc:last.ckpt:2", "cli", *TINY, f"hydra.run.dir={run_dir}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    line = _one_error_line(proc)
    assert line.startswith(f"error: cannot write {checkpoint_path(run_dir)}: {NO_SPACE}; the run stopped")
    failed = json.loads((run_dir / "failed.json").read_text())
    assert failed["error"] == "OutputWriteError" and failed["message"] == line.removeprefix("error: ")
    assert not (run_dir / "summary.json").exists()
    assert torch.load(checkpoint_path(run_dir), weights_only=True)["progress"]["t_env"] == 100


def _unshare_works() -> bool:
    """A mount namespace of our own (user namespace as root-in-namespace): real tmpfs and read-only mounts."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m none /mnt && mount -o remount,ro /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(not _unshare_works(), reason="needs `unshare -rm` (mount namespaces)")


def _in_namespace(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PY": sys.executable, "TRAIN": str(REPO_ROOT / "train.py"), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


@needs_mounts
def test_a_real_full_disk_stops_the_run_in_one_line_and_it_resumes_once_there_is_space(tmp_path: Path) -> None:
    """A 16 MB tmpfs that the test fills (dd) once the run has written its first checkpoint."""
    mnt, out = tmp_path / "disk", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    args = "experiment=debug/mpe logger=csv checkpoint.interval=500 checkpoint.save_buffer=true"
    script = full_disk_script(args, "full", stdout='"$OUT/stdout"')
    script += '        cp "$MNT/run/summary.json" "$OUT/summary.json"\n'
    proc = _in_namespace(script, tmp_path, MNT=str(mnt), OUT=str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    stderr = (out / "stderr").read_text()
    assert (out / "rc").read_text().strip() == "1", stderr[-3000:]
    assert "Traceback" not in stderr and "Logging error" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write {mnt / 'run'}"), stderr[-3000:]
    assert NO_SPACE in lines[0] and f"resume={mnt / 'run'}" in lines[0]
    full = out / "full"
    assert torch.load(checkpoint_path(full), weights_only=True)["progress"]["t_env"] >= 500  # the last good one
    assert _temp_files(full) == []
    rows = _rows(full)
    assert [float(r["env_step"]) for r in rows] == sorted(float(r["env_step"]) for r in rows)  # no torn row
    # with space again the run goes on from its checkpoint
    assert (out / "resume_rc").read_text().strip() == "0", (out / "resume_stderr").read_text()[-3000:]
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 2500


# ---------------------------------------------------------------- (c) a read-only run dir


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES], ids=["EROFS", "EACCES"])
def test_an_unwritable_run_dir_stops_before_training_naming_the_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """Simulated: the run dir refuses every new file (a read-only mount, or no permission for a non-root user)."""
    run_dir = (tmp_path / "run").resolve()
    run_dir.mkdir()
    real_open = os.open

    def refusing(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(path).parent == run_dir and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    with pytest.raises(RunDirNotWritable) as err:
        train(_compose(TINY), run_dir)
    monkeypatch.undo()
    assert str(err.value).startswith(f"run dir {run_dir} is not writable ({os.strerror(code)}); ")
    assert list(run_dir.iterdir()) == []


@needs_mounts
def test_a_read_only_mount_stops_a_new_run_and_a_resume_in_one_line_touching_nothing(tmp_path: Path) -> None:
    """Real: the dir is bind-mounted read-only in a mount namespace, where root cannot write either."""
    archive = tmp_path / "archive"
    old = archive / "old"
    stopped = train(_compose(TINY), old, extra_callbacks=[SignalAt(200, signal.SIGTERM)])
    assert stopped["status"] == "preempted"
    before = _snapshot(old)
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    out.mkdir()
    script = f"""
        mount --bind "$RO" "$RO" && mount -o remount,bind,ro "$RO" || exit 90
        touch "$RO/x" 2>/dev/null && exit 91
        cd "$CWD"
        "$PY" "$TRAIN" {" ".join(TINY)} hydra.run.dir="$RO/new" > /dev/null 2> "$OUT/new"; echo $? > "$OUT/new_rc"
        "$PY" "$TRAIN" resume="$RO/old" > /dev/null 2> "$OUT/resume"; echo $? > "$OUT/resume_rc"
    """
    proc = _in_namespace(script, tmp_path, RO=str(archive), CWD=str(cwd), OUT=str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, run_dir in (("new", archive / "new"), ("resume", old)):
        stderr = (out / name).read_text()
        assert (out / f"{name}_rc").read_text().strip() == "2", stderr[-3000:]
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
        assert lines[0].startswith(f"error: run dir {run_dir} is not writable (Read-only file system); ")
    assert not (archive / "new").exists() and _snapshot(old) == before
    assert list(cwd.iterdir()) == []  # the fresh outputs/ dir Hydra made for the refused resume is gone


# ---------------------------------------------------------------- (d) resuming what cannot be resumed


@pytest.fixture(scope="module")
def stopped_qmix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A QMIX run stopped by SIGTERM at env step 200 (checkpoint and buffer saved), to be broken by each test."""
    run_dir = tmp_path_factory.mktemp("stopped") / "run"
    result = train(_compose([*TINY, "algo=qmix"]), run_dir, extra_callbacks=[SignalAt(200, signal.SIGTERM)])
    assert result["status"] == "preempted"
    return run_dir


def _truncate(run_dir: Path) -> None:
    ckpt = checkpoint_path(run_dir)
    os.truncate(ckpt, ckpt.stat().st_size // 2)


def _random_bytes(run_dir: Path) -> None:
    checkpoint_path(run_dir).write_bytes(random.Random(0).randbytes(4096))


def _break_yaml(run_dir: Path) -> None:
    path = run_dir / "config.yaml"
    path.write_text(path.read_text() + "algo: [unclosed\n")


def _config_of_another_algo(run_dir: Path) -> None:
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(_compose(["algo=mappo", "logger=csv"]), resolve=True))


def _edit_config(run_dir: Path) -> None:
    path = run_dir / "config.yaml"
    saved = OmegaConf.load(path)
    saved.algo.critic_lr = 0.01
    path.write_text(OmegaConf.to_yaml(saved))


@pytest.mark.parametrize(
    ("damage", "how", "needle"),
    [
        (_truncate, "resume", "checkpoints/last.ckpt cannot be read (RuntimeError: "),
        (_truncate, "same dir", "checkpoints/last.ckpt cannot be read (RuntimeError: "),
        (_random_bytes, "resume", "checkpoints/last.ckpt cannot be read (UnpicklingError: "),
        (_config_of_another_algo, "resume", "(algo.name: 'qmix' in the checkpoint, 'mappo' in config.yaml; "),
        (_edit_config, "resume", "(algo.critic_lr: 0.001 in the checkpoint, 0.01 in config.yaml): "),
        (_break_yaml, "resume", "config.yaml cannot be read (ParserError: "),
    ],
    ids=["truncated-resume", "truncated-same-dir", "random-bytes", "another-algorithm", "edited-config", "broken-yaml"],
)
def test_a_resume_that_cannot_go_ahead_stops_in_one_line_and_overwrites_nothing(
    stopped_qmix: Path, tmp_path: Path, damage, how: str, needle: str
) -> None:  # type: ignore[no-untyped-def]
    run_dir = tmp_path / "run"
    shutil.copytree(stopped_qmix, run_dir)  # copy2: mtimes kept
    damage(run_dir)
    before = _snapshot(run_dir)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    if how == "resume":
        proc = _cli(f"resume={run_dir}", cwd=cwd)
    else:  # a requeued job repeating its command line in the same dir
        proc = _cli(*TINY, "algo=qmix", f"hydra.run.dir={run_dir}", cwd=cwd)
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert needle in line and str(run_dir) in line
    assert _snapshot(run_dir) == before  # not a byte, not a timestamp
    assert list(cwd.iterdir()) == []


# ---------------------------------------------------------------- (e) SIGKILL at random points, then resume


MPE = ["experiment=debug/mpe", "logger=csv", "checkpoint.save_buffer=true", "checkpoint.interval=500"]


def test_sigkills_at_random_points_then_resumes_end_where_an_uninterrupted_run_ends(tmp_path: Path) -> None:
    """Two SIGKILLs, each at a random moment after a new checkpoint; the same command line resumes each time."""
    straight = train(_compose(MPE), tmp_path / "straight")
    run_dir, rng, kills = tmp_path / "run", random.Random(0), 0
    for attempt in range(3):
        last = checkpoint_path(run_dir)
        seen = last.stat().st_mtime_ns if last.exists() else None
        proc = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "train.py"), *MPE, f"hydra.run.dir={run_dir}"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if attempt < 2:  # wait for a checkpoint newer than the last attempt's, then kill at a random moment
            deadline = time.time() + 180
            while proc.poll() is None and time.time() < deadline:
                if last.exists() and last.stat().st_mtime_ns != seen:
                    break
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        _, err = proc.communicate(timeout=300)
        assert proc.returncode in (0, -signal.SIGKILL), err[-3000:]
    assert kills == 2
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed_from_step"] is not None
    for key in ("env_steps", "episodes", "updates", "final_test_return", "best_test_return", "tests"):
        assert summary[key] == straight[key], key
    assert _rows(run_dir) == _rows(tmp_path / "straight")


# ---------------------------------------------------------------- bad command lines: one line, not Hydra's six


@pytest.mark.parametrize(
    ("arg", "line"),
    [
        ("algo.lamda=0.5", "error: cannot set algo.lamda: Key 'lamda' not in 'ValueFactorisationConfig'; "),
        ("algo.gamma=high", "error: cannot set algo.gamma=high: Value 'high' of type 'str' could not be converted to"),
    ],
    ids=["unknown-key", "wrong-type"],
)
def test_an_unknown_key_or_a_wrong_type_stops_in_one_line(tmp_path: Path, arg: str, line: str) -> None:
    proc = _cli(arg, "logger=csv", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    assert _one_error_line(proc).startswith(line)
    assert not (tmp_path / "run").exists()
