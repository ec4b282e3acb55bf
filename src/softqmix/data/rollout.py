"""On-policy data: a prepared rollout cut into minibatches, for PPO-style learners."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Minibatch:
    """Rows of one prepared rollout for one gradient step."""

    rollout: Any  # what the learner's `prepare_rollout` returned: old log-probs, advantages, ...
    rows: torch.Tensor  # episode indices into the rollout
    epoch: int

    def to(self, device: torch.device | str) -> Minibatch:
        """The rollout was prepared on the learner's device; only the row indices travel."""
        return Minibatch(self.rollout, self.rows.to(device), self.epoch)


def epoch_minibatches(rollout: Any, n_episodes: int, epochs: int, num_mini_batch: int) -> Iterator[Minibatch]:
    """Every episode `epochs` times, in `num_mini_batch` shuffled minibatches per epoch."""
    for epoch in range(epochs):
        for rows in torch.randperm(n_episodes).chunk(num_mini_batch):
            yield Minibatch(rollout, rows, epoch)
