"""One-step cooperative matrix games (the paper's §5.1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from softqmix.envs.base import EnvConfig, EnvInfo, Observation, StepResult
from softqmix.envs.registry import EnvFamily, register_env_family
from softqmix.errors import ConfigError


@dataclass
class MatrixEnvConfig(EnvConfig):
    """A one-step cooperative game of two agents with an n x n payoff table (default: the paper's Table 1)."""

    family: str = "matrix"
    # list[Any] so that `env.payoff=[[1,0],[0,2]]` (ints) is accepted; MatrixGameEnv checks it is square and numeric
    payoff: list[Any] = field(default_factory=lambda: [[8.0, -12.0, -12.0], [-12.0, 0.0, 0.0], [-12.0, 0.0, 0.0]])
    action_names: list[str] | None = None  # row/column labels of the printed Q_tot table
    obs_last_action: bool = False


class MatrixGameEnv:
    """Two agents pick an action each and both receive payoff[a_1][a_2]; the episode then ends.

    Observation and state are one-hot(step) in R^2, the same for both agents, as in the
    pymarl one-step matrix game, so the learner sees exactly the inputs the paper's code saw.
    """

    n_agents = 2

    def __init__(self, payoff: list[list[float]], action_names: list[str] | None = None) -> None:
        try:
            table = np.asarray(payoff, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"env.payoff must be a square table of numbers, got {payoff!r}") from exc
        if not np.isfinite(table).all():
            raise ConfigError(f"env.payoff must hold finite numbers, got {payoff!r}")
        if table.ndim != 2 or table.shape[0] != table.shape[1] or table.shape[0] < 2:
            raise ConfigError(
                f"env.payoff must be a square n x n table with n >= 2, got shape {table.shape}; "
                "e.g. env.payoff='[[8,-12],[-12,0]]'"
            )
        self.payoff = table
        self.n_actions = table.shape[0]
        if action_names is not None and len(action_names) != self.n_actions:
            raise ConfigError(f"env.action_names needs one name per action ({self.n_actions}), got {action_names}")
        self.action_names = list(action_names) if action_names is not None else None
        self._t = 0

    def info(self) -> EnvInfo:
        return EnvInfo(n_agents=self.n_agents, n_actions=self.n_actions, obs_dim=2, state_dim=2, episode_limit=1)

    def _observation(self) -> Observation:
        onehot = np.zeros(2, dtype=np.float32)
        onehot[min(self._t, 1)] = 1.0
        return Observation(
            obs=np.tile(onehot, (self.n_agents, 1)),
            state=onehot.copy(),
            avail=np.ones((self.n_agents, self.n_actions), dtype=np.float32),
        )

    def reset(self, seed: int | None = None) -> Observation:
        self._t = 0
        return self._observation()

    def step(self, actions: np.ndarray) -> StepResult:
        a = np.asarray(actions).reshape(-1)
        if a.shape != (self.n_agents,) or not all(0 <= int(x) < self.n_actions for x in a):
            raise ValueError(f"matrix game expects {self.n_agents} actions in [0, {self.n_actions}), got {a}")
        reward = float(self.payoff[int(a[0]), int(a[1])])
        self._t += 1
        return StepResult(reward=reward, terminated=True, truncated=False, next=self._observation())

    def close(self) -> None:
        pass


register_env_family(EnvFamily(name="matrix", schema=MatrixEnvConfig, build=MatrixGameEnv))
