"""TD(lambda) and soft TD(lambda) targets against values worked out by hand."""

from __future__ import annotations

import pytest
import torch

from softqmix.algos.targets import soft_td_lambda_targets, td_lambda_targets

GAMMA, LAM = 0.9, 0.5


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def pymarl_mask(filled: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
    mask = filled.clone()
    mask[:, 1:] *= 1 - terminated[:, :-1]
    return mask


# Episode terminating at step 1 of a 3-step window (step 2 is padding).
TERM = {
    "rewards": t([1.0, 2.0, 3.0]),
    "terminated": t([0.0, 1.0, 0.0]),
    "filled": t([1.0, 1.0, 0.0]),
    "target_qs": t([10.0, 20.0, 30.0, 40.0]),
    "entropy": t([1.0, 2.0, 3.0, 4.0]),
}


def test_termination_mid_window_hard() -> None:
    mask = pymarl_mask(TERM["filled"], TERM["terminated"])
    y = td_lambda_targets(TERM["rewards"], TERM["terminated"], mask, TERM["target_qs"], GAMMA, LAM)
    # y1 = r1 = 2 (terminal); y0 = r0 + g[(1-l) Q1 + l y1] = 1 + 0.9 (0.5*20 + 0.5*2) = 10.9; padding -> 0
    torch.testing.assert_close(y, t([10.9, 2.0, 0.0]))


def test_termination_mid_window_soft_masked() -> None:
    mask = pymarl_mask(TERM["filled"], TERM["terminated"])
    y = soft_td_lambda_targets(
        TERM["rewards"], TERM["terminated"], mask, TERM["target_qs"], TERM["entropy"], GAMMA, LAM, alpha=0.1
    )
    # y1 = 2; y0 = 1 + 0.9 [0.5 (20 + 0.1*2) + 0.5 (y1 + 0.1*2)] = 1 + 0.9 * 11.2 = 11.08
    torch.testing.assert_close(y, t([11.08, 2.0, 0.0]))


def test_released_variant_reproduces_the_entropy_leak() -> None:
    mask = pymarl_mask(TERM["filled"], TERM["terminated"])
    y = soft_td_lambda_targets(
        TERM["rewards"],
        TERM["terminated"],
        mask,
        TERM["target_qs"],
        TERM["entropy"],
        GAMMA,
        LAM,
        alpha=0.1,
        mask_entropy_after_termination=False,
    )
    # Released recursion: y3 = Q3 (1 - 1) = 0; y2 = 0.45 (0 + 0.4) = 0.18;
    # y1 = 0.45 (0.18 + 0.3) + 2 = 2.216 (the terminal step leaks 0.216);
    # y0 = 0.45 (2.216 + 0.2) + 1 + 0.45 (20 + 0.2) = 11.1772
    torch.testing.assert_close(y, t([11.1772, 2.216, 0.18]))


def test_full_window_episode_bootstraps_from_last_state() -> None:
    # Two steps, no termination (a time-limit end at the window edge): bootstrap from Q_2.
    r, d, f, q = t([1.0, 1.0]), t([0.0, 0.0]), t([1.0, 1.0]), t([5.0, 6.0, 7.0])
    y = td_lambda_targets(r, d, pymarl_mask(f, d), q, GAMMA, LAM)
    # y1 = 1 + 0.9*7 = 7.3; y0 = 1 + 0.9 (0.5*6 + 0.5*7.3) = 6.985
    torch.testing.assert_close(y, t([6.985, 7.3]))


@pytest.mark.parametrize(("lam", "expected"), [(0.0, [6.4, 7.3]), (1.0, [7.57, 7.3])])
def test_lambda_extremes(lam: float, expected: list[float]) -> None:
    r, d, f, q = t([1.0, 1.0]), t([0.0, 0.0]), t([1.0, 1.0]), t([5.0, 6.0, 7.0])
    y = td_lambda_targets(r, d, pymarl_mask(f, d), q, GAMMA, lam)
    # lam=0: one-step r + g Q_{t+1}; lam=1: discounted return bootstrapped at the window end
    torch.testing.assert_close(y, t(expected))


def test_truncated_episode_followed_by_padding_bootstraps_from_its_own_next_state() -> None:
    # A one-step episode cut by a time limit inside a 3-step batch window: the target is
    # r0 + g Q1 = 2 + 0.9*4 = 5.6; the padded Q values (100) must not leak in.
    r, d, f, q = t([2.0, 0.0, 0.0]), t([0.0, 0.0, 0.0]), t([1.0, 0.0, 0.0]), t([1.0, 4.0, 100.0, 100.0])
    y = td_lambda_targets(r, d, pymarl_mask(f, d), q, GAMMA, LAM)
    torch.testing.assert_close(y, t([5.6, 0.0, 0.0]))
    h = t([0.0, 3.0, 50.0, 50.0])
    y_soft = soft_td_lambda_targets(r, d, pymarl_mask(f, d), q, h, GAMMA, LAM, alpha=0.1)
    # soft value of the truncation state: 4 + 0.1*3; 2 + 0.9*4.3 = 5.87
    torch.testing.assert_close(y_soft, t([5.87, 0.0, 0.0]))


def test_masked_and_released_agree_when_no_episode_ends_in_the_window() -> None:
    gen = torch.Generator().manual_seed(0)
    b, horizon = 5, 7
    r = torch.randn(b, horizon, generator=gen, dtype=torch.float64)
    d = torch.zeros(b, horizon, dtype=torch.float64)
    f = torch.ones(b, horizon, dtype=torch.float64)
    q = torch.randn(b, horizon + 1, generator=gen, dtype=torch.float64)
    h = torch.rand(b, horizon + 1, generator=gen, dtype=torch.float64)
    args = (r, d, pymarl_mask(f, d), q, h, 0.99, 0.4, 0.03)
    torch.testing.assert_close(
        soft_td_lambda_targets(*args, mask_entropy_after_termination=True),
        soft_td_lambda_targets(*args, mask_entropy_after_termination=False),
    )


def test_batch_rows_are_independent() -> None:
    rows = [
        (t([1.0, 2.0, 3.0]), t([0.0, 1.0, 0.0]), t([1.0, 1.0, 0.0]), t([10.0, 20.0, 30.0, 40.0])),
        (t([2.0, 0.0, 0.0]), t([0.0, 0.0, 0.0]), t([1.0, 0.0, 0.0]), t([1.0, 4.0, 100.0, 100.0])),
    ]
    stacked = [torch.cat(parts) for parts in zip(*rows, strict=True)]
    y = td_lambda_targets(stacked[0], stacked[1], pymarl_mask(stacked[2], stacked[1]), stacked[3], GAMMA, LAM)
    torch.testing.assert_close(y, t([10.9, 2.0, 0.0], [5.6, 0.0, 0.0]))


def test_shape_mismatch_names_the_shapes() -> None:
    with pytest.raises(ValueError, match=r"\[B, T\+1\]"):
        td_lambda_targets(t([1.0]), t([0.0]), t([1.0]), t([1.0]), GAMMA, LAM)
