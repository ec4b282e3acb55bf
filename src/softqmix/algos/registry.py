"""Algorithms by `algo.name`: which learner trains a config, with which schema, and what it can do.

Each learner module registers its algorithms with `register_algorithm`; the registry imports every
module of softqmix.algos the first time a name is looked up, so a new algorithm is its module, its
YAML under conf/algo/ and a test (docs/extending.md). An unknown name is an error that lists the
registered ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from softqmix.algos.learner import Learner, LearnerConfig, typed_config
from softqmix.envs.base import EnvInfo
from softqmix.errors import ConfigError
from softqmix.progress import TrainingProgress
from softqmix.registry import Registry


def _never(cfg: Any) -> bool:
    return False


def _no_checks(cfg: Any) -> None:
    return None


@dataclass(frozen=True)
class AlgorithmSpec:
    """One algorithm: its learner class, its config schema and its capabilities."""

    name: str
    learner: type[Learner]
    config: type[LearnerConfig]
    summary: str
    on_policy: bool = False  # trained on fresh rollouts (no replay buffer)
    overlapped_collection: bool = False  # supports pool.collection=thread|process (a detachable actor)
    joint_value: bool = False  # has a joint value Q_tot over joint actions (the matrix-game table)
    accepts_ablations: bool = False  # the ablation bundles (conf/ablation/) are variants of this algorithm
    needs_state: Callable[[Any], bool] = field(default=_never)  # given the typed config
    validate: Callable[[Any], None] = field(default=_no_checks)  # config-only checks; raises ConfigError


ALGORITHMS: Registry[AlgorithmSpec] = Registry("algorithm", ("softqmix.algos",))


def register_algorithm(spec: AlgorithmSpec) -> AlgorithmSpec:
    return ALGORITHMS.register(spec.name, spec)


def algorithm(name: str) -> AlgorithmSpec:
    return ALGORITHMS.get(name)


def build_learner(
    algo: Any,
    env_info: EnvInfo,
    obs_last_action: bool,
    progress: TrainingProgress | None = None,
    t_max: int = 0,
) -> Learner:
    """The learner for a composed algo config (a mapping or a dataclass), checked against the env."""
    name = algo.name if isinstance(algo, LearnerConfig) else algo["name"]
    spec = algorithm(str(name))
    cfg = typed_config(spec.config, algo)
    spec.validate(cfg)
    if spec.needs_state(cfg) and env_info.state_dim == 0:
        raise ConfigError(
            f"algo={spec.name} with these settings needs a global state, but this env has none (state_dim=0); "
            "use algo=vdn or algo=iql, or an env that provides a state"
        )
    return spec.learner(cfg, env_info, obs_last_action, progress or TrainingProgress(), t_max)
