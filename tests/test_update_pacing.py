"""Updates paced per collection (pymarl) or per env step (algo.env_steps_per_update, JaxMARL's and HARL's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from softqmix.algos.learner import ReplayLearnerConfig, updates_earned
from softqmix.errors import ConfigError
from softqmix.progress import TrainingProgress
from softqmix.train import train


def test_env_step_pacing_carries_the_remainder_between_collections() -> None:
    cfg = ReplayLearnerConfig(name="qmix", env_steps_per_update=256)
    progress = TrainingProgress()
    # 100 -> 0 (100 carried), +300 = 400 -> 1 (144), +40 = 184 -> 0, +600 = 784 -> 3 (16)
    assert [updates_earned(cfg, progress, steps) for steps in (100, 300, 40, 600)] == [0, 1, 0, 3]
    assert progress.steps_toward_update == 16


def test_collection_pacing_ignores_episode_lengths() -> None:
    cfg = ReplayLearnerConfig(name="qmix", updates_per_collect=3)
    progress = TrainingProgress()
    assert [updates_earned(cfg, progress, steps) for steps in (5, 500)] == [3, 3]
    assert progress.steps_toward_update == 0


def test_both_pacings_at_once_are_refused_naming_both_keys(compose_train, tmp_path: Path) -> None:
    cfg = compose_train(["algo=qmix", "algo.env_steps_per_update=256", "algo.updates_per_collect=4"])
    with pytest.raises(ConfigError, match=r"env_steps_per_update=256.*updates_per_collect=4.*set one of the two"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_a_run_paced_by_env_steps_makes_one_update_per_n_steps_once_learning_starts(
    compose_train, tmp_path: Path
) -> None:
    # matrix game: one-step episodes, 4 envs, so learning starts at the collection that brings the buffer to
    # 16 episodes (env steps 13-16); from then on every 3 env steps earn an update
    summary = train(
        compose_train(["t_max=400", "algo.batch_size=16", "algo.env_steps_per_update=3", "print_report=false"]),
        tmp_path / "run",
    )
    assert summary["env_steps"] == 400
    assert summary["updates"] == (400 - 12) // 3
