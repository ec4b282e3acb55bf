"""Scoring a checkpoint away from its greedy policy: the greedy actions with an epsilon of uniform noise.

A greedy policy read off small action gaps can look far worse (or better) than the nearly greedy policy
that generated its training data; scoring one checkpoint at epsilon = 0 and 0.05 on the same env seeds
tells the two apart (`python evaluate.py run=<dir> epsilon=0.05`).
"""

from __future__ import annotations

from typing import Any

import torch


class EpsilonGreedyActor:
    """Wraps an actor: each agent's greedy action is replaced, with probability epsilon, by a uniformly
    drawn available action (from its own generator, so evaluations are reproducible)."""

    def __init__(self, actor: Any, epsilon: float, seed: int) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
        self.actor, self.epsilon = actor, float(epsilon)
        self.generator = torch.Generator().manual_seed(seed)

    def initial_hidden(self, n_envs: int) -> torch.Tensor:
        return self.actor.initial_hidden(n_envs)

    def act(
        self,
        obs: torch.Tensor,
        state: torch.Tensor,
        avail: torch.Tensor,
        last_actions: torch.Tensor,
        hidden: torch.Tensor,
        explore: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        greedy, hidden = self.actor.act(obs, state, avail, last_actions, hidden, explore=False)
        if self.epsilon == 0.0:
            return greedy, hidden
        greedy = greedy.cpu()
        flat = avail.cpu().reshape(-1, avail.shape[-1]).clamp(min=0)
        random = torch.multinomial(flat, 1, generator=self.generator).view(greedy.shape)
        noisy = torch.rand(greedy.shape, generator=self.generator) < self.epsilon
        return torch.where(noisy, random, greedy), hidden
