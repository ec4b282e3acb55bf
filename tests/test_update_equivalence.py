"""The fast update computes what the plain formulation computes.

The value-factorisation learner applies g with a gradient only to the taken actions and runs g over all
actions without autograd; the QMIX mixer uses broadcast sums instead of batched matmuls. Here every loss,
target and diagnostic is recomputed the plain way (g over every action with autograd, then gathered; the
mixer as pymarl2 writes it) from the same nets and the same random draws, and compared within float
tolerance, for the released Soft-QMIX form, the paper form, QMIX and QPLEX.
"""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F

from softqmix.algos.action_selection import greedy_actions, sample_softmax
from softqmix.algos.registry import build_learner
from softqmix.algos.targets import soft_td_lambda_targets, td_lambda_targets
from softqmix.data.buffer import EpisodeBatch
from softqmix.envs.base import EnvInfo
from softqmix.nets.mixers import QMixer
from tests.helpers import random_replay_batch

INFO = EnvInfo(n_agents=3, n_actions=5, obs_dim=6, state_dim=7, episode_limit=6)
FORMS = {
    "release": {"name": "soft_qmix", "mixer": "sum", "behaviour": "softmax", "soft_target": True, "use_f": True,
                "use_g": True, "g_residual": True, "weighted_td": True},
    "paper": {"name": "soft_qmix", "mixer": "qmix", "behaviour": "softmax", "soft_target": True, "use_f": True,
              "use_g": True},
    "no_abs_hard": {"name": "soft_qmix", "mixer": "qmix", "use_g": True, "nonneg": False, "double_q": False},
    "qmix": {"name": "qmix"},
    "qplex": {"name": "qplex", "use_g": True},
}  # fmt: skip


def batch(seed: int = 0) -> EpisodeBatch:
    b = random_replay_batch(INFO, 4, seed)
    b.filled[:, :5] = 1.0
    b.filled[0, 3:] = 0.0  # a short episode that terminates at step 2
    b.terminated[0, 2] = 1.0
    return b


def plain_losses(learner, b: EpisodeBatch) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    """The formulation before the fast path: g over all actions with autograd, gathered afterwards."""
    cfg = learner.cfg
    mask = b.filled.clone()
    mask[:, 1:] = mask[:, 1:] * (1 - b.terminated[:, :-1])
    state, avail = b.state, b.avail
    inputs = learner.agent_inputs(b)
    q = learner.agent.unroll(inputs)
    g_all = learner.g(q, state)
    g_taken = g_all[:, :-1].gather(-1, b.actions.unsqueeze(-1)).squeeze(-1)
    q_tot = learner.mix(learner.mixer, g_taken, state[:, :-1], b.actions, g_all[:, :-1].detach(), avail[:, :-1])
    with torch.no_grad():
        target_g = learner.target_g(learner.target_agent.unroll(inputs), state)
        if cfg.soft_target:
            next_actions, log_probs = sample_softmax(learner.f(g_all.detach(), state) / cfg.alpha, avail)
            entropy = -log_probs.gather(-1, next_actions.unsqueeze(-1)).squeeze(-1).sum(-1)
        else:
            next_actions = greedy_actions(g_all.detach() if cfg.double_q else target_g, avail)
            entropy = torch.zeros(next_actions.shape[:-1])
        taken = target_g.gather(-1, next_actions.unsqueeze(-1)).squeeze(-1)
        target_tot = learner.mix(learner.target_mixer, taken, state, next_actions, target_g, avail)
        if cfg.soft_target:
            y = soft_td_lambda_targets(
                b.reward, b.terminated, mask, target_tot, entropy, cfg.gamma, cfg.td_lambda, cfg.alpha
            )
        else:
            y = td_lambda_targets(b.reward, b.terminated, mask, target_tot, cfg.gamma, cfg.td_lambda)
    td = q_tot - y
    out = {"train/target_mean": (y * mask).sum() / mask.sum(), "train/q_taken_mean": (q_tot * mask).sum() / mask.sum()}
    weights = mask
    if cfg.use_f or cfg.weighted_td:
        error = q_tot.detach() - learner.f(g_taken.detach().unsqueeze(-1), state[:, :-1]).squeeze(-1).sum(-1)
        if cfg.use_f:
            out["loss/policy"] = (0.5 * error.pow(2) * mask).sum() / mask.sum()
        if cfg.weighted_td:
            weights = mask * torch.where((error > 0) == (td.detach() < 0), 0.5, 1.0)
    out["loss/td"] = (0.5 * td.pow(2) * weights).sum() / weights.sum()
    return out


@pytest.mark.parametrize("form", sorted(FORMS))
def test_fast_losses_and_gradients_equal_the_plain_ones(form: str) -> None:
    torch.manual_seed(0)
    learner = build_learner(FORMS[form], INFO, obs_last_action=True)
    with torch.no_grad():  # targets that differ from the online nets
        for p in [*learner.target_agent.parameters(), *learner.target_g.parameters()]:
            p.add_(0.1 * torch.randn_like(p))
    b = batch()
    torch.manual_seed(1)
    fast = learner.compute_losses(b)
    fast_grads = torch.autograd.grad(fast["loss/td"], list(learner.agent.parameters()))
    torch.manual_seed(1)
    plain = plain_losses(learner, b)
    plain_grads = torch.autograd.grad(plain["loss/td"], list(learner.agent.parameters()))
    for key, value in plain.items():
        torch.testing.assert_close(fast[key], value, rtol=1e-5, atol=1e-6, msg=key)
    for a, p in zip(fast_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, p, rtol=1e-4, atol=1e-6)


def test_broadcast_qmix_mixer_equals_the_batched_matmul_form() -> None:
    torch.manual_seed(0)
    mixer = QMixer(n_agents=4, state_dim=7, embed_dim=8, hypernet_embed=16, nonneg=True)
    utilities, state = torch.randn(3, 5, 4), torch.randn(3, 5, 7)
    q, s = utilities.reshape(-1, 1, 4), state.reshape(-1, 7)
    w1, w2 = mixer.w1(s).view(-1, 4, 8).abs(), mixer.w2(s).view(-1, 8, 1).abs()
    hidden = F.elu(torch.bmm(q, w1) + mixer.b1(s).unsqueeze(1))
    expected = (torch.bmm(hidden, w2).squeeze(-1) + mixer.v(s)).view(3, 5)
    torch.testing.assert_close(mixer(utilities, state), expected)


def test_compiled_g_equals_the_eager_one() -> None:
    """trainer.compile=true routes g's no-autograd path through torch.compile; same values, and a new number of
    steps does not need a new signature (dynamic shapes)."""
    torch.manual_seed(0)
    learner = build_learner(FORMS["release"], INFO, obs_last_action=True)
    b = batch()
    torch.manual_seed(1)
    eager = learner.compute_losses(b)
    learner.compile_hot_paths()
    torch.manual_seed(1)
    compiled = learner.compute_losses(b)
    for key, value in eager.items():
        torch.testing.assert_close(compiled[key], value, rtol=1e-5, atol=1e-5, msg=key)
    shorter = batch(seed=1)
    shorter = EpisodeBatch(
        **{k: v[:, : (4 if k in ("obs", "state", "avail") else 3)] for k, v in vars(shorter).items()}
    )
    assert torch.isfinite(learner.compute_losses(shorter)["loss/td"])


@pytest.mark.parametrize("form", ["paper", "qmix"])
def test_the_target_unroll_runs_in_its_thread_with_the_same_losses(form: str) -> None:
    """`overlap_target_unroll` moves the target network's unroll to a worker thread, without autograd, while
    the online network unrolls; every loss and diagnostic is bit for bit what the unroll in line gives."""
    losses = {}
    for overlap in (False, True):
        torch.manual_seed(0)
        learner = build_learner({**FORMS[form], "overlap_target_unroll": overlap}, INFO, obs_last_action=True)
        with torch.no_grad():
            for p in learner.target_agent.parameters():
                p.add_(0.1 * torch.randn_like(p))
        calls: list[tuple[str, bool]] = []
        unroll = learner.target_agent.unroll

        def spy(*args, _unroll=unroll, _calls=calls):  # type: ignore[no-untyped-def]
            _calls.append((threading.current_thread().name, torch.is_grad_enabled()))
            return _unroll(*args)

        learner.target_agent.unroll = spy
        torch.manual_seed(1)
        losses[overlap] = learner.compute_losses(batch())
        assert len(calls) == 1 and calls[0][1] is False, calls
        assert calls[0][0].startswith("target-unroll") is overlap, calls
    assert losses[True].keys() == losses[False].keys()
    for key, value in losses[False].items():
        assert torch.equal(losses[True][key], value), key
