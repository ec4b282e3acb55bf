"""Build an env from its config; each env family registers a constructor here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from omegaconf import DictConfig, OmegaConf

from softqmix.envs.base import MultiAgentEnv
from softqmix.errors import ConfigError


def _make_matrix(cfg: Mapping[str, Any]) -> MultiAgentEnv:
    from softqmix.envs.matrix import MatrixGameEnv

    return MatrixGameEnv(payoff=[list(row) for row in cfg["payoff"]])


def _make_mpe(cfg: Mapping[str, Any], render_mode: str | None = None) -> MultiAgentEnv:
    from softqmix.envs.mpe import MPESpreadEnv

    return MPESpreadEnv(
        n_agents=cfg["n_agents"],
        scale=cfg["scale"],
        landmark_scale=cfg["landmark_scale"],
        episode_limit=cfg["episode_limit"],
        reward=cfg["reward"],
        local_ratio=cfg["local_ratio"],
        time_limit_is_termination=cfg["time_limit_is_termination"],
        render_mode=render_mode,
    )


def _make_smacv2(cfg: Mapping[str, Any]) -> MultiAgentEnv:
    from softqmix.envs.smacv2 import SMACv2Env

    return SMACv2Env(
        env_args=dict(cfg["env_args"]),
        episode_limit=cfg["episode_limit"],
        time_limit_is_termination=cfg["time_limit_is_termination"],
    )


def _make_smax(cfg: Mapping[str, Any]) -> MultiAgentEnv:
    from softqmix.envs.smax import SMAXEnv

    return SMAXEnv(
        scenario=cfg["scenario"],
        unit_types=list(cfg["unit_types"]),
        unit_type_weights=list(cfg["unit_type_weights"]),
        max_steps=cfg["episode_limit"],
        time_limit_is_termination=cfg["time_limit_is_termination"],
        enemy_shoots=cfg["enemy_shoots"],
        attack_mode=cfg["attack_mode"],
        won_battle_bonus=cfg["won_battle_bonus"],
        walls_cause_death=cfg["walls_cause_death"],
        world_steps_per_env_step=cfg["world_steps_per_env_step"],
    )


def _require_jaxmarl() -> None:
    from softqmix.envs.smax import require_jaxmarl

    require_jaxmarl()


def _require_smacv2() -> None:
    from softqmix.envs.smacv2 import require_smacv2

    require_smacv2()


ENV_FAMILIES: dict[str, Callable[..., MultiAgentEnv]] = {
    "matrix": _make_matrix,
    "mpe": _make_mpe,
    "smacv2": _make_smacv2,
    "smax": _make_smax,
}
# Optional packages a family needs, checked before any env or worker process starts.
ENV_REQUIREMENTS: dict[str, Callable[[], None]] = {"smacv2": _require_smacv2, "smax": _require_jaxmarl}


def check_env_requirements(cfg: Mapping[str, Any]) -> None:
    """Fail at start-up, with install instructions, when the family's optional package is missing."""
    requirement = ENV_REQUIREMENTS.get(str(cfg["family"]))
    if requirement is not None:
        requirement()


def make_env(cfg: Mapping[str, Any], **kwargs: Any) -> MultiAgentEnv:
    """Instantiate the env described by `cfg["family"]` and the family's fields."""
    family = str(cfg["family"])
    if family not in ENV_FAMILIES:
        raise ConfigError(f"unknown env family '{family}'; valid families: {sorted(ENV_FAMILIES)}")
    return ENV_FAMILIES[family](cfg, **kwargs)


def env_factory(cfg: Mapping[str, Any] | DictConfig) -> Callable[[], MultiAgentEnv]:
    """A picklable zero-argument constructor (worker processes build their env with it)."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    return partial(make_env, plain)
