"""Runs a pool of envs to the end of their episodes with one batched actor call per step."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

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
        info = self.info
        expected = {
            "obs": (info.n_agents, info.obs_dim),
            "state": (info.state_dim,),
            "avail": (info.n_agents, info.n_actions),
        }
        for field_name, shape in expected.items():
            got = np.shape(getattr(o, field_name))
            if got != shape:
                raise EnvContractError(
                    f"env '{self.name}' (copy {env_index}) returned {field_name} of shape {got} at step {t}, "
                    f"expected {shape} from its info()"
                )
        legal = np.asarray(o.avail).sum(-1) > 0
        if not legal.all():
            agent = int(np.flatnonzero(~legal)[0])
            raise EnvContractError(
                f"env '{self.name}' (copy {env_index}) gave agent {agent} no legal action at step {t}; "
                "a living agent needs at least one available action (dead agents: only no-op)"
            )
        return o

    def _checked_all(self, o: Observations, rows: np.ndarray, t: int) -> None:
        """`_checked` for the `rows` of a vector's observations, with array ops."""
        info, n_envs = self.info, self.pool.n_envs
        expected = {
            "obs": (n_envs, info.n_agents, info.obs_dim),
            "state": (n_envs, info.state_dim),
            "avail": (n_envs, info.n_agents, info.n_actions),
        }
        for field_name, shape in expected.items():
            got = np.shape(getattr(o, field_name))
            if got != shape:
                raise EnvContractError(
                    f"env '{self.name}' returned {field_name} of shape {got} for its {n_envs} copies at step {t}, "
                    f"expected {shape} from its info()"
                )
        illegal = o.avail[rows].sum(-1) <= 0  # [len(rows), n_agents]
        if illegal.any():
            row, agent = np.argwhere(illegal)[0]
            raise EnvContractError(
                f"env '{self.name}' (copy {int(rows[row])}) gave agent {int(agent)} no legal action at step {t}; "
                "a living agent needs at least one available action (dead agents: only no-op)"
            )

    @torch.no_grad()
    def collect(self, actor: Actor, explore: bool) -> tuple[EpisodeBatch, CollectStats]:
        if self.pool.steps_arrays:
            return self._collect_arrays(actor, explore)
        info, n_envs = self.info, self.pool.n_envs
        batch = EpisodeBatch.zeros(n_envs, info)
        current = self._reset_all()
        active = np.ones(n_envs, dtype=bool)
        lost = np.zeros(n_envs, dtype=bool)
        returns = np.zeros(n_envs)
        lengths = np.zeros(n_envs, dtype=np.int64)
        won = np.zeros(n_envs)
        hidden = actor.initial_hidden(n_envs)
        last_actions = torch.full((n_envs, info.n_agents), -1, dtype=torch.long)

        # Steps are written through numpy views of the batch's tensors: a numpy element write costs a
        # tenth of a torch one, and this loop runs once per env step.
        obs_np, state_np, avail_np = batch.obs.numpy(), batch.state.numpy(), batch.avail.numpy()
        actions_np, reward_np = batch.actions.numpy(), batch.reward.numpy()
        terminated_np, filled_np = batch.terminated.numpy(), batch.filled.numpy()
        for t in range(info.episode_limit):
            obs_np[:, t] = np.stack([o.obs for o in current])
            state_np[:, t] = np.stack([o.state for o in current])
            avail_np[:, t] = np.stack([o.avail for o in current])
            obs, state, avail = batch.obs[:, t], batch.state[:, t], batch.avail[:, t]
            actions, hidden = actor.act(obs, state, avail, last_actions, hidden, explore)
            actions = actions.cpu()
            step_actions = actions.numpy()
            actions_np[:, t] = step_actions
            indices = np.flatnonzero(active).tolist()
            results = self.pool.step(indices, step_actions[indices])
            for i, result in zip(indices, results, strict=True):
                if result is None:  # the env's worker died: drop this episode
                    active[i], lost[i] = False, True
                    continue
                reward_np[i, t] = result.reward
                terminated_np[i, t] = float(result.terminated)
                filled_np[i, t] = 1.0
                returns[i] += result.reward
                lengths[i] += 1
                current[i] = self._checked(result.next, i, t + 1)
                if result.terminated or result.truncated or t + 1 == info.episode_limit:
                    active[i] = False
                    won[i] = float(result.info.get("battle_won", 0.0))
                    # the obs after the last step is kept: a truncated episode bootstraps from it
                    obs_np[i, t + 1] = result.next.obs
                    state_np[i, t + 1] = result.next.state
                    avail_np[i, t + 1] = result.next.avail
            last_actions = actions
            if not active.any():
                break
        keep = np.flatnonzero(~lost)
        if lost.any():
            log.warning("env '%s': discarded %d episode(s) lost to dead workers", self.name, int(lost.sum()))
            batch = batch.select(torch.as_tensor(keep))
        stats = CollectStats(
            returns=returns[keep].tolist(),
            lengths=lengths[keep].tolist(),
            battle_won=won[keep].tolist(),
            discarded=int(lost.sum()),
        )
        return batch, stats

    def _collect_arrays(self, actor: Actor, explore: bool) -> tuple[EpisodeBatch, CollectStats]:
        """`collect` for a vector env with the array interface: the same episodes (the same actor calls, the same
        batch, finished envs holding their last observation) written with one array op per field and step
        instead of a Python loop over envs (tests/test_collector.py checks the two agree)."""
        info, n_envs = self.info, self.pool.n_envs
        batch = EpisodeBatch.zeros(n_envs, info)
        first = self.pool.reset_all(self._seeds)
        self._seeds = [None] * n_envs
        everyone = np.arange(n_envs)
        self._checked_all(first, everyone, 0)
        # what each env shows now: a finished env keeps its last observation, as `collect` writes it
        current = Observations(np.array(first.obs), np.array(first.state), np.array(first.avail))
        active = np.ones(n_envs, dtype=bool)
        returns = np.zeros(n_envs)
        lengths = np.zeros(n_envs, dtype=np.int64)
        won = np.zeros(n_envs)
        hidden = actor.initial_hidden(n_envs)
        last_actions = torch.full((n_envs, info.n_agents), -1, dtype=torch.long)

        obs_np, state_np, avail_np = batch.obs.numpy(), batch.state.numpy(), batch.avail.numpy()
        actions_np, reward_np = batch.actions.numpy(), batch.reward.numpy()
        terminated_np, filled_np = batch.terminated.numpy(), batch.filled.numpy()
        for t in range(info.episode_limit):
            obs_np[:, t], state_np[:, t], avail_np[:, t] = current.obs, current.state, current.avail
            obs, state, avail = batch.obs[:, t], batch.state[:, t], batch.avail[:, t]
            actions, hidden = actor.act(obs, state, avail, last_actions, hidden, explore)
            actions = actions.cpu()
            step_actions = actions.numpy()
            actions_np[:, t] = step_actions
            step = self.pool.step_all(step_actions, active)
            rows = np.flatnonzero(active)
            reward = step.reward[rows]
            reward_np[rows, t] = reward
            terminated_np[rows, t] = step.terminated[rows]
            filled_np[rows, t] = 1.0
            returns[rows] += reward
            lengths[rows] += 1
            self._checked_all(step.next, rows, t + 1)
            for name in ("obs", "state", "avail"):
                getattr(current, name)[rows] = getattr(step.next, name)[rows]
            ended = rows[step.terminated[rows] | step.truncated[rows] | (t + 1 == info.episode_limit)]
            active[ended] = False
            won[ended] = step.battle_won[ended]
            # the obs after the last step is kept: a truncated episode bootstraps from it
            obs_np[ended, t + 1], state_np[ended, t + 1] = current.obs[ended], current.state[ended]
            avail_np[ended, t + 1] = current.avail[ended]
            last_actions = actions
            if not active.any():
                break
        stats = CollectStats(returns=returns.tolist(), lengths=lengths.tolist(), battle_won=won.tolist())
        return batch, stats

    def state_dict(self) -> dict[str, object]:
        """Which envs still await their first (seeded) reset, and each env's own RNG if it exposes one."""
        return {"seeds": list(self._seeds), "env_rng": self.pool.rng_states()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self._seeds = list(state["seeds"])  # type: ignore[call-overload]
        self.pool.set_rng_states(state["env_rng"])  # type: ignore[arg-type]

    def close(self) -> None:
        self.pool.close()
