"""Environments behind one `MultiAgentEnv` protocol, built by name from config."""

from softqmix.envs.base import EnvInfo, MultiAgentEnv, StepResult
from softqmix.envs.registry import make_env

__all__ = ["EnvInfo", "MultiAgentEnv", "StepResult", "make_env"]
