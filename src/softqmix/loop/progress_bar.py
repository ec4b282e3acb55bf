"""A progress bar in env steps (Lightning's default counts optimizer steps of an endless stream)."""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from tqdm import tqdm


class EnvStepProgressBar(ProgressBar):
    """env steps out of t_max, episodes per second and the latest greedy test return."""

    def __init__(self, refresh_seconds: float = 0.5) -> None:
        super().__init__()
        self._enabled = True
        self._bar: tqdm | None = None
        self.refresh_seconds = refresh_seconds
        self._last_refresh = 0.0
        self._start: tuple[float, int] = (0.0, 0)

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        if not self._enabled:
            return
        progress = pl_module.progress
        self._bar = tqdm(
            total=pl_module.schedule.t_max,
            initial=progress.t_env,
            unit="step",
            unit_scale=True,
            dynamic_ncols=True,
            file=sys.stderr,
            desc=pl_module.algo_name,
        )
        self._start = (time.perf_counter(), progress.episodes)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: object) -> None:
        now = time.perf_counter()
        if self._bar is None or now - self._last_refresh < self.refresh_seconds:
            return
        self._last_refresh = now
        progress = pl_module.progress
        self._bar.n = progress.t_env
        postfix = {"eps/s": f"{(progress.episodes - self._start[1]) / max(now - self._start[0], 1e-9):.1f}"}
        if pl_module.test_history:
            postfix["test_return"] = f"{pl_module.test_history[-1]['test/return_mean']:.2f}"
        postfix["updates"] = progress.updates
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.refresh()

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self._bar is not None:
            self._bar.n = pl_module.progress.t_env
            self._bar.close()
            self._bar = None
