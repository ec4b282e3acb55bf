"""Checkpoints, exact resume, preemption, NaN guards, env-contract errors and one-line user errors."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from softqmix.algos.registry import build_learner
from softqmix.checkpointing import AtomicCheckpointIO, checkpoint_path
from softqmix.data.collector import EpisodeCollector
from softqmix.envs.base import EnvInfo, Observation, StepResult
from softqmix.errors import ConfigError, EnvContractError, TrainingDiverged
from softqmix.train import train
from tests.helpers import REPO_ROOT

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
    assert (
        checkpoint_path(tmp_path / "split").exists() and (tmp_path / "split" / "checkpoints" / "buffer.pt.gz").exists()
    )

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


def _cli(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "train.py", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["algo=qmx"], "valid options: fop, iql, mappo, paper_mpe/fop, paper_mpe/mappo, paper_mpe/qmix"),
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
    proc = _cli("t_max=200", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2 and "already reached t_max" in proc.stderr
    assert (tmp_path / "summary.json").read_text() == before


def test_a_failing_run_does_not_kill_its_multirun(tmp_path: Path) -> None:
    # `-m` after the first override, as in `train.py algo=... -m seed=0,1`: the sweep still runs
    proc = _cli("algo.batch_size=9000,16", "-m", "t_max=200", "algo.buffer_size=100", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[run 0 failed] ConfigError" in proc.stderr
    failed, ok = sorted(tmp_path.glob("*_s0"))
    assert "exceeds algo.buffer_size" in (failed / "failed.json").read_text()
    assert (ok / "summary.json").exists()


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
