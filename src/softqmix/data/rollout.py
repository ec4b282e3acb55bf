"""On-policy data for PPO-style learners: each fresh rollout, cut into minibatches for several epochs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import IterableDataset

from softqmix.data.buffer import EpisodeBatch
from softqmix.data.collector import Actor, CollectStats, EpisodeCollector
from softqmix.data.stream import Timing, TrainingProgress


@dataclass
class Minibatch:
    """Rows of one prepared rollout for one gradient step."""

    rollout: Any  # what `prepare` returned for the rollout: old log-probs, advantages, ...
    rows: torch.Tensor  # episode indices into the rollout
    epoch: int


class RolloutStream(IterableDataset):
    """Collect `rollout_episodes` episodes with the current policy, prepare them, yield minibatches.

    `prepare` runs once per rollout, before any update on it, so that old log-probs, values and
    advantages come from the policy that collected the data. Every episode is used `epochs`
    times in `num_mini_batch` minibatches; then the data is dropped and a new rollout starts.
    Iteration ends when `progress.t_env` reaches `t_max` (after the rollout that crossed it).
    """

    def __init__(
        self,
        collector: EpisodeCollector,
        actor: Actor,
        progress: TrainingProgress,
        rollout_episodes: int,
        epochs: int,
        num_mini_batch: int,
        t_max: int,
        prepare: Callable[[EpisodeBatch], Any],
        on_collect: Callable[[CollectStats], None] | None = None,
        on_start: Callable[[], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        timing: Timing | None = None,
    ) -> None:
        super().__init__()
        if rollout_episodes < num_mini_batch:
            raise ValueError(f"rollout_episodes ({rollout_episodes}) must be >= num_mini_batch ({num_mini_batch})")
        self.collector, self.actor, self.progress = collector, actor, progress
        self.rollout_episodes, self.epochs, self.num_mini_batch = rollout_episodes, epochs, num_mini_batch
        self.t_max, self.prepare = t_max, prepare
        self.on_collect, self.on_start = on_collect, on_start
        self.should_stop = should_stop or (lambda: False)
        self.timing = timing or Timing()

    def _rollout(self) -> EpisodeBatch:
        rounds: list[EpisodeBatch] = []
        while sum(b.batch_size for b in rounds) < self.rollout_episodes:
            started = time.perf_counter()
            episodes, stats = self.collector.collect(self.actor, explore=True)
            self.timing.collect_seconds += time.perf_counter() - started
            self.timing.collect_env_steps += stats.env_steps
            self.progress.t_env += stats.env_steps
            self.progress.episodes += len(stats.returns)
            if self.on_collect is not None:
                self.on_collect(stats)
            rounds.append(episodes)
        return EpisodeBatch.concat(rounds)

    def __iter__(self) -> Iterator[Minibatch]:
        if self.on_start is not None:
            self.on_start()
        while self.progress.t_env < self.t_max and not self.should_stop():
            batch = self._rollout()
            prepared = self.prepare(batch)
            for epoch in range(self.epochs):
                for rows in torch.randperm(batch.batch_size).chunk(self.num_mini_batch):
                    yield Minibatch(prepared, rows, epoch)
                    if self.should_stop():
                        return
