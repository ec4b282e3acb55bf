"""Learners by `algo.name`: which LightningModule trains a config, and which restores a checkpoint."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from softqmix.algos.learner_base import EnvLearner, RunSchedule
from softqmix.envs.base import EnvInfo


def learner_class(algo_name: str) -> type[EnvLearner]:
    """MAPPO for `mappo`, FOP for `fop`; every other name is a value-factorisation config (IQL ... Soft-QMIX)."""
    if algo_name == "mappo":
        from softqmix.algos.mappo import MAPPO

        return MAPPO
    if algo_name == "fop":
        from softqmix.algos.fop import FOP

        return FOP
    from softqmix.algos.value_factorisation import ValueFactorisation

    return ValueFactorisation


def make_learner(
    algo: DictConfig | dict[str, Any], env_info: EnvInfo, obs_last_action: bool, schedule: RunSchedule
) -> EnvLearner:
    return learner_class(str(algo["name"]))(algo, env_info, obs_last_action, schedule)  # type: ignore[call-arg]
