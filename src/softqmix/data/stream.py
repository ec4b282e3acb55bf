"""The IterableDataset through which Lightning drives collection and learning."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
from torch.utils.data import IterableDataset

from softqmix.data.buffer import EpisodeBatch, EpisodeBuffer
from softqmix.data.collector import Actor, CollectStats, EpisodeCollector


@dataclass
class Timing:
    """Wall seconds spent per part of the loop; benchmarks and the perf/ metrics read them."""

    collect_seconds: float = 0.0
    collect_env_steps: int = 0
    update_seconds: float = 0.0
    updates: int = 0
    test_seconds: float = 0.0


@dataclass
class TrainingProgress:
    """Counters that schedule everything; Lightning's global_step counts optimizer steps instead."""

    t_env: int = 0
    episodes: int = 0
    updates: int = 0
    last_target_sync_episode: int = 0
    last_test_t: int = -1
    last_log_t: int = 0
    last_checkpoint_t: int = 0

    def state_dict(self) -> dict[str, int]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, int]) -> None:
        for k, v in state.items():
            setattr(self, k, int(v))


class ReplayStream(IterableDataset):
    """Collect `batch_size_run` episodes with the behaviour policy, store them, yield sampled batches.

    Iteration ends when `progress.t_env` reaches `t_max`, which ends Lightning's single epoch:
    the run's length is set in env steps, never in optimizer steps.
    """

    def __init__(
        self,
        collector: EpisodeCollector,
        buffer: EpisodeBuffer,
        actor: Actor,
        progress: TrainingProgress,
        batch_size: int,
        updates_per_collect: int,
        t_max: int,
        on_collect: Callable[[CollectStats], None] | None = None,
        on_start: Callable[[], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        generator: torch.Generator | None = None,
        timing: Timing | None = None,
    ) -> None:
        super().__init__()
        self.collector, self.buffer, self.actor = collector, buffer, actor
        self.progress = progress
        self.batch_size, self.updates_per_collect, self.t_max = batch_size, updates_per_collect, t_max
        self.on_collect, self.on_start = on_collect, on_start
        self.should_stop = should_stop or (lambda: False)
        self.generator = generator
        self.timing = timing or Timing()

    def __iter__(self) -> Iterator[EpisodeBatch]:
        if self.on_start is not None:
            self.on_start()
        while self.progress.t_env < self.t_max and not self.should_stop():
            started = time.perf_counter()
            episodes, stats = self.collector.collect(self.actor, explore=True)
            self.buffer.insert(episodes)
            self.timing.collect_seconds += time.perf_counter() - started
            self.timing.collect_env_steps += stats.env_steps
            self.progress.t_env += stats.env_steps
            self.progress.episodes += len(stats.returns)
            if self.on_collect is not None:
                self.on_collect(stats)
            if self.buffer.can_sample(self.batch_size):
                for _ in range(self.updates_per_collect):
                    yield self.buffer.sample(self.batch_size, self.generator)
