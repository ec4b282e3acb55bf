"""A pool of `n_envs` copies of one env, stepped together, in this process or in worker processes.

Worker mode puts each env in its own process (pymarl's parallel runner), so env stepping
runs on the cores the learner does not use. In process, a family that batches its envs (SMAX: one
jitted, vmapped call for all of them) is stepped as one vector env instead of n separate ones. A worker
that dies is restarted with a fresh env; the episode it was running is reported as lost (None) and
discarded by the caller. After `max_restarts` deaths the pool gives up with a clear error instead of looping.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from softqmix.envs.base import EnvInfo, MultiAgentEnv, Observation, Observations, StepResult, VectorEnv, VectorStep
from softqmix.errors import EnvContractError
from softqmix.pipe_server import serve

log = logging.getLogger(__name__)

EnvFactory = Callable[[], MultiAgentEnv]


def _set_rng(env: MultiAgentEnv, state: Any) -> None:
    if state is not None:
        env.set_rng_state(state)  # type: ignore[attr-defined]


def _worker(conn: Connection, factory: EnvFactory) -> None:
    """Serve one env over a pipe until told to close."""
    env = factory()
    handlers = {
        "step": env.step,
        "reset": lambda seed: env.reset(seed=seed),
        "info": lambda _: env.info(),
        "get_rng": lambda _: env.get_rng_state() if hasattr(env, "get_rng_state") else None,
        "set_rng": lambda state: _set_rng(env, state),
    }
    serve(conn, handlers, on_exit=env.close)


class _Worker:
    def __init__(self, ctx: Any, factory: EnvFactory) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child, factory), daemon=True)
        self.process.start()
        child.close()


class WorkerDied(Exception):
    pass


class PerEnvView:
    """A vector env seen only through its per-env interface (one Observation / StepResult per env), so that the
    collector takes its loop over envs: to compare that loop with the array path on the same env
    (benchmarks/collection.py, tests/test_smax.py)."""

    def __init__(self, vector: Any) -> None:
        self.vector = vector

    def __getattr__(self, name: str) -> Any:
        if name in ("reset_all", "step_all"):
            raise AttributeError(name)
        return getattr(self.vector, name)


class EnvPool:
    """`n_envs` envs from one factory; `mode` is "inprocess" or "workers"."""

    def __init__(
        self,
        factory: EnvFactory,
        n_envs: int,
        mode: str = "inprocess",
        start_method: str = "fork",
        max_restarts: int = 3,
        name: str = "env",
        vector_factory: Callable[[int], Any] | None = None,
    ) -> None:
        if n_envs < 1:
            raise ValueError("batch_size_run must be >= 1")
        if mode not in ("inprocess", "workers"):
            raise ValueError(f"pool.mode must be 'inprocess' or 'workers', got '{mode}'")
        self.factory, self.n_envs, self.mode, self.name = factory, n_envs, mode, name
        self.vector_factory = vector_factory
        self.max_restarts, self.restarts = max_restarts, 0
        # One conversation with the workers at a time: with overlapped learning the collection
        # thread steps the pool while the learner thread may ask for RNG states (checkpoints).
        self._lock = threading.RLock()
        self._envs: list[MultiAgentEnv] = []
        self._workers: list[_Worker] = []
        self._vector: Any = None
        if mode == "inprocess" and vector_factory is not None:
            self._vector = vector_factory(n_envs)
            self.info: EnvInfo = self._vector.info()
        elif mode == "inprocess":
            self._envs = [factory() for _ in range(n_envs)]
            self.info = self._envs[0].info()
        else:
            self._ctx = mp.get_context(start_method)
            self._workers = [_Worker(self._ctx, factory) for _ in range(n_envs)]
            self.info = self._call(0, "info", None)

    @classmethod
    def from_envs(cls, envs: list[MultiAgentEnv], name: str = "env") -> EnvPool:
        """An in-process pool over env objects that already exist (tests, notebooks)."""
        if not envs:
            raise ValueError("the pool needs at least one env (batch_size_run >= 1)")
        remaining = list(envs)
        return cls(lambda: remaining.pop(0), len(envs), mode="inprocess", name=name)

    @property
    def envs(self) -> list[MultiAgentEnv]:
        """The env objects (in-process mode only; a report may need to look inside one)."""
        if self.mode != "inprocess" or self._vector is not None:
            raise RuntimeError("env objects live in worker processes (pool.mode=workers) or in one vector env")
        return self._envs

    @property
    def steps_arrays(self) -> bool:
        """Whether `reset_all` / `step_all` work: a vector env with the array interface (SMAX)."""
        return isinstance(self._vector, VectorEnv)

    def reset_all(self, seeds: Sequence[int | None]) -> Observations:
        """Reset every env of the vector env at once (`steps_arrays` pools only)."""
        with self._lock:
            return self._vector.reset_all(list(seeds))  # type: ignore[no-any-return]

    def step_all(self, actions: np.ndarray, active: np.ndarray) -> VectorStep:
        """Step every env of the vector env at once; only the `active` ones act (`steps_arrays` pools only)."""
        with self._lock:
            return self._vector.step_all(actions, active)  # type: ignore[no-any-return]

    # -------------------------------------------------------------- worker plumbing
    def _receive(self, index: int) -> Any:
        worker = self._workers[index]
        try:
            status, value = worker.conn.recv()
        except (EOFError, ConnectionResetError, BrokenPipeError, OSError) as exc:
            raise WorkerDied(str(exc)) from exc
        if status == "error":
            raise RuntimeError(f"env '{self.name}' (copy {index}) raised in its worker:\n{value}")
        return value

    def _send(self, index: int, command: str, payload: Any) -> None:
        try:
            self._workers[index].conn.send((command, payload))
        except (BrokenPipeError, ConnectionResetError, OSError) as exc:
            raise WorkerDied(str(exc)) from exc

    def _call(self, index: int, command: str, payload: Any) -> Any:
        self._send(index, command, payload)
        return self._receive(index)

    def _restart(self, index: int, reason: str) -> None:
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise EnvContractError(
                f"env '{self.name}': workers died {self.restarts} times (last: copy {index}, {reason}); "
                f"giving up after pool.max_restarts={self.max_restarts}"
            )
        log.warning("env '%s' worker %d died (%s); restarting it and discarding its episode", self.name, index, reason)
        old = self._workers[index]
        if old.process.is_alive():
            old.process.kill()
        old.process.join(timeout=5)
        self._workers[index] = _Worker(self._ctx, self.factory)

    # -------------------------------------------------------------- public API
    def reset(self, seeds: Sequence[int | None]) -> list[Observation]:
        """Reset every env (seed None continues the env's own RNG stream)."""
        with self._lock:
            if self._vector is not None:
                return self._vector.reset(list(seeds))
            if self.mode == "inprocess":
                return [env.reset(seed=seed) for env, seed in zip(self._envs, seeds, strict=True)]
            out: list[Observation] = []
            for i, seed in enumerate(seeds):
                while True:
                    try:
                        out.append(self._call(i, "reset", seed))
                        break
                    except WorkerDied as exc:
                        self._restart(i, str(exc) or "no reply")
            return out

    def step(self, indices: Sequence[int], actions: np.ndarray) -> list[StepResult | None]:
        """Step the envs named by `indices` with `actions[k]` for env indices[k].

        None in the result marks an env whose worker died during the step: its episode is lost.
        """
        with self._lock:
            if self._vector is not None:
                return self._vector.step(list(indices), actions)
            if self.mode == "inprocess":
                return [self._envs[i].step(a) for i, a in zip(indices, actions, strict=True)]
            sent: list[int] = []
            results: list[StepResult | None] = [None] * len(indices)
            dead: set[int] = set()
            for k, i in enumerate(indices):
                try:
                    self._send(i, "step", actions[k])
                    sent.append(k)
                except WorkerDied:
                    dead.add(k)
            for k in sent:
                try:
                    results[k] = self._receive(indices[k])
                except WorkerDied:
                    dead.add(k)
            for k in sorted(dead):
                self._restart(indices[k], "died during step")
            return results

    def warm_up(self) -> None:
        """Let a vector env prepare what its first steps would otherwise prepare (SMAX: its jitted calls), without
        changing its state; nothing for other pools."""
        warm_up = getattr(self._vector, "warm_up", None)
        if warm_up is not None:
            warm_up()

    def rng_states(self) -> list[Any]:
        with self._lock:
            if self._vector is not None:
                return self._vector.get_rng_state()
            if self.mode == "inprocess":
                return [env.get_rng_state() if hasattr(env, "get_rng_state") else None for env in self._envs]
            return [self._call(i, "get_rng", None) for i in range(self.n_envs)]

    def set_rng_states(self, states: Sequence[Any]) -> None:
        with self._lock:
            if self._vector is not None:
                self._vector.set_rng_state(list(states))
                return
            for i, state in enumerate(states):
                if state is None:
                    continue
                if self.mode == "inprocess":
                    self._envs[i].set_rng_state(state)  # type: ignore[attr-defined]
                else:
                    self._call(i, "set_rng", state)

    def worker_pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def close(self) -> None:
        with self._lock:
            if self._vector is not None:
                self._vector.close()
                self._vector = None
            for env in self._envs:
                env.close()
            for worker in self._workers:
                try:
                    worker.conn.send(("close", None))
                    worker.conn.recv()
                except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
                    pass
                worker.process.join(timeout=5)
                if worker.process.is_alive():
                    worker.process.kill()
            self._workers = []
            self._envs = []
