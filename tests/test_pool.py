"""EnvPool: worker mode equals in-process mode; dead workers are restarted, their episodes discarded."""

from __future__ import annotations

import os
import signal
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from softqmix.data.buffer import EpisodeBatch
from softqmix.data.collector import EpisodeCollector
from softqmix.envs.base import StepResult
from softqmix.envs.pool import EnvPool
from softqmix.envs.registry import env_factory
from softqmix.errors import EnvContractError
from tests.helpers import MPE_SIMPLE, CorridorEnv, SeededRandomActor


def _episodes(mode: str) -> list[EpisodeBatch]:
    pool = EnvPool(env_factory(MPE_SIMPLE), 3, mode=mode, name="mpe/spread_simple")
    collector = EpisodeCollector(pool, seed=11, name="mpe")
    actor = SeededRandomActor(5, seed=0)
    try:
        return [collector.collect(actor, explore=True)[0] for _ in range(2)]
    finally:
        collector.close()


def test_worker_mode_gives_the_same_episodes_as_in_process() -> None:
    for a, b in zip(_episodes("inprocess"), _episodes("workers"), strict=True):
        for name in ("obs", "state", "avail", "actions", "reward", "terminated", "filled"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name))


class DiesOnce(CorridorEnv):
    """Kills its own process at step 2 the first time any copy gets there (a marker file remembers)."""

    def __init__(self, marker: str) -> None:
        super().__init__(limit=4)
        self.marker = Path(marker)

    def step(self, actions: np.ndarray) -> StepResult:
        if self.t == 2:
            try:  # O_EXCL: exactly one copy wins the marker, even when several reach step 2 at once
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return super().step(actions)
            os._exit(1)
        return super().step(actions)


class AlwaysDies(CorridorEnv):
    def step(self, actions: np.ndarray) -> StepResult:
        os._exit(1)


def test_a_worker_that_dies_mid_episode_is_restarted_and_its_episode_discarded(tmp_path: Path) -> None:
    pool = EnvPool(partial(DiesOnce, str(tmp_path / "marker")), 3, mode="workers", name="corridor")
    collector = EpisodeCollector(pool, seed=0, name="corridor")
    actor = SeededRandomActor(3, seed=0)
    try:
        batch, stats = collector.collect(actor, explore=True)
        assert stats.discarded == 1 and pool.restarts == 1
        assert batch.batch_size == 2 and len(stats.returns) == 2
        batch, stats = collector.collect(actor, explore=True)  # the restarted worker serves again
        assert stats.discarded == 0 and batch.batch_size == 3
    finally:
        collector.close()


def test_a_worker_killed_from_outside_is_restarted() -> None:
    pool = EnvPool(partial(CorridorEnv, 4), 2, mode="workers", name="corridor")
    collector = EpisodeCollector(pool, seed=0, name="corridor")
    try:
        os.kill(pool.worker_pids()[0], signal.SIGKILL)
        batch, stats = collector.collect(SeededRandomActor(3, seed=1), explore=True)
        assert pool.restarts == 1 and batch.batch_size == 2 and stats.discarded == 0
    finally:
        collector.close()


def test_repeated_deaths_end_with_a_clear_error() -> None:
    pool = EnvPool(AlwaysDies, 1, mode="workers", max_restarts=2, name="doomed/env")
    collector = EpisodeCollector(pool, seed=0, name="doomed/env")
    try:
        with pytest.raises(EnvContractError, match=r"doomed/env.*max_restarts=2"):
            for _ in range(5):
                collector.collect(SeededRandomActor(3, seed=0), explore=True)
    finally:
        collector.close()
