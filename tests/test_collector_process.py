"""pool.collection=process: the child collects what an in-process collector would, acts with the
weights the learner last shared, and fails loudly when it dies or its env raises."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from softqmix.checkpointing import checkpoint_path
from softqmix.data.collector import EpisodeCollector
from softqmix.data.collector_process import CollectorProcess, PoolRecipe, SpawnedChild
from softqmix.envs.base import StepResult
from softqmix.envs.pool import EnvPool
from softqmix.envs.registry import env_factory
from softqmix.errors import EnvContractError
from softqmix.loop import TrainingLoop
from softqmix.loop.rounds import ProcessRounds
from softqmix.progress import TrainingProgress
from softqmix.train import train
from tests.helpers import MPE_SIMPLE, CorridorEnv, SeededRandomActor


class SharedConstantActor(nn.Module):
    """Every agent plays the action stored in a shared parameter; epsilon-like `t_env` is echoed
    into the hidden state so the test can see which step count the child was told."""

    def __init__(self, progress: TrainingProgress) -> None:
        super().__init__()
        self.action = nn.Parameter(torch.zeros(()), requires_grad=False)
        self.progress = progress
        self.share_memory()

    def initial_hidden(self, n_envs: int) -> torch.Tensor:
        return torch.zeros(n_envs)

    def act(self, obs, state, avail, last, hidden, explore):  # type: ignore[no-untyped-def]
        action = int(self.action.item()) if self.progress.t_env < 10_000 else 0
        return torch.full(obs.shape[:2], action, dtype=torch.long), hidden


def test_the_child_collects_the_same_episodes_as_an_in_process_collector() -> None:
    serial = EpisodeCollector(EnvPool(env_factory(MPE_SIMPLE), 3, name="mpe"), seed=11, name="mpe")
    remote = CollectorProcess(
        EpisodeCollector(EnvPool(env_factory(MPE_SIMPLE), 3, name="mpe"), seed=11, name="mpe"),
        SeededRandomActor(5, seed=0),
        TrainingProgress(),
    )
    actor = SeededRandomActor(5, seed=0)
    try:
        for _ in range(2):
            want, want_stats = serial.collect(actor, explore=True)
            remote.request(t_env=0)
            got = remote.receive()
            assert got.stats.returns == want_stats.returns and got.stats.lengths == want_stats.lengths
            for name in ("obs", "state", "avail", "actions", "reward", "terminated", "filled"):
                torch.testing.assert_close(getattr(got.episodes, name), getattr(want, name))
        # the state a checkpoint keeps is the child's env RNG after the last round, as in-process
        assert remote.state_dict()["env_rng"] == serial.state_dict()["env_rng"]
    finally:
        serial.close()
        remote.close()


def test_the_child_acts_with_the_weights_shared_before_each_request() -> None:
    progress = TrainingProgress()
    actor = SharedConstantActor(progress)
    remote = CollectorProcess(
        EpisodeCollector(EnvPool.from_envs([CorridorEnv(limit=4), CorridorEnv(limit=4)]), seed=0), actor, progress
    )
    try:
        for value in (2, 0, 2):
            actor.action.fill_(value)  # what the learner's refresh does, while the child is idle
            remote.request(t_env=0)
            assert (remote.receive().episodes.actions == value).all()
        remote.request(t_env=10_000)  # the child's schedules see the learner's step count
        assert (remote.receive().episodes.actions == 0).all()
    finally:
        remote.close()


def test_a_first_round_started_early_is_the_first_round_the_loop_gets() -> None:
    """The loop asks for the first round before its first greedy test; the rounds then start with that round, asked
    for once, with the weights shared before it, and go on as usual."""
    progress = TrainingProgress()
    actor = SharedConstantActor(progress)
    remote = CollectorProcess(
        EpisodeCollector(EnvPool.from_envs([CorridorEnv(limit=4), CorridorEnv(limit=4)]), seed=0), actor, progress
    )
    shared = iter([1, 2, 1])  # what each refresh shares: both agents playing 1 end an episode after one step
    rounds = ProcessRounds(remote, lambda: actor.action.fill_(next(shared)))
    try:
        rounds.start(0, lambda t: t < 3)
        assert remote.round_in_flight
        got = [r.episodes.actions[:, : r.stats.lengths[0]] for r in rounds.rounds(0, lambda t: t < 3)]
        assert [int(a.unique()) for a in got] == [1, 2]
        rounds.start(0, lambda t: t < 100)
        with pytest.raises(RuntimeError, match="requested at env step 0, the rounds start at 10"):
            next(rounds.rounds(10, lambda t: t < 100))
        assert not remote.round_in_flight  # the round asked for too early is dropped, not left in the pipe
    finally:
        remote.close()


def test_the_child_collects_the_first_round_while_the_learner_runs_its_first_test(
    compose_train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first greedy test runs before any update; the collection process is already collecting then, instead of
    waiting for the learner's first request after it."""
    seen: list[bool] = []
    run_test = TrainingLoop.run_test

    def spy(self: TrainingLoop, actor: object = None) -> dict[str, float]:
        seen.append(isinstance(self.train_collector, CollectorProcess) and self.train_collector.round_in_flight)
        return run_test(self, actor)

    monkeypatch.setattr(TrainingLoop, "run_test", spy)
    overrides = ["env=mpe/spread_simple", "pool.collection=process", "t_max=600", "test_interval=1000"]
    summary = train(compose_train([*overrides, "test_nepisode=2", "algo.batch_size=4", "print_report=false"]), tmp_path)
    assert summary["status"] == "completed"
    assert seen == [True, False]  # the first test with a round in flight; the last one after the last round


def test_importing_the_train_module_leaves_lightning_for_after_the_spawn() -> None:
    """`train()` spawns a SMAX collection process before anything slow; importing Lightning takes seconds, so it
    must come after the spawn (softqmix.fit), not with softqmix.train, which the CLI imports first."""
    import subprocess
    import sys

    code = "import sys, softqmix.train; print(sorted(m for m in sys.modules if m.split('.')[0] == 'lightning'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]"


class RaisesAtStep2(CorridorEnv):
    def step(self, actions: np.ndarray) -> StepResult:
        if self.t == 2:
            raise ValueError("the env broke at step 2")
        return super().step(actions)


def first_round_fails(remote: CollectorProcess, error: str) -> None:
    """Ask for a round and get the child's `error` (a regex) instead; the child is closed either way."""
    try:
        remote.request(t_env=0)
        with pytest.raises(RuntimeError, match=error):
            remote.receive()
    finally:
        remote.close()


def test_an_env_error_in_the_child_reaches_the_learner_with_its_traceback() -> None:
    remote = CollectorProcess(
        EpisodeCollector(EnvPool.from_envs([RaisesAtStep2()]), seed=0), SeededRandomActor(3, 0), TrainingProgress()
    )
    first_round_fails(remote, r"(?s)failed in its process.*ValueError: the env broke at step 2")


def test_a_dead_child_is_a_clear_error_not_a_hang() -> None:
    remote = CollectorProcess(
        EpisodeCollector(EnvPool.from_envs([CorridorEnv()]), seed=0, name="corridor"),
        SeededRandomActor(3, 0),
        TrainingProgress(),
    )
    try:
        os.kill(remote.process.pid, signal.SIGKILL)
        remote.process.join(timeout=10)
        died = r"collection process for env 'corridor' died .*pool.collection=serial"
        with pytest.raises(EnvContractError, match=died):
            remote.request(t_env=0)  # the pipe is broken: send fails, or the reply never comes
            remote.receive()
    finally:
        remote.close()


def test_the_child_ignores_ctrl_c_so_the_learner_can_checkpoint_first() -> None:
    remote = CollectorProcess(
        EpisodeCollector(EnvPool.from_envs([CorridorEnv()]), seed=0), SeededRandomActor(3, 0), TrainingProgress()
    )
    try:
        os.kill(remote.process.pid, signal.SIGINT)
        remote.request(t_env=0)
        assert remote.receive().episodes.batch_size == 1 and remote.process.is_alive()
    finally:
        remote.close()
    assert not remote.process.is_alive()


def test_process_collection_trains_mpe_and_resumes_from_its_checkpoint(compose_train, tmp_path: Path) -> None:
    short = [
        "env=mpe/spread_simple",
        "pool.collection=process",
        "t_max=1500",
        "test_interval=1000",
        "test_nepisode=4",
        "algo.batch_size=8",
        "checkpoint.interval=500",
        "print_report=false",
    ]
    first = train(compose_train(short), tmp_path / "run")
    assert first["status"] == "completed" and first["env_steps"] == 1500 and first["updates"] > 0
    assert first["final_test_return"] < 0
    resumed = train(compose_train([*short, "t_max=2000"]), tmp_path / "run")
    assert resumed["resumed_from_step"] == 1500 and resumed["env_steps"] == 2000


def test_ctrl_c_on_the_process_group_checkpoints_and_leaves_no_child(tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the learner and the collection process together."""
    import subprocess
    import sys
    import time

    from tests.helpers import REPO_ROOT

    run_dir = tmp_path / "run"
    args = [
        sys.executable,
        "train.py",
        "env=mpe/spread_simple",
        "pool.collection=process",
        "t_max=2000000",
        "test_interval=20000",
        "test_nepisode=4",
        "algo.batch_size=8",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.Popen(
        args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "metrics.csv").exists():
        time.sleep(0.5)
    time.sleep(3)  # well inside training, with a round in flight most of the time
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    step = torch.load(checkpoint_path(run_dir), weights_only=False)["progress"]["t_env"]
    assert 0 < step < 2_000_000 and (run_dir / "preempted.json").exists()
    time.sleep(1)
    leftover = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert leftover == [], f"processes left in the run's group: {leftover}"


class BuildsOnlyIn:
    """An env factory that works in the process `pid` and fails anywhere else (a spawned child's env build)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __call__(self) -> CorridorEnv:
        if os.getpid() != self.pid:
            raise FileNotFoundError("the map file is missing")
        return CorridorEnv()


class FirstAction:
    """Every agent plays action 0 (a spawned child needs an actor that pickles)."""

    def initial_hidden(self, n_envs: int) -> torch.Tensor:
        return torch.zeros(n_envs)

    def act(self, obs, state, avail, last, hidden, explore):  # type: ignore[no-untyped-def]
        return torch.zeros(obs.shape[:2], dtype=torch.long), hidden


def test_a_spawned_childs_env_error_arrives_with_its_first_round() -> None:
    """The child builds its envs before it is set up, while the parent goes on; their error is the answer."""
    pool = EnvPool(BuildsOnlyIn(os.getpid()), 2, name="corridor")
    remote = CollectorProcess(
        EpisodeCollector(pool, seed=0, name="corridor"), FirstAction(), TrainingProgress(), start_method="spawn"
    )
    first_round_fails(remote, r"(?s)building the envs failed.*FileNotFoundError: the map file")
    assert not remote.process.is_alive()


def test_a_child_spawned_for_other_envs_is_refused_and_closed() -> None:
    child = SpawnedChild(PoolRecipe(CorridorEnv, None, 3, "corridor"))
    collector = EpisodeCollector(EnvPool(CorridorEnv, 2, name="corridor"), seed=0, name="corridor")
    try:
        with pytest.raises(ValueError, match=r"spawned child was started for .*n_envs=3.*the collector is .*n_envs=2"):
            CollectorProcess(collector, FirstAction(), TrainingProgress(), start_method="spawn", spawned=child)
    finally:
        child.close()
        collector.close()
    assert not child.process.is_alive()
