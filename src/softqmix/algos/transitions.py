"""Single transitions with n-step windows, sampled from the episode replay (HASAC; docs/algorithms/hasac.md).

The replay buffer stores whole episodes ([E, T+1, ...] with a `filled` mask, softqmix.data.buffer). HARL's
off-policy learners sample single transitions from a flat ring instead, each with the rewards of the next n
steps of its episode. This module gives that view of the episode buffer without copying it:

- a transition is an (episode, t) pair with filled[episode, t] = 1; a batch is `batch_size` distinct pairs drawn
  uniformly over every filled step of the stored episodes (so a long episode is drawn more often than a short
  one, as in a flat transition ring);
- its window is the steps t, t+1, ..., t+n-1 that lie inside the same episode: m = min(n, length - t) steps;
- it bootstraps from slot t+m (the observation after the window's last step; slot `length` holds the one after
  the episode's last step, which the collector keeps for truncated episodes), unless the window's last step
  terminated the episode.

Nothing here depends on a learner; `n_step_returns` is the pure maths of the targets.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from softqmix.data.buffer import EpisodeBuffer


@dataclass
class TransitionBatch:
    """B transitions with their n-step windows (N = n_step).

    state [B,S], obs [B,n,o], avail [B,n,A], actions [B,n]: the transition's own step t.
    reward [B,N], filled [B,N]: rewards of steps t .. t+N-1 and which of them lie inside the episode (the names
    match EpisodeBatch, so reward scaling and standardisation apply unchanged).
    next_state [B,S], next_obs [B,n,o], next_avail [B,n,A]: slot t+m, after the window's last step.
    terminated [B]: the window's last step ended the episode by termination (no bootstrap).
    episode_end [B]: the window's last step is the episode's last, terminated or truncated (HARL's `done`).
    """

    state: torch.Tensor
    obs: torch.Tensor
    avail: torch.Tensor
    actions: torch.Tensor
    reward: torch.Tensor
    filled: torch.Tensor
    next_state: torch.Tensor
    next_obs: torch.Tensor
    next_avail: torch.Tensor
    terminated: torch.Tensor
    episode_end: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.actions.shape[0]

    def to(self, device: torch.device | str) -> TransitionBatch:
        """On a CUDA device through pinned memory without waiting, as EpisodeBatch.to."""
        device = torch.device(device)
        if device.type == "cuda":
            return TransitionBatch(
                **{f.name: getattr(self, f.name).pin_memory().to(device, non_blocking=True) for f in fields(self)}
            )
        return TransitionBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def episode_lengths(buffer: EpisodeBuffer) -> torch.Tensor:
    """Filled steps of each stored episode [size] (episodes fill from step 0 without gaps)."""
    return buffer.storage.filled[: buffer.size].sum(1)


def stored_transitions(buffer: EpisodeBuffer) -> int:
    """How many transitions the buffer holds: its filled steps."""
    return int(episode_lengths(buffer).sum()) if buffer.size else 0


def distinct_indices(total: int, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k distinct integers drawn uniformly from [0, total), in no particular order.

    A permutation of `total` items per update would cost more than the update's sampling itself once the buffer
    holds a million transitions; drawing with replacement and redrawing the duplicates gives the same uniform
    k-subset (the procedure treats every item alike) at the cost of k draws.
    """
    if k > total:
        raise ValueError(f"cannot draw {k} distinct transitions from {total}")
    if 4 * k >= total:
        return torch.randperm(total, generator=generator)[:k]
    picked = torch.randint(total, (k,), generator=generator).unique()
    while picked.numel() < k:
        more = torch.randint(total, (k - picked.numel(),), generator=generator)
        picked = torch.cat([picked, more]).unique()
    return picked


def gather_transitions(buffer: EpisodeBuffer, episode: torch.Tensor, t: torch.Tensor, n_step: int) -> TransitionBatch:
    """The transitions at (episode[b], t[b]) with their windows of up to `n_step` steps, in float32 / int64."""
    s = buffer.storage
    length = episode_lengths(buffer)[episode]  # [B]
    steps = t.unsqueeze(1) + torch.arange(n_step)  # [B, N]
    inside = steps < length.unsqueeze(1)
    rows = episode.unsqueeze(1)
    reward = s.reward[rows, steps.clamp(max=s.reward.shape[1] - 1)].float() * inside
    m = inside.sum(1)  # >= 1: t itself is filled
    last, after = t + m - 1, t + m
    return TransitionBatch(
        state=s.state[episode, t].float(),
        obs=s.obs[episode, t].float(),
        avail=s.avail[episode, t].float(),
        actions=s.actions[episode, t].long(),
        reward=reward,
        filled=inside.float(),
        next_state=s.state[episode, after].float(),
        next_obs=s.obs[episode, after].float(),
        next_avail=s.avail[episode, after].float(),
        terminated=s.terminated[episode, last].float(),
        episode_end=(after == length).float(),
    )


def sample_transitions(
    buffer: EpisodeBuffer, batch_size: int, n_step: int, generator: torch.Generator | None = None
) -> TransitionBatch:
    """`batch_size` distinct transitions drawn uniformly over every filled step of the stored episodes."""
    lengths = episode_lengths(buffer)
    ends = lengths.cumsum(0)
    flat = distinct_indices(int(ends[-1]), batch_size, generator)
    episode = torch.searchsorted(ends, flat, right=True)
    t = flat - (ends[episode] - lengths[episode])
    return gather_transitions(buffer, episode, t, n_step)


def n_step_returns(reward: torch.Tensor, filled: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum_k gamma^k r_{t+k} over the window's steps inside the episode, gamma^m for its m steps), both [B]."""
    powers = gamma ** torch.arange(reward.shape[-1], dtype=reward.dtype, device=reward.device)
    returns = (reward * filled * powers).sum(-1)
    discount = gamma ** filled.sum(-1)
    return returns, discount
