"""Where training episodes come from: one round = one episode from each of the `batch_size_run` envs.

Serial (default, pymarl's order): collect, then update on a batch that includes the new episodes,
then collect with the updated weights. Thread and process collection gather the next round while
the learner trains, with an actor of their own (a copy of the acting nets that `sync` refreshes
from the learner's): in a background thread, or in the child of a `CollectorProcess` (forked, or spawned
for envs that do not survive a fork).
Collection and learning then overlap, at the price of a one-update policy lag and of exact
reproducibility (pool.collection, docs/mpe.md).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from softqmix.data.buffer import EpisodeBatch
from softqmix.data.collector import Actor, CollectStats, EpisodeCollector
from softqmix.data.collector_process import CollectorProcess

# Asked with the env steps that the loop will have counted once the rounds so far are recorded.
KeepGoing = Callable[[int], bool]


@dataclass
class Round:
    episodes: EpisodeBatch
    stats: CollectStats
    seconds: float


def collect_round(collector: EpisodeCollector, actor: Actor) -> Round:
    started = time.perf_counter()
    episodes, stats = collector.collect(actor, explore=True)
    return Round(episodes, stats, time.perf_counter() - started)


class SerialRounds:
    """Collect in the learner's thread, in turn with the updates, with the learner's own actor or with a CPU
    copy of it that `sync` refreshes after every update (a learner on a GPU: acting then needs no device
    round trip per env step, and acts with exactly the weights it would have shared)."""

    def __init__(self, collector: EpisodeCollector, actor: Actor, sync: Callable[[], None] | None = None) -> None:
        self.collector, self.actor = collector, actor
        self.sync = sync or (lambda: None)

    def collect_one(self) -> Round:
        return collect_round(self.collector, self.actor)

    def rounds(self, t_env: int, keep_going: KeepGoing) -> Iterator[Round]:
        while keep_going(t_env):
            item = self.collect_one()
            t_env += item.stats.env_steps
            yield item

    def after_update(self) -> None:
        self.sync()


class ThreadRounds(SerialRounds):
    """The next round in a background thread, with `actor` (a copy refreshed by `sync` after each update)."""

    def rounds(self, t_env: int, keep_going: KeepGoing) -> Iterator[Round]:
        ready: queue.Queue[Round | None] = queue.Queue(maxsize=1)
        stop = threading.Event()
        errors: list[BaseException] = []

        def offer(item: Round | None) -> None:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.05)
                    return
                except queue.Full:
                    continue

        def produce() -> None:
            steps = t_env
            try:
                while keep_going(steps) and not stop.is_set():
                    item = self.collect_one()
                    steps += item.stats.env_steps
                    offer(item)
            except BaseException as exc:  # handed to the learner thread, which re-raises it
                errors.append(exc)
            finally:
                offer(None)

        thread = threading.Thread(target=produce, name="softqmix-collector", daemon=True)
        thread.start()
        consumed = t_env
        try:
            while (item := ready.get()) is not None:
                consumed += item.stats.env_steps
                yield item
                if not keep_going(consumed):  # t_max reached or a stop signal: the producer stops too
                    break
        finally:
            stop.set()
            while thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    ready.get(timeout=0.05)
            thread.join()
        if errors:
            raise errors[0]


class ProcessRounds:
    """Rounds from a `CollectorProcess`: round k+1 is requested as soon as round k arrives, before the
    learner trains on it; the actor's shared weights are refreshed just before each request, while the
    child is idle."""

    def __init__(self, remote: CollectorProcess, sync: Callable[[], None]) -> None:
        self.remote, self.sync = remote, sync
        self._started_at: int | None = None  # the env step of a first round requested before `rounds`

    def start(self, t_env: int, keep_going: KeepGoing) -> None:
        """Request the first round now, e.g. before the learner's first greedy test, so that the child collects
        while the learner tests; `rounds(t_env, ...)` then takes it instead of asking again."""
        if self._started_at is None and keep_going(t_env):
            self.sync()
            self.remote.request(t_env)
            self._started_at = t_env

    def rounds(self, t_env: int, keep_going: KeepGoing) -> Iterator[Round]:
        steps = t_env
        started, self._started_at = self._started_at, None
        if started is not None and started != t_env:
            self.remote.drain()
            raise RuntimeError(f"the first round was requested at env step {started}, the rounds start at {t_env}")
        if not keep_going(steps):
            self.remote.drain()
            return
        if started is None:
            self.sync()
            self.remote.request(steps)
        try:
            while True:
                got = self.remote.receive()
                steps += got.stats.env_steps
                more = keep_going(steps)
                if more:
                    self.sync()
                    self.remote.request(steps)
                yield Round(got.episodes, got.stats, got.seconds)
                if not more:
                    return
        finally:  # stopped early (preemption, an error in the learner): drop the round in flight
            self.remote.drain()

    def after_update(self) -> None:
        """Weights are refreshed before each request instead."""
