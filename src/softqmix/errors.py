"""Errors a user can act on: the CLI prints their message as one line instead of a traceback."""

from __future__ import annotations

import errno
import math
import os
from typing import Any


class UserError(ValueError):
    """A mistake in the config, the command line or the inputs; the message says how to fix it."""


class ConfigError(UserError):
    """An invalid or incompatible configuration value."""


class EnvContractError(RuntimeError):
    """An environment broke the MultiAgentEnv contract (shapes, action masks)."""


class TrainingDiverged(RuntimeError):
    """A loss or a Q-value became NaN or infinite, or passed trainer.divergence_bound.

    Besides the one-line message it carries what failed.json records: the env step, the update that diverged,
    the last values of the checked quantities and which of them offended, the bound, the checkpoint kept.
    """

    def __init__(
        self,
        message: str,
        *,
        env_step: int | None = None,
        update: int | None = None,
        values: dict[str, float] | None = None,
        offending: list[str] | None = None,
        bound: float | None = None,
        checkpoint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.env_step, self.update, self.bound, self.checkpoint = env_step, update, bound, checkpoint
        self.values, self.offending = dict(values or {}), list(offending or [])

    def details(self) -> dict[str, Any]:
        """The fields failed.json adds to the error and message (NaN and inf as the strings 'nan', 'inf')."""
        return {
            "reason": "diverged",
            "env_step": self.env_step,
            "update": self.update,
            "offending": self.offending,
            "values": {key: _json_number(value) for key, value in self.values.items()},
            "divergence_bound": self.bound,
            "checkpoint": self.checkpoint,
        }


def _json_number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


class ResumeRefused(ConfigError):
    """A resume that cannot go ahead as asked; the run dir it names is left untouched."""


class RunDirBusy(UserError):
    """Another process holds the run dir's lock (softqmix.rundir); nothing is written into the dir."""


class RunDirNotWritable(UserError):
    """The run dir cannot be created or written (a read-only mount, no permission, a full disk); found before the
    run starts, by writing a probe file (softqmix.rundir), so nothing is half done."""


# what a failed write means, in words (os.strerror for the rest)
_WRITE_PROBLEMS = {
    errno.ENOSPC: "no space left on the device (the disk is full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
}
DISK_ERRNOS = tuple(_WRITE_PROBLEMS)


class OutputWriteError(OSError):
    """A file of the run could not be written while it ran (a full disk, a quota, a mount gone read-only).

    The message is one line naming the file and the problem; the file being written is left as it was before
    (checkpoints and summaries are written atomically, a metrics row that did not fit is cut off again).
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code

    @classmethod
    def writing(cls, path: os.PathLike[str] | str, cause: OSError) -> OutputWriteError:
        if isinstance(cause, OutputWriteError):
            return cause
        why = _WRITE_PROBLEMS.get(cause.errno or 0) or cause.strerror or str(cause)
        return cls(f"cannot write {path}: {why}", cause.errno)
