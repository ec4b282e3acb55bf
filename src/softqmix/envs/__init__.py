"""Environments behind one `MultiAgentEnv` protocol, built by name from config."""

from softqmix.envs.base import EnvInfo, MultiAgentEnv, StepResult
from softqmix.envs.registry import env_factory, make_env

__all__ = ["EnvInfo", "MultiAgentEnv", "StepResult", "env_factory", "make_env"]
