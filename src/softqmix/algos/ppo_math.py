"""The pieces of MAPPO's update that are pure functions of tensors (Yu et al., 2022; PPO, Schulman et al., 2017).

Kept apart from the LightningModule so that each can be checked against hand-computed values.
Shapes follow EpisodeBatch: time is the second axis, `filled` marks real steps, and index
t + 1 of a value tensor holds the value of the observation after step t.
"""

from __future__ import annotations

import torch
from torch import nn


def gae_advantages(
    reward: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    filled: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and value targets (returns) over whole padded episodes.

    reward, terminated, filled: [B, T]; values: [B, T + 1] (or with a trailing agent axis).
    δ_t = r_t + γ V(s_{t+1}) (1 − term_t) − V(s_t),   A_t = δ_t + γ λ (1 − term_t) filled_{t+1} A_{t+1}.
    An episode cut by a time limit (truncated, not terminated) bootstraps from V of the
    observation after its last step; a terminated one does not. Padded steps get A = 0.
    """
    extra = values.dim() - reward.dim()
    expand = (lambda x: x.view(*x.shape, *([1] * extra))) if extra else (lambda x: x)
    reward, terminated, filled = expand(reward), expand(terminated), expand(filled)
    next_filled = torch.cat([filled[:, 1:], torch.zeros_like(filled[:, :1])], dim=1)
    advantages = torch.zeros_like(values[:, :-1])
    running = torch.zeros_like(values[:, 0])
    for t in range(reward.shape[1] - 1, -1, -1):
        alive = 1.0 - terminated[:, t]
        delta = reward[:, t] + gamma * values[:, t + 1] * alive - values[:, t]
        running = (delta + gamma * gae_lambda * alive * next_filled[:, t] * running) * filled[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values[:, :-1]) * filled


def clipped_policy_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate, −E[min(ρ A, clip(ρ, 1 − ε, 1 + ε) A)], over the masked entries."""
    ratio = torch.exp(log_probs - old_log_probs)
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1.0 - clip, 1.0 + clip) * advantages)
    n = mask.sum().clamp(min=1.0)
    loss = -(surrogate * mask).sum() / n
    with torch.no_grad():
        stats = {
            "train/clip_fraction": (((ratio - 1.0).abs() > clip).float() * mask).sum() / n,
            "train/approx_kl": ((old_log_probs - log_probs) * mask).sum() / n,
        }
    return loss, stats


def huber(x: torch.Tensor, delta: float) -> torch.Tensor:
    return torch.where(x.abs() <= delta, 0.5 * x.pow(2), delta * (x.abs() - 0.5 * delta))


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
    huber_delta: float | None,
) -> torch.Tensor:
    """MAPPO's value loss: the larger of the plain and the clipped error (Huber or squared)."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    errors = (returns - values, returns - clipped)
    if huber_delta is None:
        plain, limited = (0.5 * e.pow(2) for e in errors)
    else:
        plain, limited = (huber(e, huber_delta) for e in errors)
    return (torch.maximum(plain, limited) * mask).sum() / mask.sum().clamp(min=1.0)


class ValueNorm(nn.Module):
    """Running mean and variance of the value targets with debiasing (MAPPO's ValueNorm).

    The critic predicts normalised values; targets are normalised with the statistics after
    this update's data is included, and predictions are denormalised before GAE.
    """

    def __init__(self, beta: float = 0.99999, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.beta, self.epsilon = beta, epsilon
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("running_mean_sq", torch.zeros(()))
        self.register_buffer("debiasing_term", torch.zeros(()))

    def _mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        debias = self.debiasing_term.clamp(min=self.epsilon)
        mean = self.running_mean / debias
        var = (self.running_mean_sq / debias - mean.pow(2)).clamp(min=1e-2)
        return mean, var

    @torch.no_grad()
    def update(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        n = mask.sum().clamp(min=1.0)
        batch_mean = (x * mask).sum() / n
        batch_sq = (x.pow(2) * mask).sum() / n
        self.running_mean.mul_(self.beta).add_(batch_mean * (1.0 - self.beta))
        self.running_mean_sq.mul_(self.beta).add_(batch_sq * (1.0 - self.beta))
        self.debiasing_term.mul_(self.beta).add_(1.0 - self.beta)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self._mean_var()
        return (x - mean) / var.sqrt()

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self._mean_var()
        return x * var.sqrt() + mean


def chunk_starts(max_t: int, chunk_length: int) -> list[int]:
    """Start steps of the data chunks a recurrent policy is trained on (MAPPO's data_chunk_length).

    Each chunk is unrolled from the hidden state the actor had at its first step during the
    rollout, so the gradient flows through at most `chunk_length` steps.
    """
    if chunk_length < 1:
        raise ValueError(f"algo.chunk_length must be >= 1, got {chunk_length}")
    return list(range(0, max_t, chunk_length))
