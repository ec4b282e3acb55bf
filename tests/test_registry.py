"""Every registered algorithm × every registered env family trains a tiny budget end to end and restores.

Parametrised from the registries: a new algorithm or env family is tested here without editing this file.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from softqmix import CONF_DIR
from softqmix.algos.registry import ALGORITHMS, algorithm
from softqmix.cli_checks import group_options
from softqmix.envs.registry import ENV_FAMILIES
from softqmix.loop import TrainingLoop
from softqmix.train import train
from tests.fakes import smacv2 as fake_smacv2

# One scenario per family (the first of its YAMLs) and the env steps of its tiny run.
SCENARIOS = {
    family: next(o for o in group_options(CONF_DIR, "env") if o.startswith(f"{family}/"))
    for family in ENV_FAMILIES.names()
}
STEPS = {"matrix": 40, "mpe": 200}  # the rest: 300 (SMAX and SMACv2 episodes are long)


def tiny(algo: str) -> list[str]:
    """A buffer or rollout just big enough for the tiny runs (and no warm-up of random actions, where the
    algorithm has one: HASAC)."""
    spec = algorithm(algo)
    if spec.on_policy:
        return ["algo.rollout_episodes=4", "algo.ppo_epochs=2"]
    warmup = ["algo.warmup_steps=0"] if "warmup_steps" in {f.name for f in dataclasses.fields(spec.config)} else []
    return ["algo.batch_size=2", "algo.buffer_size=8", "algo.burn_in_episodes=2", *warmup]


@pytest.mark.parametrize("family", ENV_FAMILIES.names())
@pytest.mark.parametrize("algo", ALGORITHMS.names())
def test_tiny_run(compose_train, tmp_path: Path, monkeypatch, algo: str, family: str) -> None:
    if family == "smacv2":
        fake_smacv2.install(monkeypatch)
    steps = STEPS.get(family, 300)
    cfg = compose_train(
        [
            f"algo={algo}",
            f"env={SCENARIOS[family]}",
            f"t_max={steps}",
            f"test_interval={steps}",
            "test_nepisode=4",
            "logger=csv",
            "trainer.enable_progress_bar=false",
            "print_report=false",
            *tiny(algo),
        ]
    )
    summary = train(cfg, tmp_path)
    assert summary["status"] == "completed" and summary["env_steps"] >= steps
    assert summary["updates"] > 0 and len(summary["tests"]) >= 2
    assert all(math.isfinite(t["test/return_mean"]) for t in summary["tests"])
    assert (summary["final_test_battle_won"] is not None) == (family in ("smax", "smacv2"))
    restored = TrainingLoop.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert isinstance(restored.learner, algorithm(algo).learner) and restored.algo_name == algo
    assert restored.progress.t_env == summary["env_steps"]  # the checkpoint carries the run's position
