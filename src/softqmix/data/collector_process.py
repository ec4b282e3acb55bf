"""Collection in a child process, so env stepping and learning use two cores at once.

Threads cannot do this here: the envs (mpe2, SMACv2's protobuf client, SMAX's per-step Python) and the actor's
small per-step torch calls are Python-bound and hold the interpreter lock the learner needs. The child holds the
collector (its envs) and the collection actor, whose weights live in shared memory; the parent copies the
learner's weights in between rounds, when the child is idle, so the child never reads half-written weights.

How the child starts depends on the env family (`EnvFamily.fork_safe`):
- fork: the child takes the collector and the actor as they are in memory, closures included;
- spawn (SMAX: JAX deadlocks in a forked copy of a process that has used it): a fresh interpreter rebuilds the
  collector from its factories and state (`CollectorRecipe`) and unpickles the actor, whose shared weights arrive
  as handles to the same memory. Its imports and env build run while the parent starts up and tests.

One round is in flight at a time: the parent asks for round k+1, then learns on round k while the child collects.
Round k+1 therefore acts with the weights from before the update on round k (a one-update policy lag, as with
the collection thread).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from softqmix.cpu_placement import CpuSplit
from softqmix.data.buffer import EpisodeBatch
from softqmix.data.collector import Actor, CollectStats, EpisodeCollector
from softqmix.envs.base import EnvInfo
from softqmix.envs.pool import EnvFactory, EnvPool
from softqmix.errors import EnvContractError
from softqmix.pipe_server import serve
from softqmix.progress import TrainingProgress


@dataclass
class CollectedRound:
    """One round from the child: its episodes, their outcomes, the time it took, and the
    collector's state after it (what a checkpoint taken before the next round must hold)."""

    episodes: EpisodeBatch
    stats: CollectStats
    seconds: float
    collector_state: dict[str, object]


def _batch_to_numpy(batch: EpisodeBatch) -> tuple[int, dict[str, np.ndarray]]:
    """The round's recorded steps only (the rest is zeros: on SMAX three quarters of the padded batch), with the
    batch's step count to pad it back to. Numpy arrays pickle as plain bytes; torch tensors would be moved to
    shared-memory files."""
    head = batch.head(batch.recorded_steps())
    return batch.max_t, {f.name: getattr(head, f.name).numpy() for f in fields(head)}


def _batch_from_numpy(message: tuple[int, dict[str, np.ndarray]]) -> EpisodeBatch:
    max_t, arrays = message
    return EpisodeBatch(**{name: torch.from_numpy(a) for name, a in arrays.items()}).padded_to(max_t)


@dataclass(frozen=True)
class PoolRecipe:
    """What a spawned child needs to build the parent's training envs itself: the pool's factories (which pickle)
    instead of the envs. The collector's state (pending seeds, env RNGs) follows when the child is set up."""

    factory: EnvFactory
    vector_factory: Callable[[int], Any] | None
    n_envs: int
    name: str

    @classmethod
    def of(cls, pool: EnvPool) -> PoolRecipe:
        return cls(pool.factory, pool.vector_factory, pool.n_envs, pool.name)

    def build(self) -> EnvPool:
        return EnvPool(self.factory, self.n_envs, name=self.name, vector_factory=self.vector_factory)

    def builds_the_same_envs_as(self, other: PoolRecipe) -> bool:
        """Factories are new objects each time they are made from a config; what they pickle to is what they build."""
        return (self.n_envs, self.name) == (other.n_envs, other.name) and pickle.dumps(
            (self.factory, self.vector_factory)
        ) == pickle.dumps((other.factory, other.vector_factory))


def _ignore_stop_signals() -> None:
    # Ctrl-C and SIGTERM go to the whole process group; the parent handles them (checkpoint,
    # then close), so the child keeps serving until the parent tells it to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(1)  # the other core is the learner's


def _collect_round(
    collector: EpisodeCollector, actor: Actor, progress: TrainingProgress, t_env: int
) -> tuple[tuple[int, dict[str, np.ndarray]], CollectStats, float, dict[str, object]]:
    """`progress` is the child's copy of the learner's counters; setting its t_env makes the actor's schedules
    (epsilon) see the learner's step count, as they do in the parent."""
    progress.t_env = t_env
    started = time.perf_counter()
    episodes, stats = collector.collect(actor, explore=True)
    return _batch_to_numpy(episodes), stats, time.perf_counter() - started, collector.state_dict()


def _serve(
    conn: Connection, collector: EpisodeCollector, actor: Actor, progress: TrainingProgress, split: CpuSplit | None
) -> None:
    """The forked child: collect a round per request until told to close."""
    _ignore_stop_signals()
    if split is not None:
        split.enter_collector()
    handlers = {"collect": lambda t_env: _collect_round(collector, actor, progress, t_env)}
    serve(conn, {**handlers, "load_state": collector.load_state_dict}, on_exit=collector.close)


def _serve_spawned(conn: Connection, recipe: PoolRecipe, log_file: Path | None, split: CpuSplit | None) -> None:
    """The spawned child: its output to the run's log file (the console shows only our lines), then its envs,
    built and warmed up (their jitted calls compiled) while the parent still builds the learner; then ("setup",
    (collector state, actor, progress)) and the same service as a forked child. A failure to build the envs is
    the answer to the setup request."""
    if log_file is not None:
        log = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
    _ignore_stop_signals()
    if split is not None:  # before the env's library starts its worker threads, which then inherit it
        split.enter_collector()
    pool: EnvPool | None = None
    failure = ""
    try:
        pool = recipe.build()
        pool.warm_up()
    except Exception:
        failure = traceback.format_exc()
    held: dict[str, Any] = {}

    def setup(payload: tuple[dict[str, object], Actor, TrainingProgress]) -> None:
        if pool is None:
            raise RuntimeError(f"building the envs failed:\n{failure}")
        state, actor, progress = payload
        collector = EpisodeCollector(pool, seed=0, name=recipe.name)  # the seeds come with the state
        collector.load_state_dict(state)
        held.update(collector=collector, actor=actor, progress=progress)

    def collect(t_env: int) -> tuple[tuple[int, dict[str, np.ndarray]], CollectStats, float, dict[str, object]]:
        return _collect_round(held["collector"], held["actor"], held["progress"], t_env)

    handlers = {"setup": setup, "collect": collect, "load_state": lambda s: held["collector"].load_state_dict(s)}
    serve(conn, handlers, on_exit=lambda: pool.close() if pool is not None else None)


@contextlib.contextmanager
def _signals_ignored_in_children() -> Iterator[None]:
    """A spawned child executes a new interpreter, which keeps ignored signals ignored: so Ctrl-C and SIGTERM
    during its seconds of imports reach only the parent, which checkpoints and then closes the child."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class SpawnedChild:
    """A collection process spawned ahead of its work: a fresh interpreter (for env families that hang in a forked
    child) takes seconds to import torch and the env's library and to build its envs (SMAX: about 10 s here), so
    the run starts it first and builds the learner meanwhile; `CollectorProcess` then sends it the actor."""

    def __init__(self, recipe: PoolRecipe, log_file: Path | None = None, split: CpuSplit | None = None) -> None:
        self.recipe, self.log_file, self.split = recipe, log_file, split
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_serve_spawned, args=(child, recipe, log_file, split), name="softqmix-collector", daemon=True
        )
        with _signals_ignored_in_children():
            self.process.start()
        child.close()
        self.taken = False

    def close(self) -> None:
        """Stop a child that no `CollectorProcess` took (the run failed before it got there). It holds nothing
        worth waiting for, and may still be importing for seconds: it is killed unless it ends at once."""
        if self.taken:
            return
        with contextlib.suppress(Exception):
            self.conn.send(("close", None))
        self.process.join(timeout=0.5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


class CollectorProcess:
    """An `EpisodeCollector` run by a child process, asked for one round at a time.

    `start_method` "fork" hands the child the collector and the actor as they are in memory; fork also shares the
    actor's weights, moved to shared memory by the caller before this is built. Build it before the replay buffer:
    a fork after a large allocation would double it as the parent writes to its pages. "spawn" (for env families
    that do not survive a fork) uses `spawned`, a `SpawnedChild` started earlier for the same envs (or starts one
    now), and sends it the collector's state and the pickled actor, whose shared weights arrive as handles to the
    same memory; the parent's collector then only describes the envs and is never stepped. The setup's answer is
    read with the first round's, so the parent does not wait for the child's start-up here. `log_file` takes a
    child spawned here's output (None: the parent's terminal). `split` pins the child and renices it
    (softqmix.cpu_placement); a spawned child got it when it started.
    """

    def __init__(
        self,
        collector: EpisodeCollector,
        actor: Actor,
        progress: TrainingProgress,
        reply_timeout: float = 3600.0,
        start_method: str = "fork",
        spawned: SpawnedChild | None = None,
        log_file: Path | None = None,
        split: CpuSplit | None = None,
    ) -> None:
        if collector.pool.mode != "inprocess":
            raise ValueError("the collection process steps its envs itself: give it an in-process pool")
        if start_method not in ("fork", "spawn"):
            raise ValueError(f"start_method must be 'fork' or 'spawn', got '{start_method}'")
        self.collector, self.name = collector, collector.name
        self.info: EnvInfo = collector.info
        self.reply_timeout = reply_timeout
        self._state: dict[str, object] = collector.state_dict()
        self._in_flight = False
        self._setup_answer_due = False
        self.spawned = start_method == "spawn"
        if start_method == "fork":
            ctx = mp.get_context("fork")
            self._conn, child = ctx.Pipe()
            self.process = ctx.Process(
                target=_serve, args=(child, collector, actor, progress, split), name="softqmix-collector", daemon=True
            )
            self.process.start()
            child.close()
            self.log_file = None
            return
        recipe = PoolRecipe.of(collector.pool)
        if spawned is None:
            spawned = SpawnedChild(recipe, log_file, split)
        elif not spawned.recipe.builds_the_same_envs_as(recipe):
            raise ValueError(f"the spawned child was started for {spawned.recipe}, the collector is {recipe}")
        elif spawned.split != split:
            raise ValueError(f"the spawned child was started with CPU split {spawned.split}, the run has {split}")
        spawned.taken = True
        self.process, self._conn, self.log_file = spawned.process, spawned.conn, spawned.log_file
        self._send(("setup", (self._state, actor, progress)))
        self._setup_answer_due = True

    @property
    def n_envs(self) -> int:
        return self.collector.n_envs

    def _died(self) -> EnvContractError:
        self.process.join(timeout=1)
        where = f" (its output is in {self.log_file})" if self.log_file is not None else ""
        return EnvContractError(
            f"the collection process for env '{self.name}' died (exit code {self.process.exitcode}){where}; "
            "set pool.collection=serial to collect in the learner's process and see the env's own error"
        )

    def _send(self, message: tuple[str, Any]) -> None:
        try:
            self._conn.send(message)
        except (BrokenPipeError, ConnectionResetError, EOFError) as exc:
            raise self._died() from exc

    def _receive(self) -> Any:
        if self._setup_answer_due:
            self._setup_answer_due = False
            self._receive()
        deadline = time.monotonic() + self.reply_timeout
        while not self._conn.poll(0.5):
            if not self.process.is_alive():
                raise self._died()
            if time.monotonic() > deadline:
                raise EnvContractError(
                    f"the collection process for env '{self.name}' sent nothing for {self.reply_timeout:.0f} s"
                )
        try:
            status, value = self._conn.recv()
        except (EOFError, ConnectionResetError) as exc:
            raise self._died() from exc
        if status == "error":
            raise RuntimeError(f"collection for env '{self.name}' failed in its process:\n{value}")
        return value

    def request(self, t_env: int) -> None:
        """Start a round in the child; the actor's schedules see `t_env`."""
        if self._in_flight:
            raise RuntimeError("a collection round is already in flight; receive() it first")
        self._send(("collect", int(t_env)))
        self._in_flight = True

    @property
    def round_in_flight(self) -> bool:
        """Whether a requested round has not been received yet."""
        return self._in_flight

    def receive(self) -> CollectedRound:
        """Wait for the round in flight."""
        if not self._in_flight:
            raise RuntimeError("no collection round in flight; request() one first")
        self._in_flight = False  # answered or failed: either way nothing is in flight any more
        arrays, stats, seconds, state = self._receive()
        self._state = state
        return CollectedRound(_batch_from_numpy(arrays), stats, seconds, state)

    def drain(self) -> None:
        """Drop the round in flight, if any (the run stops before using it)."""
        if self._in_flight:
            self.receive()

    def state_dict(self) -> dict[str, object]:
        """The collector's state after the last received round (a round in flight is not counted in
        t_env either, so a resume collects it again from here)."""
        return dict(self._state)

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.drain()
        self._send(("load_state", state))
        self._receive()
        self._state = dict(state)

    def close(self) -> None:
        """Stop the child (which closes its envs); safe to call twice and after a failure."""
        if self.process.is_alive():
            closed = False
            with contextlib.suppress(Exception):  # closing must not hide the error that got us here
                self.drain()
                self._conn.send(("close", None))
                self._conn.recv()
                closed = True
            # A spawned child that has closed its envs is not waited for while its interpreter tears down JAX
            # (about a second here): it is killed below.
            self.process.join(timeout=0.2 if closed and self.spawned else 10)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(timeout=5)
        self._conn.close()
        self.collector.close()
