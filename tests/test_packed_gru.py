"""The packed GRU (each episode unrolled over its own steps, hand-written backward) against nn.GRU."""

from __future__ import annotations

import pytest
import torch

from softqmix.algos.registry import build_learner
from softqmix.data.buffer import EpisodeBatch
from softqmix.data.live_steps import LiveSteps
from softqmix.envs.base import EnvInfo
from softqmix.nets.agent import RNNAgent
from softqmix.nets.packed_gru import PackedGRU, pack_plan
from tests.helpers import random_replay_batch


def test_pack_plan_is_time_major_longest_first() -> None:
    """Two episodes of 2 and 3 steps, 2 agents, in a [B=2, T=3, n=2] layout (row = b*6 + t*2 + agent)."""
    plan = pack_plan(torch.tensor([2, 3]), n_agents=2, steps=3)
    # step 0: episode 1 (longer) then episode 0; step 1 the same; step 2 only episode 1
    assert plan.rows.tolist() == [6, 7, 0, 1, 8, 9, 2, 3, 10, 11]
    assert plan.batch_sizes == (4, 4, 2)
    # each row after step 0 points at the same agent's row one step earlier
    assert plan.prev_rows.tolist() == [0, 1, 2, 3, 4, 5]
    assert plan.padded_rows == 12


@pytest.mark.parametrize("lengths", [[0, 2], [2, 4]])
def test_pack_plan_rejects_lengths_outside_the_steps(lengths: list[int]) -> None:
    with pytest.raises(ValueError, match=r"lie in 1\.\.3"):
        pack_plan(torch.tensor(lengths), n_agents=1, steps=3)


def test_backward_passes_gradcheck() -> None:
    torch.manual_seed(0)
    plan = pack_plan(torch.tensor([3, 1, 4]), n_agents=2, steps=4)
    gi = torch.randn(plan.packed_rows, 9, dtype=torch.float64, requires_grad=True)
    b_ih = torch.randn(9, dtype=torch.float64, requires_grad=True)
    w_hh = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    b_hh = torch.randn(9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, c, w, b: PackedGRU.apply(a, c, w, b, plan.batch_sizes, plan.prev_rows), (gi, b_ih, w_hh, b_hh)
    )


def test_agent_unroll_over_own_steps_equals_nn_gru_on_those_steps() -> None:
    """Values on every episode's steps and every parameter's gradient equal nn.GRU's over the padded batch (float64);
    the padding comes out 0."""
    torch.manual_seed(0)
    agent = RNNAgent(input_dim=7, hidden_dim=5, n_actions=4).double()
    inputs = torch.randn(4, 6, 3, 7, dtype=torch.float64)  # [B, T, n, d]
    lengths = torch.tensor([6, 1, 4, 4])
    inside = (torch.arange(6)[None] < lengths[:, None]).to(torch.float64)[..., None, None]
    weights = torch.randn(4, 6, 3, 4, dtype=torch.float64)

    packed = agent.unroll(inputs, pack_plan(lengths, n_agents=3, steps=6))
    padded = agent.unroll(inputs)
    torch.testing.assert_close(packed, padded * inside)
    assert packed[1, 1:].abs().sum() == 0

    params = list(agent.parameters())
    grads_packed = torch.autograd.grad((packed * weights).sum(), params)
    grads_padded = torch.autograd.grad((padded * inside * weights).sum(), params)
    for name, a, b in zip([n for n, _ in agent.named_parameters()], grads_packed, grads_padded, strict=True):
        torch.testing.assert_close(a, b, msg=name)


INFO = EnvInfo(n_agents=3, n_actions=5, obs_dim=6, state_dim=7, episode_limit=8)


def ragged_batch() -> EpisodeBatch:
    """Episodes that end at different steps: terminated at 2 and 5, one truncated at 8 (the window's end), one
    cut short at 6 without termination."""
    b = random_replay_batch(INFO, 4)
    for row, (length, terminated) in enumerate([(3, True), (6, True), (8, False), (6, False)]):
        b.filled[row, :length] = 1.0
        b.terminated[row, length - 1] = float(terminated)
    return b


@pytest.mark.parametrize(
    "algo",
    [
        {"name": "qmix"},
        {"name": "soft_qmix"},
        {"name": "soft_qmix", "mixer": "sum", "use_g": True, "g_residual": True, "weighted_td": True},
        {"name": "soft_qmix", "mixer": "qmix", "use_g": True, "double_q": False},
        {"name": "qplex", "use_g": True},
        {"name": "iql"},
    ],
    ids=["qmix", "soft_qmix", "soft_qmix_release_form", "hard_target_over_g", "qplex", "iql"],
)
def test_learner_losses_and_gradients_do_not_depend_on_unrolling_the_padding(algo: dict) -> None:
    """Every loss and diagnostic, and the gradient of every learned parameter, with the padding unrolled and
    every per-step computation run over the whole padded batch (algo.packed_unroll_max_live=0), or on the
    episodes' own steps only (=1)."""
    results = []
    for max_live in (0.0, 1.0):
        torch.manual_seed(0)
        learner = build_learner({**algo, "packed_unroll_max_live": max_live}, INFO, obs_last_action=True).double()
        with torch.no_grad():  # targets that differ from the online nets
            for p in learner.target_agent.parameters():
                p.add_(0.1 * torch.randn_like(p))
        b = EpisodeBatch(**{k: (v.double() if v.is_floating_point() else v) for k, v in vars(ragged_batch()).items()})
        torch.manual_seed(1)
        losses = learner.compute_losses(b)
        total = losses["loss/td"] + losses.get("loss/policy", 0.0)
        params = [p for p in learner.parameters() if p.requires_grad]
        results.append((losses, torch.autograd.grad(total, params, allow_unused=True)))
    (padded, padded_grads), (packed, packed_grads) = results
    assert padded.keys() == packed.keys()
    for key in padded:
        torch.testing.assert_close(packed[key], padded[key], msg=key)
    for a, b in zip(packed_grads, padded_grads, strict=True):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b)


def test_the_released_entropy_leak_unrolls_the_padding() -> None:
    """mask_entropy_after_termination=false reads the values after each episode's end, so they are computed."""
    learner = build_learner({"name": "soft_qmix", "mask_entropy_after_termination": False}, INFO, True)
    assert learner.unroll_lengths(ragged_batch()) is None
    masked = build_learner({"name": "soft_qmix", "packed_unroll_max_live": 1.0}, INFO, True)
    assert masked.unroll_lengths(ragged_batch()).tolist() == [4, 7, 9, 7]


@pytest.mark.parametrize(("max_live", "packed"), [(0.7, False), (0.8, True), (0.0, False), (1.0, True)])
def test_the_packed_path_is_taken_when_enough_of_the_batch_is_padding(max_live: float, packed: bool) -> None:
    """The ragged batch has 27 live steps of 4 x 9 (0.75); a batch of full-length episodes has no padding and
    takes the padded path below 1."""
    learner = build_learner({"name": "qmix", "packed_unroll_max_live": max_live}, INFO, True)
    assert (learner.unroll_lengths(ragged_batch()) is not None) is packed
    full = ragged_batch()
    full.filled.fill_(1.0)
    assert (learner.unroll_lengths(full) is not None) is (max_live == 1.0)


def test_a_batch_off_the_cpu_unrolls_the_padding() -> None:
    """The packed plan needs the lengths on the host; a batch on another device keeps nn.GRU's padded path."""
    learner = build_learner({"name": "qmix"}, INFO, True)
    on_meta = EpisodeBatch(**{k: v.to("meta") for k, v in vars(ragged_batch()).items()})
    assert learner.unroll_lengths(on_meta) is None


def test_live_steps_take_the_episodes_cells_and_put_zeros_elsewhere() -> None:
    grid = torch.arange(2 * 3 * 2).reshape(2, 3, 2).float()  # [B=2, S=3, 2]
    live = LiveSteps.of(torch.tensor([1, 3]), steps=3)
    rows = live.take(grid)
    assert rows.tolist() == [[0, 1], [6, 7], [8, 9], [10, 11]]
    back = live.put(rows * 10)
    assert back.tolist() == [[[0, 10], [0, 0], [0, 0]], [[60, 70], [80, 90], [100, 110]]]
    everything = LiveSteps.everything(2, 3)
    torch.testing.assert_close(everything.put(everything.take(grid)), grid)
