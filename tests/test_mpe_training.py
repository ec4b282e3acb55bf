"""Short real runs on MPE Spread: outputs, evaluation from the checkpoint, rendering."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from softqmix.data.collector import EpisodeCollector
from softqmix.envs.pool import EnvPool
from softqmix.envs.registry import env_factory
from softqmix.train import train
from tests.helpers import MPE_SIMPLE, REPO_ROOT, SeededRandomActor, train_runs_in_parallel

LEARNING_STEPS = 50_000
# Measured for seeds 0-4 (32 test episodes; a uniform policy on the same env seeds): Soft-QMIX after 50k env
# steps with 4 updates per collection beats uniform by 21.7, 15.9, 37.9, 17.9 and 59.5. The check runs seeds
# 0-2 and asks each for more than half the smallest measured gap. Measured with the time limit bootstrapped
# (`env.time_limit_is_termination=false`), so the check pins it; with the default (terminal) the gaps were
# 2.3, 2.5, 15.1, 6.7 and 23.8 (docs/results.md §8).
LEARNING_MARGIN = 8.0
LEARNING_SEEDS = [0, 1, 2]

SHORT = [
    "env=mpe/spread_simple",
    "t_max=2500",
    "test_interval=1000",
    "test_nepisode=4",
    "log_interval=500",
    "algo.batch_size=16",
    "algo.buffer_size=200",
    "trainer.enable_progress_bar=false",
]


def test_short_mpe_run_then_evaluate_and_render(compose_train, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    summary = train(compose_train(SHORT), run_dir)
    assert summary["env_steps"] == 2500 and summary["episodes"] == 100 and summary["updates"] > 0
    with open(run_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    tests = [r for r in rows if r.get("test/return_mean")]
    assert [float(r["env_step"]) for r in tests] == [0.0, 1000.0, 2000.0, 2500.0]
    # 100 episodes in rounds of 4; updates start once the buffer holds a batch of 16 (after round 4): 22 updates
    assert summary["updates"] == 22
    for row, test in zip(tests, summary["tests"], strict=True):  # the logged means are the episodes' means
        assert float(row["test/return_mean"]) == pytest.approx(np.mean(test["returns"])) and len(test["returns"]) == 4

    proc = subprocess.run(
        [sys.executable, "evaluate.py", f"run={run_dir}", "test_nepisode=8", "render=true"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["test/episodes"] == 8 and report["checkpoint_env_step"] == 2500
    assert report["gif_frames"] == 26  # the first frame plus 25 steps
    gif = Image.open(run_dir / "episode.gif")
    assert gif.size == (700, 700) and gif.n_frames > 1  # (PIL merges identical consecutive frames)

    # the same checkpoint and env seeds scored near-greedily, written beside the greedy score
    proc = subprocess.run(
        [sys.executable, "evaluate.py", f"run={run_dir}", "test_nepisode=8", "epsilon=0.05"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    noisy = json.loads((run_dir / "eval_epsilon0.05.json").read_text())
    assert noisy["epsilon"] == 0.05 and noisy["seed"] == report["seed"] and noisy["test/episodes"] == 8
    assert json.loads((run_dir / "eval.json").read_text())["epsilon"] == 0.0


def test_evaluate_without_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "evaluate.py", f"run={tmp_path}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "expected config.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_worker_envs_with_overlapped_learning_complete_the_run(compose_train, tmp_path: Path) -> None:
    summary = train(
        compose_train([*SHORT, "pool.mode=workers", "pool.collection=thread", "checkpoint.interval=1000"]),
        tmp_path,
    )
    # the same schedule as in-process and serial: no episode lost to the workers or to the collection thread
    assert summary["status"] == "completed" and summary["env_steps"] == 2500
    assert summary["episodes"] == 100 and summary["updates"] == 22


def _uniform_random_return(seed: int, episodes: int) -> float:
    collector = EpisodeCollector(EnvPool(env_factory(MPE_SIMPLE), 4, name="mpe/spread_simple"), seed=seed)
    actor = SeededRandomActor(5, seed)
    returns = []
    while len(returns) < episodes:
        returns += collector.collect(actor, explore=True)[1].returns
    return float(np.mean(returns))


def test_soft_qmix_clearly_beats_uniform_random_on_spread_simple(compose_train, tmp_path: Path) -> None:
    """A learning check that can fail: LEARNING_STEPS of Soft-QMIX vs a uniform policy on the same env seeds,
    every one of LEARNING_SEEDS by LEARNING_MARGIN."""
    runs = [
        (
            compose_train(
                [
                    "env=mpe/spread_simple",
                    f"t_max={LEARNING_STEPS}",
                    f"test_interval={LEARNING_STEPS}",
                    "test_nepisode=32",
                    "algo.batch_size=32",
                    "algo.updates_per_collect=4",
                    "env.time_limit_is_termination=false",
                    "trainer.enable_progress_bar=false",
                    f"seed={seed}",
                ]
            ),
            tmp_path / f"seed{seed}",
        )
        for seed in LEARNING_SEEDS
    ]
    learned = [summary["final_test_return"] for summary in train_runs_in_parallel(runs)]
    uniform = [_uniform_random_return(seed=seed, episodes=32) for seed in LEARNING_SEEDS]
    gaps = [ours - theirs for ours, theirs in zip(learned, uniform, strict=True)]
    assert min(gaps) > LEARNING_MARGIN, (learned, uniform)
