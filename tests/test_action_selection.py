"""Unavailable actions (SMAX/SMACv2 masks) are never chosen: greedy, epsilon-greedy or softmax, acting or in targets."""

from __future__ import annotations

import torch

from softqmix.algos.action_selection import epsilon_greedy, greedy_actions, sample_softmax


def masks_with_best_action_unavailable() -> tuple[torch.Tensor, torch.Tensor]:
    """Values whose largest entry is always masked out, and masks leaving 1-3 legal actions per agent."""
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(64, 5, 11, generator=gen)
    avail = (torch.rand(64, 5, 11, generator=gen) < 0.3).float()
    avail[..., 0] = 0.0
    avail[torch.arange(64), :, torch.randint(1, 11, (64,), generator=gen)] = 1.0  # at least one legal action
    values = values.masked_fill(avail > 0, -1.0) + 10.0 * (avail == 0)  # illegal actions look far better
    return values, avail


def test_greedy_and_epsilon_greedy_pick_only_available_actions() -> None:
    values, avail = masks_with_best_action_unavailable()
    greedy = greedy_actions(values, avail)
    assert bool(avail.gather(-1, greedy.unsqueeze(-1)).all())
    gen = torch.Generator().manual_seed(1)
    for epsilon in (0.0, 0.5, 1.0):
        chosen = epsilon_greedy(values, avail, epsilon, gen)
        assert bool(avail.gather(-1, chosen.unsqueeze(-1)).all()), epsilon


def test_the_softmax_gives_unavailable_actions_zero_probability() -> None:
    values, avail = masks_with_best_action_unavailable()
    gen = torch.Generator().manual_seed(2)
    for _ in range(20):
        actions, log_probs = sample_softmax(values / 0.03, avail, gen)
        assert bool(avail.gather(-1, actions.unsqueeze(-1)).all())
    probs = log_probs.exp()
    assert float(probs[avail == 0].max()) < 1e-12
    assert torch.allclose(probs.sum(-1), torch.ones(64, 5))


def test_the_softmax_draws_each_action_at_its_probability() -> None:
    """Unavailable actions first, in the middle and last, and a fully masked row (padding: uniform); the
    frequencies over many draws are the softmax's within four standard errors, and the log-probs are
    log_softmax's."""
    logits = torch.tensor([[3.0, 0.0, 1.0, 2.0, -1.0, 0.5], [0.2, -0.3, 1.5, 0.0, 0.7, -2.0]])
    avail = torch.tensor([[0, 1, 1, 0, 1, 1], [0, 0, 0, 0, 0, 0]], dtype=torch.float32)
    draws = 200_000
    actions, log_probs = sample_softmax(
        logits.expand(draws, 2, 6), avail.expand(draws, 2, 6), torch.Generator().manual_seed(3)
    )
    want = torch.softmax(logits.masked_fill(avail == 0, -1e9), dim=-1)
    torch.testing.assert_close(log_probs[0], torch.log_softmax(logits.masked_fill(avail == 0, -1e9), dim=-1))
    for row in range(2):
        freq = torch.bincount(actions[:, row], minlength=6).double() / draws
        stderr = (want[row].double() * (1 - want[row].double()) / draws).sqrt()
        assert bool(((freq - want[row].double()).abs() <= 4 * stderr + 1e-12).all()), (row, freq, want[row])
