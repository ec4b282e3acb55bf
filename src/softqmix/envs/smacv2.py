"""SMACv2 through the real `smacv2.env.StarCraftCapabilityEnvWrapper` (the paper's §5.3; docs/smacv2.md).

What the adapter takes care of, following smacv2's documented interface:
- the wrapper changes `capability_config` in place, so each env gets its own deep copy;
- obs, state and action masks are read with get_obs()/get_state()/get_avail_actions(), because
  the wrapper's reset() can return None after it retried a failed reset;
- `battle_won` is read with a default (after a protocol error the info dict is empty);
- an episode that ends at the 200-step limit is a termination by default, as in the paper's
  pymarl code (continuing_episode=False: the info has no `episode_limit` key, so no bootstrap);
  `time_limit_is_termination=false` reports it as truncation instead;
- StarCraft II is a child process of the wrapper: close() kills it, and the training loop closes
  every env on exit, on errors and on Ctrl-C/SIGTERM.

smacv2 seeds only the SC2 game (`seed`); its team and start-position generators draw from an
unseeded numpy generator, so SMACv2 episodes are not reproducible from the run seed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from omegaconf import MISSING

from softqmix.envs.base import EnvConfig, EnvInfo, Observation, StepResult
from softqmix.envs.registry import EnvFamily, register_env_family
from softqmix.errors import ConfigError, EnvContractError

INSTALL_HINT = (
    "env family 'smacv2' needs the smacv2 package and StarCraft II 4.10: "
    "pip install git+https://github.com/oxwhirl/smacv2.git, install StarCraft II 4.10 with the SMAC maps "
    "(32x32_flat.SC2Map under $SC2PATH/Maps/SMAC_Maps) and export SC2PATH=<its directory>; see docs/smacv2.md"
)


@dataclass
class SMACv2TeamGenConfig:
    """How smacv2 draws each episode's unit types (the enemy team copies the ally team)."""

    dist_type: str = "weighted_teams"
    unit_types: list[str] = MISSING
    weights: list[float] = MISSING
    exception_unit_types: list[str] = field(default_factory=list)  # types that may not make up a whole team
    observe: bool = True  # unit types are part of obs and state


@dataclass
class SMACv2StartPositionsConfig:
    dist_type: str = "surrounded_and_reflect"
    p: float = 0.5  # probability of the surrounded layout
    map_x: int = 32
    map_y: int = 32


@dataclass
class SMACv2CapabilityConfig:
    n_units: int = 5
    n_enemies: int = 5
    team_gen: SMACv2TeamGenConfig = field(default_factory=SMACv2TeamGenConfig)
    start_positions: SMACv2StartPositionsConfig = field(default_factory=SMACv2StartPositionsConfig)


@dataclass
class SMACv2Args:
    """StarCraft2Env's keyword arguments, passed to smacv2's wrapper unchanged (docs/smacv2.md)."""

    map_name: str = MISSING  # 10gen_protoss | 10gen_terran | 10gen_zerg
    capability_config: SMACv2CapabilityConfig = field(default_factory=SMACv2CapabilityConfig)
    step_mul: int = 8
    move_amount: int = 2
    difficulty: str = "7"
    game_version: str | None = None
    seed: int | None = None  # the SC2 game seed only
    continuing_episode: bool = False
    obs_all_health: bool = True
    obs_own_health: bool = True
    obs_last_action: bool = False  # SC2's own obs flag; the agent input is env.obs_last_action
    obs_pathing_grid: bool = False
    obs_terrain_height: bool = False
    obs_timestep_number: bool = False
    obs_instead_of_state: bool = False
    obs_own_pos: bool = True
    state_last_action: bool = True
    state_timestep_number: bool = False
    reward_sparse: bool = False
    reward_only_positive: bool = True
    reward_death_value: float = 10.0
    reward_win: float = 200.0
    reward_defeat: float = 0.0
    reward_negative_scale: float = 0.5
    reward_scale: bool = True
    reward_scale_rate: float = 20.0
    conic_fov: bool = False
    num_fov_actions: int = 12
    use_unit_ranges: bool = True
    min_attack_range: int = 2
    fully_observable: bool = False
    heuristic_ai: bool = False
    debug: bool = False
    prob_obs_enemy: float = 1.0
    action_mask: bool = True
    replay_dir: str = ""


@dataclass
class SMACv2EnvConfig(EnvConfig):
    """smacv2's StarCraftCapabilityEnvWrapper; needs StarCraft II 4.10 (docs/smacv2.md)."""

    family: str = "smacv2"
    env_args: SMACv2Args = field(default_factory=SMACv2Args)
    episode_limit: int = 200  # the 10gen maps' limit; checked against the env at start-up
    time_limit_is_termination: bool = True  # as the paper's code (no bootstrap at the limit)
    obs_last_action: bool = True  # pymarl's agent input for SMAC


def require_smacv2() -> type:
    """The wrapper class, or the one error message that says how to install everything it needs."""
    try:
        from smacv2.env import StarCraftCapabilityEnvWrapper
    except ImportError as exc:
        raise ConfigError(INSTALL_HINT) from exc
    return StarCraftCapabilityEnvWrapper


def _drop_empty(config: dict[str, Any]) -> dict[str, Any]:
    """Leave out empty optional lists (protoss has no exception_unit_types), as the official configs do."""
    return {k: (_drop_empty(v) if isinstance(v, dict) else v) for k, v in config.items() if v != []}


class SMACv2Env:
    """One SMACv2 scenario; `env_args` are StarCraft2Env's keyword arguments, passed through unchanged."""

    def __init__(
        self, env_args: dict[str, Any], episode_limit: int = 200, time_limit_is_termination: bool = True
    ) -> None:
        wrapper_cls = require_smacv2()
        self._env = wrapper_cls(**_drop_empty(copy.deepcopy(dict(env_args))))
        raw = self._env.get_env_info()
        self._info = EnvInfo(
            n_agents=int(raw["n_agents"]),
            n_actions=int(raw["n_actions"]),
            obs_dim=int(raw["obs_shape"]),
            state_dim=int(raw["state_shape"]),
            episode_limit=int(raw["episode_limit"]),
            reports_wins=True,
        )
        if self._info.episode_limit != episode_limit:
            raise EnvContractError(
                f"smacv2 map {env_args.get('map_name')} has episode limit {self._info.episode_limit}, "
                f"the config says env.episode_limit={episode_limit}; make them agree"
            )
        self.time_limit_is_termination = time_limit_is_termination
        self._t = 0

    def info(self) -> EnvInfo:
        return self._info

    def _observation(self) -> Observation:
        return Observation(
            obs=np.asarray(self._env.get_obs(), dtype=np.float32),
            state=np.asarray(self._env.get_state(), dtype=np.float32),
            avail=np.asarray(self._env.get_avail_actions(), dtype=np.float32),
        )

    def reset(self, seed: int | None = None) -> Observation:
        # `seed` is not used: smacv2 takes its game seed only in the constructor (see module doc).
        self._env.reset()  # may return None (wrapper bug); read everything back below
        self._t = 0
        return self._observation()

    def step(self, actions: np.ndarray) -> StepResult:
        flat = [int(a) for a in np.asarray(actions).reshape(-1)]
        reward, terminated, info = self._env.step(flat)
        self._t += 1
        won = bool(info.get("battle_won", False))
        # SMAC ends a timed-out episode with terminated=True and no other sign; pymarl only sees an
        # `episode_limit` key with continuing_episode=True.
        wiped_out = info.get("dead_allies", 0) >= self._info.n_agents
        timed_out = bool(terminated) and self._t >= self._info.episode_limit and not won and not wiped_out
        timed_out = timed_out or bool(info.get("episode_limit", False))
        truncated = timed_out and not self.time_limit_is_termination
        stats = {"battle_won": float(won), "timeout": float(timed_out)}
        for key in ("dead_allies", "dead_enemies"):
            if key in info:
                stats[key] = float(info[key])
        return StepResult(
            reward=float(reward),
            terminated=bool(terminated) and not truncated,
            truncated=truncated,
            next=self._observation(),
            info=stats,
        )

    def get_stats(self) -> dict[str, Any]:
        """smacv2's own counters; empty before the first finished episode (smacv2 divides by zero then)."""
        try:
            return dict(self._env.get_stats())
        except ZeroDivisionError:
            return {}

    def close(self) -> None:
        self._env.close()


register_env_family(EnvFamily(name="smacv2", schema=SMACv2EnvConfig, build=SMACv2Env, requirement=require_smacv2))
