"""The settings a pymarl2/EPyMARL user expects, and the value diagnostics, against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from softqmix.algos.registry import build_learner
from softqmix.algos.rewards import RewardTransform
from softqmix.algos.value_factorisation import value_diagnostics
from softqmix.data.buffer import EpisodeBatch
from softqmix.envs.base import EnvInfo
from softqmix.eval.epsilon_actor import EpsilonGreedyActor
from softqmix.loop.module import greedy_action_counts
from softqmix.nets.agent import MLPAgent
from tests.helpers import SeededRandomActor

INFO = EnvInfo(n_agents=2, n_actions=3, obs_dim=4, state_dim=5, episode_limit=3)


def random_batch(seed: int = 0, episodes: int = 4) -> EpisodeBatch:
    gen = torch.Generator().manual_seed(seed)
    batch = EpisodeBatch.zeros(episodes, INFO)
    batch.obs.copy_(torch.randn(batch.obs.shape, generator=gen))
    batch.state.copy_(torch.randn(batch.state.shape, generator=gen))
    batch.avail.fill_(1.0)
    batch.actions.copy_(torch.randint(0, 3, batch.actions.shape, generator=gen))
    batch.reward.copy_(torch.randn(batch.reward.shape, generator=gen))
    batch.filled.fill_(1.0)
    return batch


def test_reward_standardisation_uses_the_running_moments_of_real_steps() -> None:
    """Rewards 1, 3, 5 on real steps (the fourth slot is padding): batch mean 3, unbiased variance 4. Merged
    into the prior (mean 0, variance 1, count 1e-4): mean = 3 * 3 / 3.0001, variance =
    (1e-4 + 4 * 3 + 9 * 1e-4 * 3 / 3.0001) / 3.0001."""
    batch = EpisodeBatch.zeros(2, EnvInfo(1, 2, 1, 1, 2))
    batch.reward.copy_(torch.tensor([[1.0, 3.0], [5.0, 100.0]]))
    batch.filled.copy_(torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    transform = RewardTransform(scale=2.0, standardise=True)
    out = transform(batch)
    mean = 9.0 / 3.0001
    var = (1e-4 + 12.0 + 9.0 * 1e-4 * 3.0 / 3.0001) / 3.0001
    assert transform.mean.item() == pytest.approx(mean) and transform.var.item() == pytest.approx(var)
    assert transform.count.item() == pytest.approx(3.0001)
    expected = 2.0 * (torch.tensor([[1.0, 3.0], [5.0, 100.0]]) - mean) / var**0.5
    torch.testing.assert_close(out.reward, expected)
    assert batch.reward[0, 0] == 1.0  # the replay buffer's copy is untouched


def test_reward_scale_alone_multiplies_and_the_default_passes_the_batch_through() -> None:
    batch = random_batch()
    torch.testing.assert_close(RewardTransform(scale=0.1)(batch).reward, 0.1 * batch.reward)
    assert RewardTransform()(batch) is batch


def test_learner_sees_transformed_rewards_and_checkpoints_their_statistics() -> None:
    learner = build_learner({"name": "qmix", "standardise_rewards": True, "batch_size": 4}, INFO, False)
    learner.update(random_batch(), learner.make_optimizers())
    state = learner.state_dict()
    assert state["rewards.count"].item() == pytest.approx(1e-4 + 4 * 3)  # 4 episodes of 3 real steps


def test_target_copies_counted_in_updates() -> None:
    learner = build_learner(
        {"name": "qmix", "target_update_interval": 3, "target_update_unit": "updates", "batch_size": 4}, INFO, False
    )
    optimizers = learner.make_optimizers()
    same = lambda: all(  # noqa: E731
        torch.equal(a, b) for a, b in zip(learner.agent.parameters(), learner.target_agent.parameters(), strict=True)
    )
    for update in range(1, 7):
        learner.update(random_batch(seed=update), optimizers)
        assert same() == (update % 3 == 0), update  # copied at updates 3 and 6, drifted in between
    assert learner.progress.last_target_sync_update == 6 and learner.progress.episodes == 0


def test_squared_td_loss_is_twice_the_halved_one() -> None:
    losses = {}
    for loss in ("half_mse", "mse"):
        torch.manual_seed(0)
        learner = build_learner({"name": "qmix", "td_loss": loss, "batch_size": 4}, INFO, False)
        torch.manual_seed(1)
        losses[loss] = learner.compute_losses(random_batch())["loss/td"]
    torch.testing.assert_close(losses["mse"], 2 * losses["half_mse"])


def test_mlp_agent_has_no_memory_and_steps_like_it_unrolls() -> None:
    torch.manual_seed(0)
    agent = MLPAgent(input_dim=4, hidden_dim=8, n_actions=3)
    inputs = torch.randn(2, 5, 3, 4)
    q = agent.unroll(inputs)
    changed = inputs.clone()
    changed[:, :2] = torch.randn(2, 2, 3, 4)  # other earlier inputs
    torch.testing.assert_close(agent.unroll(changed)[:, 2:], q[:, 2:])
    stepped, _ = agent.step(inputs[:, 3], agent.initial_hidden(6))
    torch.testing.assert_close(stepped, q[:, 3])


def test_mlp_agent_trains_in_a_learner() -> None:
    learner = build_learner({"name": "qmix", "agent": "mlp", "batch_size": 4}, INFO, False)
    assert isinstance(learner.agent, MLPAgent)
    losses = learner.update(random_batch(), learner.make_optimizers())
    assert torch.isfinite(losses["loss/td"])


def test_value_diagnostics_by_hand() -> None:
    q = torch.tensor([[[[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]]]])  # [B=1, T=1, n=2, A=3]
    avail = torch.tensor([[[[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]]])  # agent 2 has one legal action: no gap
    mask = torch.ones(1, 1)
    out = value_diagnostics(torch.tensor([[-4.0]]), torch.tensor([[2.0]]), mask, q, avail, mask)
    assert out["train/action_gap_mean"].item() == pytest.approx(1.0)  # agent 1: 3 - 2
    assert out["train/q_tot_abs_mean"].item() == 4.0 and out["train/target_abs_mean"].item() == 2.0
    avail[..., 1, 2] = 1.0  # agent 2 may now choose 0 or 2: gap |1 - 0| = 1, mean over agents (1 + 1) / 2
    out = value_diagnostics(torch.tensor([[-4.0]]), torch.tensor([[2.0]]), mask, q, avail, mask)
    assert out["train/action_gap_mean"].item() == pytest.approx(1.0)


def test_greedy_action_counts_count_real_steps_per_agent() -> None:
    batch = EpisodeBatch.zeros(2, INFO)
    batch.actions.copy_(torch.tensor([[[0, 2], [0, 2], [1, 1]], [[2, 2], [1, 0], [0, 0]]]))
    batch.filled.copy_(torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]))  # episode 2 lasted one step
    counts = greedy_action_counts(batch, 3)
    assert counts.tolist() == [[2.0, 1.0, 1.0], [0.0, 1.0, 3.0]]


def test_epsilon_greedy_evaluation_replaces_greedy_actions_with_legal_ones() -> None:
    class Greedy(SeededRandomActor):
        def act(self, obs, state, avail, last, hidden, explore):  # type: ignore[no-untyped-def]
            return torch.zeros(obs.shape[:2], dtype=torch.long), hidden

    obs, state = torch.zeros(500, 2, 4), torch.zeros(500, 5)
    avail = torch.tensor([1.0, 0.0, 1.0]).expand(500, 2, 3)
    last = torch.zeros(500, 2, dtype=torch.long)
    greedy, _ = EpsilonGreedyActor(Greedy(3, 0), 0.0, seed=0).act(obs, state, avail, last, torch.zeros(500), False)
    assert (greedy == 0).all()
    noisy, _ = EpsilonGreedyActor(Greedy(3, 0), 1.0, seed=0).act(obs, state, avail, last, torch.zeros(500), False)
    assert not (noisy == 1).any()  # never an unavailable action
    assert 0.4 < (noisy == 2).float().mean().item() < 0.6  # uniform over the two legal ones


def test_optimizer_choice_and_its_settings_reach_every_optimizer() -> None:
    cfg = {"name": "soft_qmix", "use_f": True, "optimizer": "rmsprop", "rmsprop_alpha": 0.9, "rmsprop_eps": 1e-3}
    optimizers = build_learner(cfg, INFO, False).make_optimizers()
    assert len(optimizers) == 2  # critic (agent net, g, mixer) and f
    for opt in optimizers:
        assert isinstance(opt, torch.optim.RMSprop)
        assert opt.defaults["alpha"] == 0.9 and opt.defaults["eps"] == 1e-3
    assert all(isinstance(o, torch.optim.Adam) for o in build_learner({"name": "qmix"}, INFO, False).make_optimizers())


def test_a_cpu_acting_copy_refreshed_after_each_update_trains_exactly_like_the_shared_actor(
    compose_train, tmp_path
) -> None:
    """The GPU path acts on the CPU with a copy of the nets refreshed after every update, drawing from the
    same RNG; forced on here (trainer.separate_actor=true) it must give the very same run as the CPU path."""
    from softqmix.train import train

    runs = {}
    for separate in ("false", "true"):
        cfg = compose_train(
            ["t_max=600", "test_interval=200", "algo.batch_size=8", "algo.buffer_size=64", "logger=csv",
             "print_report=false", "trainer.enable_progress_bar=false", f"trainer.separate_actor={separate}"]
        )  # fmt: skip
        runs[separate] = train(cfg, tmp_path / separate)
    assert runs["true"]["updates"] == runs["false"]["updates"] > 0
    assert [t["returns"] for t in runs["true"]["tests"]] == [t["returns"] for t in runs["false"]["tests"]]
    assert runs["true"]["matrix_game"]["q_tot"] == runs["false"]["matrix_game"]["q_tot"]


@pytest.mark.parametrize("bound", [None, 1e6])
def test_an_update_never_waits_for_the_host_except_for_its_finite_check(monkeypatch, bound: float | None) -> None:
    """On a GPU every conversion of a tensor to a Python number is a device round trip. Counted here on the
    CPU by intercepting them: one update of Soft-QMIX with reward standardisation makes exactly one (the
    check that the losses are finite, with trainer.divergence_bound folded into it); its losses stay tensors.
    A learner on a GPU unrolls the padding (the packed GRU reads the episode lengths on the host), so that path
    is the one counted here."""
    learner = build_learner(
        {"name": "soft_qmix", "mixer": "qmix", "use_f": True, "use_g": True, "soft_target": True,
         "behaviour": "softmax", "weighted_td": True, "standardise_rewards": True, "batch_size": 4,
         "packed_unroll_max_live": 0.0},
        INFO,
        False,
    )  # fmt: skip
    learner.divergence_bound = bound
    optimizers = learner.make_optimizers()
    syncs = []
    for name in ("__bool__", "item", "__float__", "__int__", "tolist"):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _original=original, _name=name):  # type: ignore[no-untyped-def]
            syncs.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, spy)
    losses = learner.update(random_batch(), optimizers)
    monkeypatch.undo()
    assert syncs == ["__bool__"], syncs
    assert all(isinstance(v, torch.Tensor) for v in losses.values())
