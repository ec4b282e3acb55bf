"""FOP: the mixer's weights stay positive and its value is the factorised form; the targets by hand."""

from __future__ import annotations

import math

import pytest
import torch

from softqmix.algos.registry import build_learner
from softqmix.data.buffer import EpisodeBatch
from softqmix.envs.base import EnvInfo
from softqmix.nets.fop_mixer import FOPMixer
from tests.helpers import train_runs_in_parallel

N, A, S = 3, 4, 6


def test_lambda_is_positive_even_with_negative_weights() -> None:
    torch.manual_seed(0)
    mixer = FOPMixer(N, A, S, n_heads=4, embed_dim=32)
    with torch.no_grad():
        for layer in [*mixer.weights.keys, *mixer.weights.agent_weights, *mixer.weights.action_weights]:
            layer.weight.mul_(-5.0)
    state = torch.randn(64, S) * 10
    actions = torch.nn.functional.one_hot(torch.randint(0, A, (64, N)), A).float()
    assert (mixer.lambdas(state, actions) > 0).all()


def test_joint_value_is_the_factorised_form_with_unit_gradient_in_q() -> None:
    torch.manual_seed(1)
    mixer = FOPMixer(N, A, S, n_heads=4, embed_dim=32)
    state, actions = torch.randn(5, S), torch.randint(0, A, (5, N))
    q_taken = torch.randn(5, N, requires_grad=True)
    values = torch.randn(5, N)
    q_tot = mixer(q_taken, values, state, actions, A)
    lam = mixer.lambdas(state, torch.nn.functional.one_hot(actions, A).float())
    expected = (lam * (q_taken - values)).sum(-1) + values.sum(-1) + mixer.value(state).squeeze(-1)
    torch.testing.assert_close(q_tot, expected)
    q_tot.sum().backward()
    torch.testing.assert_close(q_taken.grad, torch.ones_like(q_taken))  # as in the authors' code


def test_soft_value_by_hand() -> None:
    module = build_learner({"name": "fop"}, EnvInfo(2, 2, 3, 4, 1), False)
    # 0.5 log(e^{1/0.5} + e^{2/0.5}) = 2 + 0.5 log(1 + e^{-2})
    assert module.soft_values(torch.tensor([1.0, 2.0]), 0.5).item() == pytest.approx(
        2 + 0.5 * math.log(1 + math.exp(-2))
    )


def one_step_batch(reward: float) -> EpisodeBatch:
    """One terminated one-step episode of 2 agents; after it, actions 0 and 1 are available."""
    batch = EpisodeBatch.zeros(1, EnvInfo(n_agents=2, n_actions=3, obs_dim=3, state_dim=4, episode_limit=1))
    batch.obs.normal_()
    batch.state.normal_()
    batch.avail[:] = torch.tensor([1.0, 1.0, 0.0])
    batch.reward[0, 0], batch.terminated[0, 0], batch.filled[0, 0] = reward, 1.0, 1.0
    return batch


@pytest.mark.parametrize(("target", "entropy_bonus"), [("soft_td_lambda", 0.0), ("code", 0.5 * math.log(2))])
def test_targets_of_a_terminated_step(target: str, entropy_bonus: float) -> None:
    module = build_learner({"name": "fop", "target": target}, EnvInfo(2, 3, 3, 4, 1), False)
    with torch.no_grad():  # a uniform policy: log π = −log 2 over the two available actions
        module.policy.fc2.weight.zero_()
        module.policy.fc2.bias.zero_()
    losses = module.compute_losses(one_step_batch(reward=3.0))
    # the soft target stops at the termination: y = r. The authors' code subtracts α · mean_i log π_i(a'_{t+1})
    # after TD(λ) even there: y = r + α log 2 with α = 0.5 at the start of training.
    assert losses["train/target_mean"].item() == pytest.approx(3.0 + entropy_bonus, abs=1e-6)
    assert math.isfinite(losses["loss/policy"].item()) and losses["loss/critic2"].item() >= 0


def test_short_run_spreads_the_policy_over_the_suboptimal_actions(compose_train, tmp_path) -> None:
    """The paper (§5.1) reports FOP's policy spreading over the suboptimal joint actions of its matrix game.

    Measured with `python train.py algo=fop t_max=3000 seed=<s>` for seeds 0-4: P(A) between 0.034 and 0.066 and
    P(B), P(C) between 0.433 and 0.529 for both agents in every seed. Asserted on seeds 0-2, with margins:
    P(A) < 0.15 and P(B), P(C) > 0.3 for every agent of every seed.
    """
    runs = [
        (
            compose_train(["algo=fop", "t_max=3000", "logger=csv", "trainer.enable_progress_bar=false", f"seed={s}"]),
            tmp_path / f"seed{s}",
        )
        for s in range(3)
    ]
    policies = [summary["matrix_game"]["policy_probs"] for summary in train_runs_in_parallel(runs)]
    for probs in (agent for policy in policies for agent in policy):
        assert probs[0] < 0.15 and min(probs[1], probs[2]) > 0.3, policies
