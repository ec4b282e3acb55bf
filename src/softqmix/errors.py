"""Errors a user can act on: the CLI prints their message as one line instead of a traceback."""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in the config, the command line or the inputs; the message says how to fix it."""


class ConfigError(UserError):
    """An invalid or incompatible configuration value."""


class EnvContractError(RuntimeError):
    """An environment broke the MultiAgentEnv contract (shapes, action masks)."""


class TrainingDiverged(RuntimeError):
    """A loss or a Q-value became NaN or infinite."""
