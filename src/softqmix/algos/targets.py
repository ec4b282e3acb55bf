"""TD(lambda) and soft TD(lambda) targets as pure functions of [B, T] / [B, T+1] tensors.

Conventions (pymarl): step t in 0..T-1 has reward r_t and termination flag d_t;
mask m_t = filled_t * (1 - d_{t-1}); `target_qs` and `entropy` hold T+1 values, the last
one being the state after the window. Results have T entries and are 0 where m_t = 0.

The soft target (docs/algorithms/soft_qmix.md, "One update") adds alpha * H_{t+1} to the bootstrap value and to
the lambda continuation, H being the single-sample entropy estimate -sum_i log pi_i(a'_i).
"""

from __future__ import annotations

import torch


def _check_shapes(
    rewards: torch.Tensor, terminated: torch.Tensor, mask: torch.Tensor, *next_values: torch.Tensor
) -> None:
    if rewards.dim() != 2 or terminated.shape != rewards.shape or mask.shape != rewards.shape:
        raise ValueError(
            "rewards, terminated and mask must all be [B, T]; got "
            f"{tuple(rewards.shape)}, {tuple(terminated.shape)}, {tuple(mask.shape)}"
        )
    b, t = rewards.shape
    for v in next_values:
        if v.shape != (b, t + 1):
            raise ValueError(f"target_qs and entropy must be [B, T+1] = {(b, t + 1)}, got {tuple(v.shape)}")


def soft_td_lambda_targets(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    mask: torch.Tensor,
    target_qs: torch.Tensor,
    entropy: torch.Tensor,
    gamma: float,
    lam: float,
    alpha: float,
    mask_entropy_after_termination: bool = True,
) -> torch.Tensor:
    """Soft lambda-returns y_0..y_{T-1}.

    With `mask_entropy_after_termination=True` the continuation stops where the episode
    stops: after a termination nothing is added, and after a truncation (the next step is
    not filled) the target bootstraps fully from the soft value Q_{t+1} + alpha H_{t+1}.

    With False it is the released code's recursion verbatim (SQ src/utils/rl_utils.py):
        y_T = Q_T (1 - sum_t d_t)
        y_t = lam gamma (y_{t+1} + alpha H_{t+1}) + m_t [r_t + (1-lam) gamma (Q_{t+1} + alpha H_{t+1})(1-d_t)]
    whose first term is gated by neither m_t nor d_t, so entropy of post-terminal and
    padded steps leaks into the target of a terminal step (docs/algorithms/soft_qmix.md).
    Both agree wherever no episode ends inside the window.
    """
    _check_shapes(rewards, terminated, mask, target_qs, entropy)
    b, horizon = rewards.shape
    bonus = alpha * entropy
    if not mask_entropy_after_termination:
        ret = target_qs.new_zeros(b, horizon + 1)
        ret[:, -1] = target_qs[:, -1] * (1 - terminated.sum(dim=1))
        for t in range(horizon - 1, -1, -1):
            ret[:, t] = lam * gamma * (ret[:, t + 1] + bonus[:, t + 1]) + mask[:, t] * (
                rewards[:, t] + (1 - lam) * gamma * (target_qs[:, t + 1] + bonus[:, t + 1]) * (1 - terminated[:, t])
            )
        return ret[:, :-1]

    # y_t = m_t [r_t + gamma (1 - d_t) ((1 - lam) V_{t+1} + lam c_{t+1})] with V = Q + alpha H, and the
    # continuation c_t = y_t + alpha H_t on a live step, V_t on a masked one (c_T = V_T: beyond the window, bootstrap).
    # Both are affine in c_{t+1}: y_t = base_t + carry_t c_{t+1}, c_t = offset_t + scale_t c_{t+1}, so every
    # coefficient is computed for all steps at once and the backward recursion is one fused op per step.
    soft_values = target_qs + bonus
    live = (mask > 0).to(target_qs.dtype)
    gain = mask * gamma * (1 - terminated)
    base = mask * rewards + gain * (1 - lam) * soft_values[:, 1:]
    carry = gain * lam
    offset = (live * (base + bonus[:, :-1]) + (1 - live) * soft_values[:, :-1]).t().contiguous()
    scale = (live * carry).t().contiguous()
    continuation = target_qs.new_empty(horizon + 1, b)  # time-major: each step's row is contiguous
    continuation[horizon] = soft_values[:, horizon]
    for t in range(horizon - 1, -1, -1):
        torch.addcmul(offset[t], scale[t], continuation[t + 1], out=continuation[t])
    return base + carry * continuation[1:].t()


def td_lambda_targets(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    mask: torch.Tensor,
    target_qs: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Hard lambda-returns (pymarl2's build_td_lambda_targets on every unmasked step).

    pymarl2 keeps lam*gamma*y_{t+1} on masked steps, where it is never used; here those
    entries are 0, and an episode truncated before the end of the window bootstraps from
    its own last state instead of from padding.
    """
    return soft_td_lambda_targets(
        rewards, terminated, mask, target_qs, torch.zeros_like(target_qs), gamma, lam, alpha=0.0
    )
