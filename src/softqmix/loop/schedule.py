"""Greedy tests scheduled by env steps, not by Lightning's optimizer-step counter."""

from __future__ import annotations

import lightning as L


class GreedyEvaluation(L.Callback):
    """Test before training, every `test_interval` env steps, and once more at the end."""

    def __init__(self, test_interval: int) -> None:
        self.test_interval = test_interval

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # on_fit_start precedes Lightning's first fetch from the stream, i.e. any collection
        if self.test_interval > 0 and pl_module.progress.last_test_t < 0:  # not when resuming
            pl_module.start_collecting()  # a collection process gathers the first round during the test
            pl_module.run_test()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        progress = pl_module.progress
        if self.test_interval > 0 and progress.t_env - progress.last_test_t >= self.test_interval:
            pl_module.run_test()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.stop_signal is not None:
            return  # preempted: the resumed run tests and logs exactly as an uninterrupted one would
        if pl_module.progress.last_test_t != pl_module.progress.t_env:
            pl_module.run_test()
        pl_module.flush_train_metrics()
