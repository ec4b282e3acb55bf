"""Collection in a child process, so env stepping and learning use two cores at once.

Threads cannot do this here: the envs (mpe2, SMACv2's protobuf client) and the actor's
small per-step torch calls are Python-bound and hold the interpreter lock the learner
needs. The child is forked with the collector (its envs) and the collection actor, whose
weights live in shared memory; the parent copies the learner's weights in between
rounds, when the child is idle, so the child never reads half-written weights.

One round is in flight at a time: the parent asks for round k+1, then learns on round k
while the child collects. Round k+1 therefore acts with the weights from before the
update on round k (a one-update policy lag, as with the collection thread).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import time
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch

from softqmix.data.buffer import EpisodeBatch
from softqmix.data.collector import Actor, CollectStats, EpisodeCollector
from softqmix.envs.base import EnvInfo
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


def _batch_to_numpy(batch: EpisodeBatch) -> dict[str, np.ndarray]:
    # numpy arrays pickle as plain bytes; torch tensors would be moved to shared-memory files
    return {f.name: getattr(batch, f.name).numpy() for f in fields(batch)}


def _batch_from_numpy(arrays: dict[str, np.ndarray]) -> EpisodeBatch:
    return EpisodeBatch(**{name: torch.from_numpy(a) for name, a in arrays.items()})


def _serve(conn: Connection, collector: EpisodeCollector, actor: Actor, progress: TrainingProgress) -> None:
    """The child: collect a round per request until told to close.

    `progress` is the child's copy of the learner's counters; setting its t_env makes the
    actor's schedules (epsilon) see the learner's step count, as they do in the parent.
    """
    # Ctrl-C and SIGTERM go to the whole process group; the parent handles them (checkpoint,
    # then close), so the child keeps serving until the parent tells it to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(1)  # the other core is the learner's

    def collect(t_env: int) -> tuple[dict[str, np.ndarray], CollectStats, float, dict[str, object]]:
        progress.t_env = t_env
        started = time.perf_counter()
        episodes, stats = collector.collect(actor, explore=True)
        return _batch_to_numpy(episodes), stats, time.perf_counter() - started, collector.state_dict()

    serve(conn, {"collect": collect, "load_state": collector.load_state_dict}, on_exit=collector.close)


class CollectorProcess:
    """An `EpisodeCollector` run by a forked child, asked for one round at a time.

    Fork (not spawn) because the child takes the collector and the actor as they are in
    memory, closures included; fork also shares the actor's weights, moved to shared
    memory by the caller before this is built. Build it before the replay buffer: a fork
    after a large allocation would double it as the parent writes to its pages.
    """

    def __init__(
        self,
        collector: EpisodeCollector,
        actor: Actor,
        progress: TrainingProgress,
        reply_timeout: float = 3600.0,
    ) -> None:
        if collector.pool.mode != "inprocess":
            raise ValueError("the collection process steps its envs itself: give it an in-process pool")
        self.collector, self.name = collector, collector.name
        self.info: EnvInfo = collector.info
        self.reply_timeout = reply_timeout
        self._state: dict[str, object] = collector.state_dict()
        self._in_flight = False
        ctx = mp.get_context("fork")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_serve, args=(child, collector, actor, progress), name="softqmix-collector", daemon=True
        )
        self.process.start()
        child.close()

    @property
    def n_envs(self) -> int:
        return self.collector.n_envs

    def _died(self) -> EnvContractError:
        self.process.join(timeout=1)
        return EnvContractError(
            f"the collection process for env '{self.name}' died (exit code {self.process.exitcode}); "
            "set pool.collection=serial to collect in the learner's process and see the env's own error"
        )

    def _send(self, message: tuple[str, Any]) -> None:
        try:
            self._conn.send(message)
        except (BrokenPipeError, ConnectionResetError, EOFError) as exc:
            raise self._died() from exc

    def _receive(self) -> Any:
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
            with contextlib.suppress(Exception):  # closing must not hide the error that got us here
                self.drain()
                self._conn.send(("close", None))
                self._conn.recv()
            self.process.join(timeout=10)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(timeout=5)
        self._conn.close()
        self.collector.close()
