"""Runs a group of envs to the end of their episodes with one batched actor call per step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from softqmix.data.buffer import EpisodeBatch
from softqmix.envs.base import EnvInfo, MultiAgentEnv, Observation
from softqmix.errors import EnvContractError


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
    """Per-episode outcomes of one collection call."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    battle_won: list[float] = field(default_factory=list)

    @property
    def env_steps(self) -> int:
        return int(sum(self.lengths))


class EpisodeCollector:
    """Steps `len(envs)` envs in lockstep until every episode has ended.

    Each env runs exactly one episode per call, like pymarl's parallel runner, so a
    call yields `len(envs)` whole episodes ready for the replay buffer.
    """

    def __init__(self, envs: list[MultiAgentEnv], seed: int, name: str = "env") -> None:
        if not envs:
            raise ValueError("the collector needs at least one env (batch_size_run >= 1)")
        self.envs, self.name = envs, name
        self.info: EnvInfo = envs[0].info()
        self._seeds: list[int | None] = [seed + i for i in range(len(envs))]

    def _reset_all(self) -> list[Observation]:
        out = []
        for i, env in enumerate(self.envs):
            out.append(self._checked(env.reset(seed=self._seeds[i]), i, 0))
            self._seeds[i] = None  # seed once; later resets continue the env's own RNG stream
        return out

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

    @torch.no_grad()
    def collect(self, actor: Actor, explore: bool) -> tuple[EpisodeBatch, CollectStats]:
        info, n_envs = self.info, len(self.envs)
        batch = EpisodeBatch.zeros(n_envs, info)
        current = self._reset_all()
        active = np.ones(n_envs, dtype=bool)
        returns = np.zeros(n_envs)
        lengths = np.zeros(n_envs, dtype=np.int64)
        won = np.zeros(n_envs)
        hidden = actor.initial_hidden(n_envs)
        last_actions = torch.full((n_envs, info.n_agents), -1, dtype=torch.long)

        for t in range(info.episode_limit):
            obs = torch.as_tensor(np.stack([o.obs for o in current]), dtype=torch.float32)
            state = torch.as_tensor(np.stack([o.state for o in current]), dtype=torch.float32)
            avail = torch.as_tensor(np.stack([o.avail for o in current]), dtype=torch.float32)
            batch.obs[:, t], batch.state[:, t], batch.avail[:, t] = obs, state, avail
            actions, hidden = actor.act(obs, state, avail, last_actions, hidden, explore)
            actions = actions.cpu()
            for i in np.flatnonzero(active):
                result = self.envs[i].step(actions[i].numpy())
                batch.actions[i, t] = actions[i]
                batch.reward[i, t] = result.reward
                batch.terminated[i, t] = float(result.terminated)
                batch.filled[i, t] = 1.0
                returns[i] += result.reward
                lengths[i] += 1
                current[i] = self._checked(result.next, int(i), t + 1)
                if result.terminated or result.truncated or t + 1 == info.episode_limit:
                    active[i] = False
                    won[i] = float(result.info.get("battle_won", 0.0))
                    # the obs after the last step is kept: a truncated episode bootstraps from it
                    batch.obs[i, t + 1] = torch.as_tensor(result.next.obs)
                    batch.state[i, t + 1] = torch.as_tensor(result.next.state)
                    batch.avail[i, t + 1] = torch.as_tensor(result.next.avail)
            last_actions = actions
            if not active.any():
                break
        stats = CollectStats(returns=returns.tolist(), lengths=lengths.tolist(), battle_won=won.tolist())
        return batch, stats

    def state_dict(self) -> dict[str, object]:
        """Which envs still await their first (seeded) reset, and each env's own RNG if it exposes one."""
        return {
            "seeds": list(self._seeds),
            "env_rng": [env.get_rng_state() if hasattr(env, "get_rng_state") else None for env in self.envs],
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        self._seeds = list(state["seeds"])  # type: ignore[call-overload]
        for env, rng in zip(self.envs, state["env_rng"], strict=True):  # type: ignore[call-overload]
            if rng is not None:
                env.set_rng_state(rng)

    def close(self) -> None:
        for env in self.envs:
            env.close()
