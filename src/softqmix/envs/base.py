"""The only view of an environment the rest of the platform has (docs/architecture.md, "Contracts")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from omegaconf import MISSING


@dataclass
class EnvConfig:
    """Fields every env family has. A family's schema extends it with exactly the keyword arguments of
    its env class, which the registry passes through unchanged (softqmix.envs.registry)."""

    family: str = MISSING  # a name in the env registry: matrix, mpe, smacv2, smax, ...
    name: str = MISSING  # the scenario, e.g. spread_hard; names runs and result rows
    obs_last_action: bool = True  # append the previous action (one-hot) to the agent input


# EnvConfig's own fields: they describe the run, and are not passed to the env class.
ENV_CONFIG_FIELDS = ("family", "name", "obs_last_action")


@dataclass(frozen=True)
class EnvInfo:
    """Sizes the learner is built from."""

    n_agents: int
    n_actions: int
    obs_dim: int
    state_dim: int
    episode_limit: int
    reports_wins: bool = False  # True where `battle_won` means something (SMACv2, SMAX), for win-rate tables


@dataclass
class Observation:
    """What the agents and the centralised critic see at one step."""

    obs: np.ndarray  # [n_agents, obs_dim]
    state: np.ndarray  # [state_dim]
    avail: np.ndarray  # [n_agents, n_actions], 1 = legal


@dataclass
class StepResult:
    """One transition. `truncated` (time limit) is not `terminated`: targets bootstrap through it."""

    reward: float
    terminated: bool
    truncated: bool
    next: Observation
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Observations:
    """The observations of every env of a vector, stacked over a leading env axis."""

    obs: np.ndarray  # [n_envs, n_agents, obs_dim]
    state: np.ndarray  # [n_envs, state_dim]
    avail: np.ndarray  # [n_envs, n_agents, n_actions]


@dataclass
class VectorStep:
    """One step of every env of a vector, as arrays over envs ([n_envs]); an env that was not active in the step
    has entries that mean nothing."""

    reward: np.ndarray
    terminated: np.ndarray  # bool
    truncated: np.ndarray  # bool
    battle_won: np.ndarray  # 1.0 where the step ended the battle with a win
    next: Observations


@runtime_checkable
class VectorEnv(Protocol):
    """Many envs of one config stepped in one call, with arrays in and out: no per-env Python objects per step,
    which on SMAX cost the collector more than the env step itself (benchmarks/collection.py)."""

    n_envs: int

    def info(self) -> EnvInfo: ...

    def reset_all(self, seeds: list[int | None]) -> Observations: ...

    def step_all(self, actions: np.ndarray, active: np.ndarray) -> VectorStep: ...


@runtime_checkable
class MultiAgentEnv(Protocol):
    """A cooperative multi-agent env with a shared team reward."""

    def info(self) -> EnvInfo: ...

    def reset(self, seed: int | None = None) -> Observation: ...

    def step(self, actions: np.ndarray) -> StepResult: ...

    def close(self) -> None: ...
