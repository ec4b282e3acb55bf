"""SIGINT / SIGTERM: stop at the next consistent point, checkpoint, exit with a code Slurm understands."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

# SIGUSR2 is what submitit (hydra-submitit-launcher) receives before a Slurm time limit or preemption.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


def exit_code_for(signum: int) -> int:
    """128 + signal number, the shell's code for 'ended by this signal' (143 for SIGTERM, 130 for SIGINT).

    Slurm records the job as ended by that signal; with `--requeue` (or the submitit launcher,
    which resubmits preempted jobs) the job restarts in the same run dir and resumes.
    """
    return 128 + int(signum)


class PreemptionCheckpoint(L.Callback):
    """Turns the first SIGINT or SIGTERM into: finish the current update, save a checkpoint, stop.

    A second signal is left to the previous handler, so a stuck run can still be killed.
    Lightning raises SIGTERMException after a batch once it sees SIGTERM; the checkpoint is
    written before that happens, or in `on_exception` if SIGTERM arrives outside a batch.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved_at: int | None = None
        self._module: Any = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self._module.stop_signal is not None:
            previous = self._previous.get(signum)
            if callable(previous):
                previous(signum, frame)
            return
        self._module.stop_signal = signum

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._module = pl_module
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handler)

    def _save(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.saved_at != pl_module.progress.t_env:
            trainer.save_checkpoint(self.path, weights_only=False)
            pl_module.progress.last_checkpoint_t = pl_module.progress.t_env
            self.saved_at = pl_module.progress.t_env

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: object) -> None:
        if pl_module.stop_signal is not None:
            self._save(trainer, pl_module)
            trainer.should_stop = True

    def on_exception(self, trainer: L.Trainer, pl_module: Any, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            pl_module.stop_signal = pl_module.stop_signal or signal.SIGTERM
            self._save(trainer, pl_module)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def redeliver(signum: int) -> None:
    """After the checkpoint: give the signal to whoever handled it before this run (e.g. submitit,
    which then requeues the job); with no Python handler there, exit with 128 + signum."""
    handler = signal.getsignal(signum)
    if callable(handler) and handler is not signal.default_int_handler:
        signal.raise_signal(signum)
    raise SystemExit(exit_code_for(signum))


class PeriodicCheckpoint(L.Callback):
    """A checkpoint every `interval` env steps (0 = none besides the final and preemption ones)."""

    def __init__(self, path: Path, interval: int) -> None:
        self.path, self.interval = path, interval

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: object) -> None:
        progress = pl_module.progress
        if self.interval > 0 and progress.t_env - progress.last_checkpoint_t >= self.interval:
            progress.last_checkpoint_t = progress.t_env
            trainer.save_checkpoint(self.path, weights_only=False)
