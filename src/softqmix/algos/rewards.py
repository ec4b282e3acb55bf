"""What the learner does to the team reward before its targets: scaling and running standardisation.

Value learners bootstrap; with gamma = 0.99 and a time limit that is bootstrapped through, Q-values sit at
about r / (1 - gamma), so the reward's scale sets the scale of every TD error and of the gradient clip.
EPyMARL standardises rewards by default (standardise_rewards: True) with a running mean and variance over the
sampled batches (Chan et al.'s parallel update, starting from mean 0, variance 1 and a count of 1e-4). Here
the statistics count the batch's real steps only (EPyMARL's also count padding; the same where every
episode runs to its limit). Logged returns are always the env's own.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from softqmix.data.buffer import EpisodeBatch


class RewardTransform(nn.Module):
    """r -> scale * r, or scale * (r - mean) / std with running statistics kept as (checkpointed) buffers."""

    def __init__(self, scale: float = 1.0, standardise: bool = False, initial_count: float = 1e-4) -> None:
        super().__init__()
        self.scale, self.standardise = float(scale), bool(standardise)
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("var", torch.ones(()))
        self.register_buffer("count", torch.tensor(float(initial_count)))

    @property
    def active(self) -> bool:
        return self.standardise or self.scale != 1.0

    @torch.no_grad()
    def update(self, rewards: torch.Tensor, filled: torch.Tensor) -> None:
        """Merge the batch's moments (its real steps) into the running ones; masked sums only, so a GPU run
        never waits for the host here."""
        n = filled.sum()
        batch_mean = (rewards * filled).sum() / n.clamp(min=1.0)
        batch_var = ((rewards - batch_mean).square() * filled).sum() / (n - 1).clamp(min=1.0)
        delta = batch_mean - self.mean
        total = self.count + n
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        use = n >= 2  # a batch of fewer than two real steps has no variance: keep the running moments
        self.mean.copy_(torch.where(use, self.mean + delta * n / total, self.mean))
        self.var.copy_(torch.where(use, m2 / total, self.var))
        self.count.copy_(torch.where(use, total, self.count))

    def forward(self, batch: EpisodeBatch) -> EpisodeBatch:
        if not self.active:
            return batch
        reward = batch.reward
        if self.standardise:
            self.update(reward, batch.filled)
            reward = (reward - self.mean) / self.var.sqrt()
        return dataclasses.replace(batch, reward=reward * self.scale)
