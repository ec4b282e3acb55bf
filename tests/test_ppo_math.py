"""MAPPO's GAE, clipped losses and value normalisation against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from softqmix.algos.ppo_math import (
    ValueNorm,
    chunk_starts,
    clipped_policy_loss,
    clipped_value_loss,
    gae_advantages,
)

T = torch.tensor
GAMMA, LAMBDA = 0.9, 0.5
REWARD = T([[1.0, 0.0, 2.0]])
VALUES = T([[0.5, 1.0, 0.0, 3.0]])  # V(s_0) .. V(s_3); s_3 follows the last step


def test_gae_of_a_terminated_episode() -> None:
    # δ2 = 2 − 0 = 2 (no bootstrap); δ1 = 0 + .9·0 − 1 = −1; δ0 = 1 + .9·1 − .5 = 1.4
    # A2 = 2; A1 = −1 + .45·2 = −0.1; A0 = 1.4 + .45·(−0.1) = 1.355
    adv, ret = gae_advantages(REWARD, VALUES, T([[0.0, 0.0, 1.0]]), T([[1.0, 1.0, 1.0]]), GAMMA, LAMBDA)
    torch.testing.assert_close(adv, T([[1.355, -0.1, 2.0]]))
    torch.testing.assert_close(ret, T([[1.855, 0.9, 2.0]]))


def test_gae_bootstraps_through_a_time_limit() -> None:
    # truncated after step 2: δ2 = 2 + .9·3 = 4.7; A1 = −1 + .45·4.7 = 1.115; A0 = 1.4 + .45·1.115 = 1.90175
    adv, _ = gae_advantages(REWARD, VALUES, T([[0.0, 0.0, 0.0]]), T([[1.0, 1.0, 1.0]]), GAMMA, LAMBDA)
    torch.testing.assert_close(adv, T([[1.90175, 1.115, 4.7]]))


def test_gae_ignores_padding_and_handles_an_agent_axis() -> None:
    # terminated at step 1, step 2 is padding (its reward and value are junk)
    reward, values = T([[1.0, 0.0, 5.0]]), T([[0.5, 1.0, 0.0, 9.0]])
    adv, ret = gae_advantages(reward, values, T([[0.0, 1.0, 0.0]]), T([[1.0, 1.0, 0.0]]), GAMMA, LAMBDA)
    torch.testing.assert_close(adv, T([[0.95, -1.0, 0.0]]))  # A1 = −1; A0 = 1.4 − .45
    torch.testing.assert_close(ret[0, 2], T(0.0))
    per_agent, _ = gae_advantages(reward, values.unsqueeze(-1).repeat(1, 1, 2), T([[0.0, 1.0, 0.0]]),
                                  T([[1.0, 1.0, 0.0]]), GAMMA, LAMBDA)  # fmt: skip
    torch.testing.assert_close(per_agent, adv.unsqueeze(-1).repeat(1, 1, 2))


def test_clipped_policy_loss_by_hand() -> None:
    old = torch.zeros(3)
    new = torch.log(T([1.5, 0.5, 1.1]))  # ratios
    adv = T([1.0, 1.0, -2.0])
    # min(1.5·1, 1.2·1) = 1.2; min(.5·1, .8·1) = .5; min(1.1·−2, 1.1·−2) = −2.2 → loss = −(−0.5 / 3)
    loss, stats = clipped_policy_loss(new, old, adv, torch.ones(3), clip=0.2)
    assert loss.item() == pytest.approx(0.5 / 3)
    assert stats["train/clip_fraction"].item() == pytest.approx(2 / 3)
    masked, _ = clipped_policy_loss(new, old, adv, T([1.0, 1.0, 0.0]), clip=0.2)
    assert masked.item() == pytest.approx(-0.85)


def test_clipped_value_loss_by_hand() -> None:
    values, old, returns = T([1.0, 0.1]), T([0.0, 0.0]), T([2.0, 0.0])
    # entry 0: plain ½·1² = .5, clipped to 0.2 → ½·1.8² = 1.62 → 1.62; entry 1: ½·.1² = .005 both ways
    assert clipped_value_loss(values, old, returns, torch.ones(2), 0.2, None).item() == pytest.approx(0.8125)
    # Huber δ = 1: entry 0: plain ½·1² = .5, clipped 1·(1.8 − .5) = 1.3
    assert clipped_value_loss(values, old, returns, torch.ones(2), 0.2, 1.0).item() == pytest.approx(0.6525)


def test_value_norm_round_trip_and_statistics() -> None:
    norm = ValueNorm(beta=0.0)  # no memory: the statistics of the last batch
    norm.update(T([1.0, 3.0]), torch.ones(2))
    # mean 2, var (1 + 9)/2 − 4 = 1
    torch.testing.assert_close(norm.normalize(T([3.0, 1.0])), T([1.0, -1.0]))
    torch.testing.assert_close(norm.denormalize(norm.normalize(T([7.0]))), T([7.0]))
    slow = ValueNorm(beta=0.5)
    slow.update(T([2.0]), torch.ones(1))
    slow.update(T([4.0]), torch.ones(1))
    # debiased mean = (.5·.5·2 + .5·4) / (.5·.5 + .5) = 2.5 / .75
    mean, _ = slow._mean_var()
    assert mean.item() == pytest.approx(2.5 / 0.75)
    assert math.isfinite(slow.normalize(T([0.0])).item())


def test_chunks_cover_the_episode() -> None:
    assert chunk_starts(20, 8) == [0, 8, 16]
    with pytest.raises(ValueError, match="chunk_length"):
        chunk_starts(20, 0)
