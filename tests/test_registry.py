"""Every learner in the registry × every env family trains a tiny budget end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from softqmix.algos.registry import learner_class
from softqmix.train import train
from tests.fakes import smacv2 as fake_smacv2

ALGOS = {
    # value factorisation: a buffer just big enough for the tiny runs
    "iql": ["algo.batch_size=2", "algo.buffer_size=8"],
    "vdn": ["algo.batch_size=2", "algo.buffer_size=8"],
    "qmix": ["algo.batch_size=2", "algo.buffer_size=8"],
    "soft_qmix": ["algo.batch_size=2", "algo.buffer_size=8"],
    "mappo": ["algo.rollout_episodes=4", "algo.ppo_epochs=2"],
    "fop": ["algo.batch_size=2", "algo.buffer_size=8", "algo.burn_in_episodes=2"],
}
ENVS = {  # env config, t_max
    "matrix/nonmonotonic": 40,
    "mpe/spread_simple": 200,
    "smax/protoss_5v5": 300,
    "smacv2/protoss_5v5": 300,
}


@pytest.mark.parametrize("env", sorted(ENVS))
@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_tiny_run(compose_train, tmp_path: Path, monkeypatch, algo: str, env: str) -> None:
    if env.startswith("smacv2/"):
        fake_smacv2.install(monkeypatch)
    cfg = compose_train(
        [
            f"algo={algo}",
            f"env={env}",
            f"t_max={ENVS[env]}",
            f"test_interval={ENVS[env]}",
            "test_nepisode=4",
            "logger=csv",
            "trainer.enable_progress_bar=false",
            "print_report=false",
            *ALGOS[algo],
        ]
    )
    summary = train(cfg, tmp_path)
    assert summary["status"] == "completed" and summary["env_steps"] >= ENVS[env]
    assert summary["updates"] > 0 and len(summary["tests"]) >= 2
    assert all(math.isfinite(t["test/return_mean"]) for t in summary["tests"])
    assert (summary["final_test_battle_won"] is not None) == env.startswith(("smax/", "smacv2/"))
    restored = learner_class(algo).load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert type(restored).__name__ == {"mappo": "MAPPO", "fop": "FOP"}.get(algo, "ValueFactorisation")
    assert restored.progress.t_env == summary["env_steps"]  # the checkpoint carries the run's position
