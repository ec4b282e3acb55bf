"""Behaviour and execution policies over per-agent action values with action masks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from softqmix.progress import TrainingProgress

# Logit given to unavailable actions: finite, so a fully masked (padded) step gives a
# uniform policy instead of NaN, as in the released code (docs/algorithms/soft_qmix.md).
MASKED_LOGIT = -1e9


def masked_logits(logits: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(avail <= 0, MASKED_LOGIT)


def greedy_actions(values: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """Argmax over available actions; values and avail are [..., A]."""
    return masked_logits(values, avail).argmax(dim=-1)


def sample_softmax(
    logits: torch.Tensor, avail: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample a ~ softmax(logits) over available actions; returns (actions, log-probs of all actions).

    By the inverse CDF: one uniform number per row, against the running sum of the unnormalised weights
    exp(logit - max). Why not `torch.multinomial` and `log_softmax`: with a handful of actions per row, both run
    along a short last axis, and on a SMAX replay batch (every step, agent and action of 32 episodes) they took
    9.2 ms of a Soft-QMIX update where this takes 3.1 ms (benchmarks/results/sample_softmax_cost.json). An
    unavailable action has weight 0, so it adds nothing to the running sum and is never drawn; a fully masked
    row (padding) is uniform, as MASKED_LOGIT intends.
    """
    shifted = masked_logits(logits, avail)
    shifted = shifted - shifted.amax(dim=-1, keepdim=True)
    cumulative = shifted.exp().cumsum(dim=-1)
    total = cumulative[..., -1:]
    draw = torch.rand(total.shape, generator=generator, dtype=total.dtype, device=total.device) * total
    # the first action whose running sum exceeds the draw; the clamp only guards rounding at the top end
    actions = (cumulative <= draw).sum(dim=-1).clamp_(max=logits.shape[-1] - 1)
    return actions, shifted - total.log()


def epsilon_greedy(
    values: torch.Tensor, avail: torch.Tensor, epsilon: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """With probability epsilon a uniformly random available action, else the greedy one."""
    greedy = greedy_actions(values, avail)
    random = torch.multinomial(avail.reshape(-1, avail.shape[-1]).clamp(min=0), 1, generator=generator)
    random = random.view(greedy.shape)
    explore = torch.rand(greedy.shape, device=values.device, generator=generator) < epsilon
    return torch.where(explore, random, greedy)


def epsilon_greedy_probs(values: torch.Tensor, avail: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The action distribution `epsilon_greedy` samples from (for reports)."""
    n_avail = avail.sum(-1, keepdim=True).clamp(min=1)
    probs = epsilon * avail / n_avail
    greedy = torch.nn.functional.one_hot(greedy_actions(values, avail), values.shape[-1]).to(values.dtype)
    return probs + (1 - epsilon) * greedy


@dataclass(frozen=True)
class LinearSchedule:
    """Linear anneal from `start` to `finish` over `duration` env steps, then constant."""

    start: float
    finish: float
    duration: int

    def __call__(self, t_env: int) -> float:
        if self.duration <= 0:
            return self.finish
        frac = min(max(t_env, 0) / self.duration, 1.0)
        return self.start + frac * (self.finish - self.start)


@dataclass(frozen=True)
class ScheduleAtProgress:
    """A schedule read at the run's current env step. A class rather than a lambda so that an actor holding one
    pickles, and a spawned collection process (softqmix.data.collector_process) can be sent it; the process sets
    its copy of `progress.t_env` before each round."""

    schedule: Callable[[int], float]
    progress: TrainingProgress

    def __call__(self) -> float:
        return self.schedule(self.progress.t_env)
