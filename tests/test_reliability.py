"""Checkpoints, exact resume, preemption, NaN guards, env-contract errors and one-line user errors."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from softqmix.algos.learner import DivergedUpdate
from softqmix.algos.registry import build_learner
from softqmix.checkpoint_io import AtomicCheckpointIO
from softqmix.checkpointing import checkpoint_path
from softqmix.config import validate_config
from softqmix.data.collector import EpisodeCollector
from softqmix.envs.base import EnvInfo, Observation, StepResult
from softqmix.errors import ConfigError, EnvContractError, RunDirBusy, TrainingDiverged
from softqmix.rundir import LOCK_FILE, acquire_run_dir, locked_run_dir
from softqmix.train import train
from tests.helpers import REPO_ROOT, hold_run_dir_lock

SMALL = [
    "t_max=1200",
    "test_interval=200",
    "test_nepisode=4",
    "log_interval=100",
    "algo.batch_size=16",
    "algo.buffer_size=200",
    "algo.target_update_interval=40",
    "print_report=false",
    "checkpoint.save_buffer=true",
    "checkpoint.interval=0",
]


class SignalAt(L.Callback):
    """Sends a real signal to this process right after the update that reaches `t_env`."""

    def __init__(self, t_env: int, signum: int) -> None:
        self.t_env, self.signum, self.sent = t_env, signum, False

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:  # type: ignore[no-untyped-def]
        if not self.sent and pl_module.progress.t_env >= self.t_env:
            self.sent = True
            os.kill(os.getpid(), self.signum)


def _rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv rows without empty cells and without perf/ (wall-clock timings differ run to run)."""
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [
            {k: v for k, v in row.items() if v != "" and not k.startswith("perf/")} for row in csv.DictReader(handle)
        ]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_and_resumed_run_equals_uninterrupted(compose_train, tmp_path: Path, signum: int) -> None:
    straight = train(compose_train(SMALL), tmp_path / "straight")
    assert straight["status"] == "completed"

    stopped = train(compose_train(SMALL), tmp_path / "split", extra_callbacks=[SignalAt(500, signum)])
    assert stopped["status"] == "preempted" and stopped["stop_signal"] == signum
    assert 500 <= stopped["env_steps"] < 1200
    checkpoints = tmp_path / "split" / "checkpoints"
    assert checkpoint_path(tmp_path / "split").exists()
    assert [p.name for p in checkpoints.glob("buffer*")] == [f"buffer-{stopped['env_steps']}.pt.gz"]

    resumed = train(compose_train([*SMALL, f"resume={tmp_path / 'split'}"]), tmp_path / "elsewhere")
    assert resumed["status"] == "completed" and resumed["resumed_from_step"] == stopped["env_steps"]
    assert resumed["env_steps"] == straight["env_steps"] and resumed["updates"] == straight["updates"]
    assert _rows(tmp_path / "split") == _rows(tmp_path / "straight")  # same metrics.csv, row by row
    assert resumed["matrix_game"]["q_tot"] == straight["matrix_game"]["q_tot"]


def test_sigterm_from_outside_checkpoints_exits_143_and_the_run_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [sys.executable, "train.py", "t_max=200000", "test_interval=5000", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "metrics.csv").exists():
        time.sleep(0.5)
    time.sleep(3)  # well inside training
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "resume with: python train.py resume=" in err
    step = torch.load(checkpoint_path(run_dir), weights_only=False)["progress"]["t_env"]
    assert 0 < step < 200000 and (run_dir / "preempted.json").exists()
    # same run dir again (as a requeued Slurm job would): resumes automatically and finishes
    again = subprocess.run(
        [sys.executable, "train.py", f"t_max={step + 400}", f"hydra.run.dir={run_dir}", "print_report=false"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    # the run dir describes the finished run only: the earlier preemption record is gone
    assert (run_dir / "summary.json").exists() and not (run_dir / "preempted.json").exists()
    steps = [int(float(r["env_step"])) for r in _rows(run_dir)]
    assert steps == sorted(steps) and steps[-1] >= step + 400


def test_half_written_checkpoint_leaves_the_previous_one_intact(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"progress": {"t_env": 1}}, path)

    def torn_save(obj, f, *args, **kwargs):  # type: ignore[no-untyped-def]
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError):
        io.save_checkpoint({"progress": {"t_env": 2}}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["progress"]["t_env"] == 1


def test_nan_reward_stops_the_run_naming_loss_step_and_checkpoint(compose_train, tmp_path: Path, monkeypatch) -> None:
    from softqmix.envs.matrix import MatrixGameEnv

    original = MatrixGameEnv.step
    calls = {"n": 0}

    def poisoned(self, actions):  # type: ignore[no-untyped-def]
        result = original(self, actions)
        calls["n"] += 1
        if calls["n"] > 400:
            result.reward = float("nan")
        return result

    monkeypatch.setattr(MatrixGameEnv, "step", poisoned)
    cfg = compose_train([*SMALL, "checkpoint.interval=100"])
    with pytest.raises(TrainingDiverged) as err:
        train(cfg, tmp_path)
    message = str(err.value)
    assert "loss/td" in message and "env step" in message and str(checkpoint_path(tmp_path)) in message
    assert torch.load(checkpoint_path(tmp_path), weights_only=False)["progress"]["t_env"] <= 400


class _BrokenEnv:
    def __init__(self, mode: str) -> None:
        self.mode = mode

    def info(self) -> EnvInfo:
        return EnvInfo(n_agents=2, n_actions=3, obs_dim=4, state_dim=2, episode_limit=5)

    def _obs(self) -> Observation:
        obs = np.zeros((2, 3 if self.mode == "shape" else 4), dtype=np.float32)
        avail = np.ones((2, 3))
        if self.mode == "mask":
            avail[1] = 0
        return Observation(obs=obs, state=np.zeros(2), avail=avail)

    def reset(self, seed: int | None = None) -> Observation:
        return self._obs()

    def step(self, actions: np.ndarray) -> StepResult:
        return StepResult(0.0, False, False, self._obs())

    def close(self) -> None:
        pass


class _RandomActor:
    def initial_hidden(self, n: int) -> torch.Tensor:
        return torch.zeros(n)

    def act(self, obs, state, avail, last, hidden, explore):  # type: ignore[no-untyped-def]
        return torch.zeros(obs.shape[:2], dtype=torch.long), hidden


@pytest.mark.parametrize(("mode", "needle"), [("shape", "obs of shape (2, 3)"), ("mask", "agent 1 no legal action")])
def test_env_contract_violations_name_env_and_agent(mode: str, needle: str) -> None:
    collector = EpisodeCollector([_BrokenEnv(mode)], seed=0, name="broken/env")
    with pytest.raises(EnvContractError) as err:
        collector.collect(_RandomActor(), explore=True)
    assert "broken/env" in str(err.value) and needle in str(err.value)


def test_qmix_mixer_on_an_env_without_state_is_rejected() -> None:
    info = EnvInfo(n_agents=2, n_actions=3, obs_dim=4, state_dim=0, episode_limit=5)
    with pytest.raises(ConfigError, match="needs a global state"):
        build_learner({"name": "qmix", "mixer": "qmix"}, info, False)


def _cli(*args: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single line a refused run prints on stderr (and no traceback)."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["algo=qmx"], "valid options: fop, hasac, iql, mappo, paper_mpe/fop, paper_mpe/mappo, paper_mpe/qmix"),
        (["env=matrix/nope"], "unknown env 'matrix/nope'; valid options: matrix/nonmonotonic"),
        (["ablation=entropi"], "valid options: entropy, full, function_f, no_abs, qmix, release"),
        (["algo.td_lamda=0.3"], "td_lamda"),
        (["algo.gamma=high"], "gamma"),
        (["env.payoff=[[1,2,3],[4,5,6]]"], "square"),
        (["algo.batch_size=9000"], "exceeds algo.buffer_size"),
        (["resume=/nonexistent/run"], "no checkpoint"),
    ],
)
def test_bad_input_fails_before_training_without_traceback(tmp_path: Path, args: list[str], needle: str) -> None:
    proc = _cli(*args, f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "metrics.csv").exists()  # nothing trained


def test_debug_true_shows_the_traceback(tmp_path: Path) -> None:
    proc = _cli("env.payoff=[[1,2,3],[4,5,6]]", "debug=true", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_a_finished_run_dir_is_not_overwritten(tmp_path: Path) -> None:
    assert _cli("t_max=200", f"hydra.run.dir={tmp_path}").returncode == 0
    before = (tmp_path / "summary.json").read_text()
    overrides = (tmp_path / ".hydra" / "overrides.yaml").read_text()
    proc = _cli("t_max=200", "print_report=false", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2 and "already reached t_max" in proc.stderr
    assert (tmp_path / "summary.json").read_text() == before
    # a refusal leaves no trace in the finished run: no failed.json, and Hydra's record of its command is kept
    assert not (tmp_path / "failed.json").exists()
    assert (tmp_path / ".hydra" / "overrides.yaml").read_text() == overrides


def test_a_failing_run_does_not_kill_its_multirun_but_fails_its_exit_code(tmp_path: Path) -> None:
    # `-m` after the first override, as in `train.py algo=... -m seed=0,1`: the sweep still runs
    proc = _cli("algo.batch_size=9000,16", "-m", "t_max=200", "algo.buffer_size=100", f"hydra.sweep.dir={tmp_path}")
    assert "[run 0 failed] ConfigError" in proc.stderr
    failed, ok = sorted(tmp_path.glob("*_s0"))
    assert "exceeds algo.buffer_size" in (failed / "failed.json").read_text()
    assert (ok / "summary.json").exists()  # the other run completed
    # ... and the sweep says so at its end, in one line naming the failed run's dir, with a non-zero exit code
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        "error: 1 of 2 runs of the sweep failed (error and traceback in each run's failed.json): "
        f"{failed} (ConfigError)"
    )


def test_after_checkpointing_the_signal_goes_to_the_previous_handler() -> None:
    from softqmix.preemption import redeliver

    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append(signum))
    try:
        with pytest.raises(SystemExit) as exit_info:
            redeliver(signal.SIGUSR2)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert seen == [signal.SIGUSR2]  # e.g. submitit requeues the Slurm job here
    assert exit_info.value.code == 128 + signal.SIGUSR2


class _ReadMetricsAt(L.Callback):
    def __init__(self, t_env: int, path: Path) -> None:
        self.t_env, self.path, self.rows_seen = t_env, path, None

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:  # type: ignore[no-untyped-def]
        if self.rows_seen is None and pl_module.progress.t_env >= self.t_env:
            self.rows_seen = _rows(self.path.parent)


def test_metrics_reach_the_disk_while_the_run_is_going(compose_train, tmp_path: Path) -> None:
    reader = _ReadMetricsAt(700, tmp_path / "metrics.csv")
    train(compose_train(SMALL), tmp_path, extra_callbacks=[reader])
    logged = [float(r["env_step"]) for r in reader.rows_seen]
    assert 600.0 in logged and max(logged) <= 700.0  # rows up to now are on disk, not buffered


def test_a_resumed_run_keeps_its_wandb_run_id(compose_train, tmp_path: Path) -> None:
    from softqmix.outputs import WANDB_ID_FILE, build_loggers

    cfg = compose_train(["logger=wandb", "logger.mode=disabled"])
    first = build_loggers(cfg, tmp_path)[1]
    again = build_loggers(cfg, tmp_path, resume_step=100)[1]  # what a resume builds
    assert first.version == again.version == (tmp_path / WANDB_ID_FILE).read_text().strip()
    other = build_loggers(cfg, tmp_path / "other_run")[1]
    assert other.version != first.version


class _KeepModule(L.Callback):
    def on_fit_start(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
        self.module = pl_module


def test_a_finished_run_frees_its_replay_buffer(compose_train, tmp_path: Path) -> None:
    """Sweeps run their jobs one after another in one process: a run's replay buffer must not outlive it
    (a two-seed SMAX 10v10 sweep, 12 GB of buffer per run, was killed for memory before this)."""
    probe = _KeepModule()
    train(compose_train(SMALL), tmp_path, extra_callbacks=[probe])
    storage = probe.module.buffer.storage
    assert probe.module.buffer.capacity == 0 and storage.obs.numel() == 0 and storage.state.numel() == 0


# ---------------------------------------------------------------- resume takes only what was typed


def test_a_bare_resume_keeps_the_saved_t_max_and_refuses_other_overrides(compose_train, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    stopped = train(compose_train([*SMALL, "logger=csv"]), run_dir, extra_callbacks=[SignalAt(500, signal.SIGTERM)])
    assert stopped["status"] == "preempted" and 500 <= stopped["env_steps"] < 1200
    files = lambda: {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.name != LOCK_FILE}  # noqa: E731
    before = files()

    # keys a resume cannot change stop it, in one line naming them; nothing is written, no new run dir is left
    refused = _cli(f"resume={run_dir}", "algo.critic_lr=0.5", "seed=3", "t_max=1600", cwd=tmp_path)
    assert refused.returncode == 2
    line = _one_error_line(refused)
    assert "these overrides would be ignored: algo.critic_lr, seed " in line and "saved config" in line
    assert not (tmp_path / "outputs").exists()
    assert files() == before

    # a bare resume=<dir> ends at the run's own t_max (1200), not at the schema's default (10000)
    resumed = _cli(f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed_from_step"] == stopped["env_steps"] and summary["env_steps"] == 1200


# ---------------------------------------------------------------- one run dir, one process

_TRY_LOCK = (
    "import sys; from pathlib import Path; from softqmix.errors import RunDirBusy; "
    "from softqmix.rundir import acquire_run_dir\n"
    "try:\n    acquire_run_dir(Path(sys.argv[1]))\nexcept RunDirBusy as exc:\n    print(exc); sys.exit(3)"
)


def test_a_second_process_on_a_busy_run_dir_stops_naming_dir_and_holder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    holder = hold_run_dir_lock(run_dir)
    try:
        proc = _cli("t_max=200", "logger=csv", f"hydra.run.dir={run_dir}")
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert f"run dir {run_dir} is in use" in line and f"pid {holder.pid} on host {socket.gethostname()}" in line
    assert [p.name for p in run_dir.iterdir()] == [LOCK_FILE]  # not even Hydra's .hydra/ was written


def test_the_lock_dies_with_its_holder_even_on_sigkill(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    holder = hold_run_dir_lock(run_dir)
    with pytest.raises(RunDirBusy, match=f"pid {holder.pid} on host"):
        acquire_run_dir(run_dir)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with locked_run_dir(run_dir):  # free at once: no stale lock to clean up
        assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == os.getpid()


class _TryLockFromAnotherProcess(L.Callback):
    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.result = run_dir, None

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:  # type: ignore[no-untyped-def]
        if self.result is None:
            self.result = subprocess.run(
                [sys.executable, "-c", _TRY_LOCK, str(self.run_dir)], capture_output=True, text=True, timeout=60
            )


def test_train_holds_the_run_dir_lock_while_it_runs(compose_train, tmp_path: Path) -> None:
    probe = _TryLockFromAnotherProcess(tmp_path)
    train(compose_train([*SMALL, "t_max=200", "logger=csv"]), tmp_path, extra_callbacks=[probe])
    assert probe.result is not None and probe.result.returncode == 3, probe.result
    assert f"pid {os.getpid()}" in probe.result.stdout
    with locked_run_dir(tmp_path):  # released at the end of the run
        pass


# ---------------------------------------------------------------- bad inputs: one line, before training


BAD_VALUES = [
    (["algo.batch_size=0"], "algo.batch_size=0 is out of range: it must be >= 1"),
    (["algo.critic_lr=-1"], "algo.critic_lr=-1.0 is out of range: it must be > 0"),
    (["algo.policy_lr=0"], "algo.policy_lr=0.0 is out of range: it must be > 0"),
    (["algo=mappo", "algo.actor_lr=-0.001"], "algo.actor_lr=-0.001 is out of range: it must be > 0"),
    (["batch_size_run=0"], "batch_size_run=0 is out of range: it must be >= 1"),
    (["t_max=0"], "t_max=0 is out of range: it must be >= 1"),
    (["t_max=-5"], "t_max=-5 is out of range: it must be >= 1"),
    (["test_nepisode=0"], "test_nepisode=0 is out of range: it must be >= 1"),
    (["algo.gamma=1.5"], "algo.gamma=1.5 is out of range: it must be in [0, 1]"),
]


@pytest.mark.parametrize(("args", "message"), BAD_VALUES)
def test_bad_value_is_refused_naming_key_and_range(compose_train, args: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(compose_train(args))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        BAD_VALUES[0],
        BAD_VALUES[6],
        (["algo=mappo", "ablation=entropy"], "not of algo=mappo (the ablations in conf/ablation/ are switch bundles"),
    ],
)
def test_bad_value_stops_before_training_in_one_line_naming_key_and_range(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """From the command line: exit 2, one line, nothing trained (the other values of BAD_VALUES take the same
    path, validate_config, and are checked in process above)."""
    proc = _cli(*args, "logger=csv", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    assert message in _one_error_line(proc)
    assert not (tmp_path / "metrics.csv").exists()  # nothing trained


def _env_without_wandb_key(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    return {**env, "NETRC": str(tmp_path / "no-netrc"), **extra}


def test_wandb_online_without_an_api_key_says_how_to_log_in_or_go_offline(tmp_path: Path) -> None:
    env = _env_without_wandb_key(tmp_path, WANDB_MODE="online")
    proc = _cli("t_max=200", "logger=wandb", f"hydra.run.dir={tmp_path / 'run'}", env=env)
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert "WANDB_MODE=online" in line and "`wandb login`" in line
    assert "logger.mode=offline" in line and "WANDB_MODE=offline" in line
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_an_empty_wandb_mode_counts_as_unset(tmp_path: Path) -> None:
    env = _env_without_wandb_key(tmp_path, WANDB_MODE="")
    proc = _cli("t_max=200", "logger=wandb", "logger.mode=disabled", f"hydra.run.dir={tmp_path}", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and (tmp_path / "summary.json").exists()


# ---------------------------------------------------------------- divergence: a bound, not only NaN/inf


def test_a_diverging_run_stops_and_failed_json_names_step_update_and_values(tmp_path: Path) -> None:
    """critic_lr=1e6 once trained to a TD loss of 1e33 and ended "completed"; it must stop, say so in one line,
    record where and what in failed.json and leave the checkpoint from before the divergence alone."""
    run_dir = tmp_path / "run"
    proc = _cli(
        "algo.critic_lr=1e6",
        "t_max=3000",
        "checkpoint.interval=100",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 1
    line = _one_error_line(proc)
    failed = json.loads((run_dir / "failed.json").read_text())
    assert failed["error"] == "TrainingDiverged" and failed["reason"] == "diverged"
    step, update = failed["env_step"], failed["update"]
    assert line.startswith(f"error: diverged at env step {step} (update {update}): ")
    assert "reached trainer.divergence_bound=1e+06" in line and "algo.critic_lr" in line
    assert 0 < step < 3000 and update >= 1 and failed["divergence_bound"] == 1e6
    # the last values of what passed the bound, finite (no NaN needed to stop the run)
    assert "train/q_tot_abs_mean" in failed["offending"] and "loss/td" in failed["offending"]
    assert 1e6 <= failed["values"]["train/q_tot_abs_mean"] < float("inf")
    assert failed["values"]["loss/total"] >= 1e6
    assert not (run_dir / "summary.json").exists()  # not recorded as a result
    # no checkpoint after the divergence: the one on disk was written before it, and failed.json names it
    assert failed["checkpoint"] == str(checkpoint_path(run_dir))
    assert torch.load(checkpoint_path(run_dir), weights_only=False)["progress"]["t_env"] < step


def test_a_healthy_run_stays_far_below_the_default_divergence_bound(compose_train, tmp_path: Path) -> None:
    cfg = compose_train([*SMALL, "logger=csv", "checkpoint.save_buffer=false"])
    bound = cfg.trainer.divergence_bound
    assert bound == 1e6
    assert train(cfg, tmp_path / "healthy")["status"] == "completed"
    rows = _rows(tmp_path / "healthy")
    keys = ("loss/td", "loss/policy", "train/q_taken_mean", "train/q_tot_abs_mean")
    peak = max(abs(float(row[key])) for row in rows for key in keys if key in row)
    assert 0 < peak < bound / 1e4  # the matrix game's payoffs are at most 12 in size

    # the bound is the one configured: a bound below the payoffs stops the same healthy run at once
    with pytest.raises(TrainingDiverged, match=r"reached trainer.divergence_bound=0.5") as err:
        train(compose_train([*SMALL, "logger=csv", "trainer.divergence_bound=0.5"]), tmp_path / "tight")
    assert err.value.details()["reason"] == "diverged" and err.value.update == 1


def test_null_divergence_bound_stops_only_on_nan_or_inf(compose_train, tmp_path: Path) -> None:
    overrides = [*SMALL, "t_max=300", "logger=csv", "algo.critic_lr=1e6", "trainer.divergence_bound=null"]
    assert train(compose_train(overrides), tmp_path)["status"] == "completed"
    assert max(abs(float(row.get("loss/td", 0))) for row in _rows(tmp_path)) > 1e6


def test_the_divergence_check_folds_the_bound_into_the_finite_test() -> None:
    info = EnvInfo(n_agents=2, n_actions=3, obs_dim=4, state_dim=2, episode_limit=5)
    learner = build_learner({"name": "qmix"}, info, False)
    assert learner.finite_checks == ("train/q_taken_mean", "train/q_tot_abs_mean")

    def losses(q: float) -> dict[str, torch.Tensor]:
        return {
            "loss/td": torch.tensor(1.0),
            "train/q_taken_mean": torch.tensor(q),
            "train/q_tot_abs_mean": torch.tensor(abs(q)),
        }

    one = torch.tensor(1.0)
    learner.divergence_bound = 1e6
    learner.check_divergence(one, losses(-9e5))  # below the bound
    with pytest.raises(DivergedUpdate) as err:
        learner.check_divergence(one, losses(-2e6))
    assert err.value.keys == ["train/q_taken_mean", "train/q_tot_abs_mean"] and err.value.bound == 1e6
    assert err.value.values == {
        "loss/total": 1.0,
        "loss/td": 1.0,
        "train/q_taken_mean": -2e6,
        "train/q_tot_abs_mean": 2e6,
    }
    with pytest.raises(DivergedUpdate) as err:
        learner.check_divergence(torch.tensor(3e6), losses(0.0))  # the summed loss alone
    assert err.value.keys == ["loss/total"]
    with pytest.raises(DivergedUpdate) as err:
        learner.check_divergence(one, losses(float("inf")))
    assert err.value.keys == ["train/q_taken_mean", "train/q_tot_abs_mean"]

    learner.divergence_bound = None  # no bound: only NaN and inf stop an update
    learner.check_divergence(one, losses(-2e30))
    with pytest.raises(DivergedUpdate) as err:
        learner.check_divergence(torch.tensor(float("nan")), losses(0.0))
    assert err.value.keys == ["loss/total"]


@pytest.mark.parametrize("pacing", [["algo.updates_per_collect=2"], ["algo.env_steps_per_update=2"]])
def test_a_run_stopped_between_one_collections_updates_resumes_exactly(
    compose_train, tmp_path: Path, pacing: list[str]
) -> None:
    """Two updates per 4-step collection: the signal lands after the first, so the checkpoint owes one."""
    config = [*SMALL, *pacing]
    straight = train(compose_train(config), tmp_path / "straight")
    stopped = train(compose_train(config), tmp_path / "split", extra_callbacks=[SignalAt(500, signal.SIGTERM)])
    assert stopped["status"] == "preempted"
    saved = torch.load(checkpoint_path(tmp_path / "split"), weights_only=False)
    assert saved["progress"]["updates_owed"] == 1

    resumed = train(compose_train([*config, f"resume={tmp_path / 'split'}"]), tmp_path / "elsewhere")
    assert resumed["updates"] == straight["updates"]
    assert _rows(tmp_path / "split") == _rows(tmp_path / "straight")
    assert resumed["matrix_game"]["q_tot"] == straight["matrix_game"]["q_tot"]
