"""Build an env from its config; each family registers a constructor here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from softqmix.envs.base import MultiAgentEnv
from softqmix.envs.matrix import MatrixGameEnv
from softqmix.errors import ConfigError


def _make_matrix(cfg: Any) -> MultiAgentEnv:
    return MatrixGameEnv(payoff=[list(row) for row in cfg.payoff])


ENV_FAMILIES: dict[str, Callable[[Any], MultiAgentEnv]] = {"matrix": _make_matrix}


def make_env(cfg: Any) -> MultiAgentEnv:
    """Instantiate the env described by `cfg.family` and the family's fields."""
    family = str(cfg.family)
    if family not in ENV_FAMILIES:
        raise ConfigError(f"unknown env family '{family}'; valid families: {sorted(ENV_FAMILIES)}")
    return ENV_FAMILIES[family](cfg)
