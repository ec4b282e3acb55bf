"""SMACv2 through the real `smacv2.env.StarCraftCapabilityEnvWrapper` (paper §5.3, ALGORITHM.md §7).

What the adapter takes care of, from ../shared/SMACV2_API.md:
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
from typing import Any

import numpy as np

from softqmix.envs.base import EnvInfo, Observation, StepResult
from softqmix.errors import ConfigError, EnvContractError

INSTALL_HINT = (
    "env family 'smacv2' needs the smacv2 package and StarCraft II 4.10: "
    "pip install git+https://github.com/oxwhirl/smacv2.git, install StarCraft II 4.10 with the SMAC maps "
    "(32x32_flat.SC2Map under $SC2PATH/Maps/SMAC_Maps) and export SC2PATH=<its directory>; see docs/smacv2.md"
)


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
