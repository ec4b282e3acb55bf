"""Env families by `env.family`: the schema of their config and the class that builds an env from it.

Each family's module registers itself with `register_env_family`; its schema's fields beyond
EnvConfig's are exactly the keyword arguments of its env class, so building an env is
`family.build(**fields)` with nothing to keep in step by hand. The registry imports every module
of softqmix.envs the first time a family is looked up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from omegaconf import DictConfig, OmegaConf

from softqmix.envs.base import ENV_CONFIG_FIELDS, EnvConfig, MultiAgentEnv
from softqmix.registry import Registry


@dataclass(frozen=True)
class EnvFamily:
    name: str
    schema: type[EnvConfig]
    build: Callable[..., MultiAgentEnv]  # called with the schema's own fields as keyword arguments
    # Optional: `build_vector(n_envs, **fields)` -> one object stepping n envs in one call (softqmix.envs.pool,
    # VectorEnv); an in-process pool then uses it instead of n separate envs.
    build_vector: Callable[..., Any] | None = None
    # Checks that the family's optional package is installed; raises ConfigError with the install command.
    requirement: Callable[[], object] | None = None
    # False where a forked copy of a process that has used the env hangs (JAX, SMAX's engine, deadlocks in a forked
    # child): a collection process for such a family is spawned, a fresh interpreter, instead of forked.
    fork_safe: bool = True


ENV_FAMILIES: Registry[EnvFamily] = Registry("env family", ("softqmix.envs",), plural="env families")


def register_env_family(family: EnvFamily) -> EnvFamily:
    return ENV_FAMILIES.register(family.name, family)


def env_family(name: str) -> EnvFamily:
    return ENV_FAMILIES.get(name)


def _plain(cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)  # type: ignore[return-value]


def check_env_requirements(cfg: Mapping[str, Any]) -> None:
    """Fail at start-up, with install instructions, when the family's optional package is missing."""
    requirement = env_family(str(cfg["family"])).requirement
    if requirement is not None:
        requirement()


def make_env(cfg: Mapping[str, Any] | DictConfig, **kwargs: Any) -> MultiAgentEnv:
    """Instantiate the env described by `cfg["family"]` from the family's own fields (+ e.g. render_mode)."""
    plain = _plain(cfg)
    family = env_family(str(plain["family"]))
    fields = {k: v for k, v in plain.items() if k not in ENV_CONFIG_FIELDS}
    return family.build(**fields, **kwargs)


def env_factory(cfg: Mapping[str, Any] | DictConfig) -> Callable[[], MultiAgentEnv]:
    """A picklable zero-argument constructor (worker processes build their env with it)."""
    return partial(make_env, _plain(cfg))


def make_vector_env(cfg: Mapping[str, Any] | DictConfig, n_envs: int) -> Any:
    plain = _plain(cfg)
    family = env_family(str(plain["family"]))
    assert family.build_vector is not None
    return family.build_vector(n_envs, **{k: v for k, v in plain.items() if k not in ENV_CONFIG_FIELDS})


def vector_env_factory(cfg: Mapping[str, Any] | DictConfig) -> Callable[[int], Any] | None:
    """`n_envs -> vector env` for families that batch their envs in one call (SMAX); None for the others."""
    plain = _plain(cfg)
    if env_family(str(plain["family"])).build_vector is None:
        return None
    return partial(make_vector_env, plain)
