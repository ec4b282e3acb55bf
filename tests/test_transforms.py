"""g and f preserve each agent's action order (IGM); without abs() they need not."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softqmix.algos.action_selection import greedy_actions, masked_logits
from softqmix.algos.registry import build_learner
from softqmix.algos.value_factorisation import ValueFactorisation
from softqmix.envs.base import EnvInfo
from softqmix.nets.transforms import AffineF, MonotoneG

N_AGENTS, STATE_DIM, N_ACTIONS = 3, 5, 6


def _sorted_values(seed: int, batch: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    values = (torch.randn(batch, N_AGENTS, N_ACTIONS, generator=gen) * 5).sort(dim=-1).values
    state = torch.randn(batch, STATE_DIM, generator=gen) * 3
    return values, state


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), residual=st.booleans())
def test_g_is_order_preserving(seed: int, residual: bool) -> None:
    torch.manual_seed(seed)
    g = MonotoneG(N_AGENTS, STATE_DIM, hidden=16, hypernet_embed=32, residual=residual, nonneg=True)
    values, state = _sorted_values(seed)
    out = g(values, state)
    steps = out.diff(dim=-1)
    if residual:  # dg/dx >= 1: strictly increasing
        assert (steps > 0).all()
    else:
        assert (steps >= -1e-6).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_f_is_order_preserving(seed: int) -> None:
    torch.manual_seed(seed)
    f = AffineF(N_AGENTS, STATE_DIM, hypernet_embed=32, nonneg=True)
    values, state = _sorted_values(seed)
    assert (f(values, state).diff(dim=-1) >= -1e-6).all()


def test_without_nonneg_the_transforms_can_reverse_the_order() -> None:
    values = torch.tensor([[[-1.0, 0.0, 2.0]]])  # one agent, increasing
    state = torch.zeros(1, 2)
    f = AffineF(1, 2, hypernet_embed=4, nonneg=False)
    g = MonotoneG(1, 2, hidden=1, hypernet_embed=4, residual=False, nonneg=False)
    with torch.no_grad():
        for p in [*f.parameters(), *g.parameters()]:
            p.zero_()
        f.w[-1].bias.fill_(-1.0)  # w(s) = -1
        g.w1[-1].bias.fill_(1.0)
        g.w2[-1].bias.fill_(-1.0)  # g(x) = -ELU(x)
    assert (f(values, state).diff(dim=-1) < 0).all()
    assert (g(values, state).diff(dim=-1) < 0).all()


def _module(algo: dict[str, object]) -> ValueFactorisation:
    info = EnvInfo(n_agents=N_AGENTS, n_actions=N_ACTIONS, obs_dim=4, state_dim=STATE_DIM, episode_limit=5)
    return build_learner({"name": "soft_qmix", **algo}, info, True)


PAPER_FORM = {"mixer": "qmix", "behaviour": "softmax", "soft_target": True, "use_f": True, "use_g": True}
RELEASED_FORM = {**PAPER_FORM, "mixer": "sum", "g_residual": True, "weighted_td": True}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), released=st.booleans())
def test_igm_training_policy_mode_equals_greedy_q(seed: int, released: bool) -> None:
    torch.manual_seed(seed)
    module = _module(RELEASED_FORM if released else PAPER_FORM)
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(16, N_AGENTS, N_ACTIONS, generator=gen) * 3
    state = torch.randn(16, STATE_DIM, generator=gen)
    avail = (torch.rand(16, N_AGENTS, N_ACTIONS, generator=gen) > 0.3).float()
    avail[..., 0] = 1.0  # at least one legal action
    with torch.no_grad():
        probs = torch.softmax(masked_logits(module.policy_logits(q, state), avail), dim=-1)
    mode = probs.argmax(-1)
    greedy = greedy_actions(q, avail)
    # ties in probability (f's slope can be ~0) must still include the greedy action
    assert torch.all(
        probs.gather(-1, greedy.unsqueeze(-1)).squeeze(-1) >= probs.gather(-1, mode.unsqueeze(-1)).squeeze(-1) - 1e-6
    )
    assert torch.all(avail.gather(-1, mode.unsqueeze(-1)) > 0)
