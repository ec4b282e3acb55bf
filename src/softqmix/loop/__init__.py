"""The training loop: one LightningModule around a learner, and where its episodes come from."""

from softqmix.loop.module import RunSchedule, TrainingLoop

__all__ = ["RunSchedule", "TrainingLoop"]
