"""MAPPO: chunked recurrent training reproduces the rollout policy, and a short run learns the matrix game."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from softqmix.algos.registry import build_learner
from softqmix.data.collector import EpisodeCollector
from softqmix.data.rollout import Minibatch
from softqmix.envs import env_factory
from softqmix.envs.pool import EnvPool
from softqmix.train import train
from tests.helpers import MPE_SIMPLE

# The matrix game of the paper: a uniform policy earns (8 − 4·12 + 4·0) / 9 = −4.44 per episode.
UNIFORM_RETURN = -40.0 / 9.0


def prepared_mpe_rollout(compose_train, chunk_length: int):
    cfg = compose_train(["algo=mappo", "env=mpe/spread_simple", f"algo.chunk_length={chunk_length}"])
    collector = EpisodeCollector(EnvPool(env_factory(MPE_SIMPLE), 2, name="mpe"), seed=0)
    module = build_learner(cfg.algo, collector.info, False, t_max=1000)
    batch, _ = collector.collect(module.actor, explore=True)
    collector.close()
    return module, module.prepare_rollout(batch)


@pytest.mark.parametrize("chunk_length", [1, 8, 25])
def test_chunks_started_from_rollout_hidden_states_give_the_rollout_policy(compose_train, chunk_length) -> None:
    torch.manual_seed(0)
    module, rollout = prepared_mpe_rollout(compose_train, chunk_length)
    rows = torch.arange(rollout.batch.batch_size)
    full = module.policy.unroll(rollout.inputs)[:, :-1]
    torch.testing.assert_close(module._chunked_logits(rollout, rows), full, atol=1e-5, rtol=1e-5)
    # so before any update the PPO ratio is 1 everywhere: nothing is clipped, no KL
    losses = module.compute_losses(Minibatch(rollout, rows, epoch=0))
    assert losses["train/clip_fraction"].item() == 0.0
    assert abs(losses["train/approx_kl"].item()) < 1e-6


def test_chunks_after_an_episode_ends_are_skipped_without_changing_losses_or_gradients(compose_train) -> None:
    """Episodes of 25, 17, 9 and 3 steps in one rollout: chunks of 8 that start after an episode's end are not
    unrolled, and the losses and every gradient equal those of unrolling every chunk of the padded rollout."""
    torch.manual_seed(0)
    cfg = compose_train(["algo=mappo", "env=mpe/spread_simple", "algo.chunk_length=8"])
    collector = EpisodeCollector(EnvPool(env_factory(MPE_SIMPLE), 4, name="mpe"), seed=0)
    module = build_learner(cfg.algo, collector.info, False, t_max=1000)
    batch, _ = collector.collect(module.actor, explore=True)
    collector.close()
    for i, length in enumerate([25, 17, 9, 3]):  # cut the episodes short, as battles that end early are
        batch.filled[i, length:] = 0.0
        batch.terminated[i, length - 1] = 1.0
        batch.avail[i, length + 1 :] = 0.0
        batch.obs[i, length + 1 :] = 0.0
    rollout = module.prepare_rollout(batch)
    rows = torch.arange(4)

    unrolled: list[int] = []
    original = module.policy.unroll_sequences
    module.policy.unroll_sequences = lambda seqs, hidden: unrolled.append(len(seqs)) or original(seqs, hidden)
    fast = module.compute_losses(Minibatch(rollout, rows, epoch=0))
    fast_grads = torch.autograd.grad(fast["loss/policy"], list(module.policy.parameters()))
    n = module.env_info.n_agents
    assert unrolled == [(4 + 3 + 2 + 1) * n]  # chunks starting at 0, 8, 16, 24 that lie inside each episode

    every_chunk = module._chunked_logits
    module._chunked_logits = lambda rollout, rows: every_chunk(rollout, rows, skip_unplayed=False)
    plain = module.compute_losses(Minibatch(rollout, rows, epoch=0))
    plain_grads = torch.autograd.grad(plain["loss/policy"], list(module.policy.parameters()))
    for key in ("loss/policy", "train/entropy", "train/clip_fraction", "train/approx_kl"):
        torch.testing.assert_close(fast[key], plain[key], atol=1e-6, rtol=1e-5)
    for a, b in zip(fast_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_rollout_preparation_normalises_advantages_over_real_steps(compose_train) -> None:
    torch.manual_seed(0)
    _, rollout = prepared_mpe_rollout(compose_train, 8)
    mask = rollout.batch.filled.unsqueeze(-1).expand_as(rollout.advantages)
    real = rollout.advantages[mask > 0]
    assert real.mean().abs().item() < 1e-4 and real.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-3)
    assert (rollout.advantages[mask == 0] == 0).all()


def test_short_mappo_run_improves_on_the_uniform_policy(compose_train, tmp_path: Path) -> None:
    cfg = compose_train(["algo=mappo", "t_max=3000", "log_interval=500", "trainer.enable_progress_bar=false"])
    summary = train(cfg, tmp_path)
    with open(tmp_path / "metrics.csv", newline="") as handle:
        returns = [float(r["train/return_mean"]) for r in csv.DictReader(handle) if r.get("train/return_mean")]
    # measured with `python train.py algo=mappo t_max=3000`: −0.78, −0.02, 0.00 at 1k, 2k, 3k env steps
    # (both agents end on the B/C plateau, like QMIX)
    assert returns[-1] > UNIFORM_RETURN + 3.0
    assert summary["matrix_game"]["q_tot"] is None and len(summary["matrix_game"]["policy_probs"]) == 2


def test_overlapping_collection_is_refused_with_the_algo_named(compose_train) -> None:
    from softqmix.config import Collection, validate_config
    from softqmix.errors import ConfigError
    from softqmix.loop import TrainingLoop

    cfg = compose_train(["algo=mappo", "env=mpe/spread_simple"])
    collector = EpisodeCollector(EnvPool(env_factory(MPE_SIMPLE), 1, name="mpe"), seed=0)
    loop = TrainingLoop(cfg.algo, collector.info, False, {"t_max": 1000})
    for mode in (Collection.thread, Collection.process):
        refused = f"pool.collection={mode.value} .* algo=mappo.*; set pool.collection=serial"
        with pytest.raises(ConfigError, match=refused):  # at start-up, before any env is built
            validate_config(compose_train(["algo=mappo", "env=mpe/spread_simple", f"pool.collection={mode.value}"]))
        with pytest.raises(ConfigError, match=refused):  # and for a loop built in code
            loop.attach_envs(collector, collector, mode, collection_seed=1)
    collector.close()
