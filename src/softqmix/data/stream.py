"""The IterableDataset through which Lightning drives collection and learning."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
from torch.utils.data import IterableDataset

from softqmix.data.buffer import EpisodeBatch, EpisodeBuffer
from softqmix.data.collector import Actor, CollectStats, EpisodeCollector
from softqmix.data.collector_process import CollectorProcess


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

    Serial (default, pymarl's order): collect, then update on a batch that includes the new
    episodes, then collect with the updated weights. With `collection_actor` given, the next
    round is collected while the learner trains, with that actor (a copy of the nets that
    `sync_collection_actor` refreshes from the learner's): in a background thread, or, when
    `collector` is a `CollectorProcess`, in its child process. Collection and learning then
    overlap, at the price of a one-update policy lag and of exact reproducibility.
    """

    def __init__(
        self,
        collector: EpisodeCollector | CollectorProcess,
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
        collection_actor: Actor | None = None,
        sync_collection_actor: Callable[[], None] | None = None,
        min_episodes: int = 0,
    ) -> None:
        super().__init__()
        self.collector, self.buffer, self.actor = collector, buffer, actor
        self.progress = progress
        self.batch_size, self.updates_per_collect, self.t_max = batch_size, updates_per_collect, t_max
        self.on_collect, self.on_start = on_collect, on_start
        self.should_stop = should_stop or (lambda: False)
        self.generator = generator
        self.timing = timing or Timing()
        self.collection_actor = collection_actor
        self.sync_collection_actor = sync_collection_actor or (lambda: None)
        self.min_episodes = min_episodes  # burn-in: no batch before the buffer holds this many episodes

    def _collect(self, actor: Actor) -> tuple[EpisodeBatch, CollectStats, float]:
        started = time.perf_counter()
        episodes, stats = self.collector.collect(actor, explore=True)
        return episodes, stats, time.perf_counter() - started

    def _serial_rounds(self) -> Iterator[tuple[EpisodeBatch, CollectStats, float]]:
        while self.progress.t_env < self.t_max and not self.should_stop():
            yield self._collect(self.actor)

    def _overlapped_rounds(self, actor: Actor) -> Iterator[tuple[EpisodeBatch, CollectStats, float]]:
        ready: queue.Queue[tuple[EpisodeBatch, CollectStats, float] | None] = queue.Queue(maxsize=1)
        stop = threading.Event()
        errors: list[BaseException] = []

        def offer(item: tuple[EpisodeBatch, CollectStats, float] | None) -> None:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.05)
                    return
                except queue.Full:
                    continue

        def produce() -> None:
            steps = self.progress.t_env
            try:
                while steps < self.t_max and not stop.is_set():
                    item = self._collect(actor)
                    steps += item[1].env_steps
                    offer(item)
            except BaseException as exc:  # handed to the learner thread, which re-raises it
                errors.append(exc)
            finally:
                offer(None)

        thread = threading.Thread(target=produce, name="softqmix-collector", daemon=True)
        thread.start()
        try:
            while (item := ready.get()) is not None:
                yield item
                if self.should_stop():
                    break
        finally:
            stop.set()
            while thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    ready.get(timeout=0.05)
            thread.join()
        if errors:
            raise errors[0]

    def _process_rounds(self, remote: CollectorProcess) -> Iterator[tuple[EpisodeBatch, CollectStats, float]]:
        """Round k+1 is requested as soon as round k arrives, before the learner trains on it; the
        actor's shared weights are refreshed just before each request, while the child is idle."""
        steps = self.progress.t_env
        if steps >= self.t_max or self.should_stop():
            return
        self.sync_collection_actor()
        remote.request(steps)
        try:
            while True:
                got = remote.receive()
                steps += got.stats.env_steps
                more = steps < self.t_max and not self.should_stop()
                if more:
                    self.sync_collection_actor()
                    remote.request(steps)
                yield got.episodes, got.stats, got.seconds
                if not more:
                    return
        finally:  # stopped early (preemption, an error in the learner): drop the round in flight
            remote.drain()

    def __iter__(self) -> Iterator[EpisodeBatch]:
        if self.on_start is not None:
            self.on_start()
        in_thread = False
        if isinstance(self.collector, CollectorProcess):
            rounds = self._process_rounds(self.collector)
        elif self.collection_actor is not None:
            rounds, in_thread = self._overlapped_rounds(self.collection_actor), True
        else:
            rounds = self._serial_rounds()
        for episodes, stats, seconds in rounds:
            self.buffer.insert(episodes)
            self.timing.collect_seconds += seconds
            self.timing.collect_env_steps += stats.env_steps
            self.progress.t_env += stats.env_steps
            self.progress.episodes += len(stats.returns)
            if self.on_collect is not None:
                self.on_collect(stats)
            if self.buffer.can_sample(max(self.batch_size, self.min_episodes)):
                for _ in range(self.updates_per_collect):
                    yield self.buffer.sample(self.batch_size, self.generator)
                    if in_thread:  # the update on that batch is done: the thread acts with it from now on
                        self.sync_collection_actor()
