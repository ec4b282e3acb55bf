"""Runs a pool of envs to the end of their episodes with one batched actor call per step."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from softqmix.data.buffer import EpisodeBatch
from softqmix.envs.base import EnvInfo, MultiAgentEnv, Observation, Observations
from softqmix.envs.pool import EnvPool
from softqmix.errors import EnvContractError

log = logging.getLogger(__name__)


class Actor(Protocol):
    """Anything that maps a batch of per-env observations to per-agent actions."""

    def initial_hidden(self, n_envs: int) -> torch.Tensor: ...

    def act(
        self,
        obs: torch.Tensor,
        state: torch.Tensor,
        avail: torch.Tensor,
        last_actions: torch.Tensor,
        hidden: torch.Tensor,
        explore: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class CollectStats:
    """Per-episode outcomes of one collection call (kept episodes only)."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    battle_won: list[float] = field(default_factory=list)
    discarded: int = 0  # episodes lost to a dead env worker

    @property
    def env_steps(self) -> int:
        return int(sum(self.lengths))


@dataclass
class _Round:
    """One collection call in progress: its episode batch, numpy views of the batch's tensors, the actor's
    recurrent state and each env's counters. Steps are written through the numpy views: a numpy element write
    costs a tenth of a torch one, and collection writes once per env step."""

    batch: EpisodeBatch
    obs: np.ndarray
    state: np.ndarray
    avail: np.ndarray
    actions: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    filled: np.ndarray
    hidden: torch.Tensor
    last_actions: torch.Tensor
    active: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray
    won: np.ndarray

    @classmethod
    def start(cls, info: EnvInfo, n_envs: int, actor: Actor) -> _Round:
        batch = EpisodeBatch.zeros(n_envs, info)
        views = {name: getattr(batch, name).numpy() for name in ("obs", "state", "avail", "actions", "reward")}
        return cls(
            batch=batch,
            **views,
            terminated=batch.terminated.numpy(),
            filled=batch.filled.numpy(),
            hidden=actor.initial_hidden(n_envs),
            last_actions=torch.full((n_envs, info.n_agents), -1, dtype=torch.long),
            active=np.ones(n_envs, dtype=bool),
            returns=np.zeros(n_envs),
            lengths=np.zeros(n_envs, dtype=np.int64),
            won=np.zeros(n_envs),
        )

    def act(self, t: int, actor: Actor, explore: bool) -> np.ndarray:
        """Every env's joint action at step t from the observations written there; recorded in the batch."""
        obs, state, avail = self.batch.obs[:, t], self.batch.state[:, t], self.batch.avail[:, t]
        actions, self.hidden = actor.act(obs, state, avail, self.last_actions, self.hidden, explore)
        self.last_actions = actions.cpu()
        step_actions = self.last_actions.numpy()
        self.actions[:, t] = step_actions
        return step_actions

    def record(self, env: Any, t: int, reward: Any, terminated: Any) -> None:
        """Step t of the envs `env` (an index or an index array) happened, with this reward and termination."""
        self.reward[env, t] = reward
        self.terminated[env, t] = terminated
        self.filled[env, t] = 1.0
        self.returns[env] += reward
        self.lengths[env] += 1

    def finish(self, env: Any, t: int, won: Any, obs: Any, state: Any, avail: Any) -> None:
        """The episodes of `env` ended at step t; the observation after the last step is kept, since a truncated
        episode bootstraps from it."""
        self.active[env] = False
        self.won[env] = won
        self.obs[env, t + 1], self.state[env, t + 1], self.avail[env, t + 1] = obs, state, avail

    def stats(self, keep: np.ndarray, discarded: int = 0) -> CollectStats:
        return CollectStats(
            returns=self.returns[keep].tolist(),
            lengths=self.lengths[keep].tolist(),
            battle_won=self.won[keep].tolist(),
            discarded=discarded,
        )


class EpisodeCollector:
    """Steps every env of the pool in lockstep until each has finished one episode.

    Like pymarl's parallel runner, a call yields one whole episode per env, ready for the
    replay buffer; the actor runs once per step for all envs and agents together.
    """

    def __init__(self, pool: EnvPool | list[MultiAgentEnv], seed: int, name: str = "env") -> None:
        if isinstance(pool, list):
            pool = EnvPool.from_envs(pool, name=name)
        self.pool, self.name = pool, name
        self.info: EnvInfo = pool.info
        self._seeds: list[int | None] = [seed + i for i in range(pool.n_envs)]

    @property
    def envs(self) -> list[MultiAgentEnv]:
        return self.pool.envs

    @property
    def n_envs(self) -> int:
        return self.pool.n_envs

    def _reset_all(self) -> list[Observation]:
        out = self.pool.reset(self._seeds)
        self._seeds = [None] * self.pool.n_envs  # seed once; later resets continue each env's RNG stream
        return [self._checked(o, i, 0) for i, o in enumerate(out)]

    def _checked(self, o: Observation, env_index: int, t: int) -> Observation:
        """Enforce the MultiAgentEnv contract at the boundary, where the culprit is still known."""
        self._check_shapes(o, (), f"(copy {env_index}) ", t)
        legal = np.asarray(o.avail).sum(-1) > 0
        if not legal.all():
            raise self._no_legal_action(env_index, int(np.flatnonzero(~legal)[0]), t)
        return o

    def _checked_all(self, o: Observations, rows: np.ndarray, t: int) -> None:
        """`_checked` for the `rows` of a vector's observations, with array ops."""
        self._check_shapes(o, (self.pool.n_envs,), "", t)
        illegal = o.avail[rows].sum(-1) <= 0  # [len(rows), n_agents]
        if illegal.any():
            row, agent = np.argwhere(illegal)[0]
            raise self._no_legal_action(int(rows[row]), int(agent), t)

    def _check_shapes(self, o: Observation | Observations, lead: tuple[int, ...], copy: str, t: int) -> None:
        info = self.info
        expected = {
            "obs": (*lead, info.n_agents, info.obs_dim),
            "state": (*lead, info.state_dim),
            "avail": (*lead, info.n_agents, info.n_actions),
        }
        for field_name, shape in expected.items():
            got = np.shape(getattr(o, field_name))
            if got != shape:
                raise EnvContractError(
                    f"env '{self.name}' {copy}returned {field_name} of shape {got} at step {t}, "
                    f"expected {shape} from its info()"
                )

    def _no_legal_action(self, env_index: int, agent: int, t: int) -> EnvContractError:
        return EnvContractError(
            f"env '{self.name}' (copy {env_index}) gave agent {agent} no legal action at step {t}; "
            "a living agent needs at least one available action (dead agents: only no-op)"
        )

    @torch.no_grad()
    def collect(self, actor: Actor, explore: bool) -> tuple[EpisodeBatch, CollectStats]:
        if self.pool.steps_arrays:
            return self._collect_arrays(actor, explore)
        info, n_envs = self.info, self.pool.n_envs
        run = _Round.start(info, n_envs, actor)
        current = self._reset_all()
        lost = np.zeros(n_envs, dtype=bool)
        for t in range(info.episode_limit):
            run.obs[:, t] = np.stack([o.obs for o in current])
            run.state[:, t] = np.stack([o.state for o in current])
            run.avail[:, t] = np.stack([o.avail for o in current])
            step_actions = run.act(t, actor, explore)
            indices = np.flatnonzero(run.active).tolist()
            results = self.pool.step(indices, step_actions[indices])
            for i, result in zip(indices, results, strict=True):
                if result is None:  # the env's worker died: drop this episode
                    run.active[i], lost[i] = False, True
                    continue
                run.record(i, t, result.reward, result.terminated)
                current[i] = self._checked(result.next, i, t + 1)
                if result.terminated or result.truncated or t + 1 == info.episode_limit:
                    nxt = result.next
                    run.finish(i, t, float(result.info.get("battle_won", 0.0)), nxt.obs, nxt.state, nxt.avail)
            if not run.active.any():
                break
        keep = np.flatnonzero(~lost)
        batch = run.batch
        if lost.any():
            log.warning("env '%s': discarded %d episode(s) lost to dead workers", self.name, int(lost.sum()))
            batch = batch.select(torch.as_tensor(keep))
        return batch, run.stats(keep, discarded=int(lost.sum()))

    def _collect_arrays(self, actor: Actor, explore: bool) -> tuple[EpisodeBatch, CollectStats]:
        """`collect` for a vector env with the array interface: the same episodes (the same actor calls, the same
        batch, finished envs holding their last observation) written with one array op per field and step
        instead of a Python loop over envs (tests/test_smax.py checks the two agree)."""
        info, n_envs = self.info, self.pool.n_envs
        run = _Round.start(info, n_envs, actor)
        first = self.pool.reset_all(self._seeds)
        self._seeds = [None] * n_envs
        self._checked_all(first, np.arange(n_envs), 0)
        # what each env shows now: a finished env keeps its last observation, as `collect` writes it
        current = Observations(np.array(first.obs), np.array(first.state), np.array(first.avail))
        for t in range(info.episode_limit):
            run.obs[:, t], run.state[:, t], run.avail[:, t] = current.obs, current.state, current.avail
            step = self.pool.step_all(run.act(t, actor, explore), run.active)
            rows = np.flatnonzero(run.active)
            run.record(rows, t, step.reward[rows], step.terminated[rows])
            self._checked_all(step.next, rows, t + 1)
            for name in ("obs", "state", "avail"):
                getattr(current, name)[rows] = getattr(step.next, name)[rows]
            ended = rows[step.terminated[rows] | step.truncated[rows] | (t + 1 == info.episode_limit)]
            run.finish(ended, t, step.battle_won[ended], current.obs[ended], current.state[ended], current.avail[ended])
            if not run.active.any():
                break
        return run.batch, run.stats(np.arange(n_envs))

    def state_dict(self) -> dict[str, object]:
        """Which envs still await their first (seeded) reset, and each env's own RNG if it exposes one."""
        return {"seeds": list(self._seeds), "env_rng": self.pool.rng_states()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self._seeds = list(state["seeds"])  # type: ignore[call-overload]
        self.pool.set_rng_states(state["env_rng"])  # type: ignore[arg-type]

    def close(self) -> None:
        self.pool.close()
