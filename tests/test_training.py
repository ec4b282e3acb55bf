"""Short real training runs: every learner learns, and the paper's matrix game behaves as it must."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from softqmix.train import train
from tests.helpers import REPO_ROOT

TINY = [
    "t_max=2000",
    "test_interval=500",
    "test_nepisode=4",
    "log_interval=500",
    "algo.batch_size=32",
    "algo.buffer_size=500",
    "algo.target_update_interval=50",
    "algo.epsilon_anneal_time=1000",
    "print_report=false",
]
EASY_GAME = "env.payoff=[[4,2],[2,0]]"  # A is dominant for both agents: every learner must reach (A, A)


@pytest.mark.parametrize(
    "choice",
    [
        ["algo=soft_qmix"],
        ["algo=qmix"],
        ["algo=vdn"],
        ["algo=iql"],
        ["algo=soft_qmix", "ablation=full"],
        ["algo=soft_qmix", "ablation=entropy"],
        ["algo=soft_qmix", "ablation=function_f"],
        ["algo=soft_qmix", "ablation=release"],
        ["algo=soft_qmix", "pool.collection=thread"],
        ["algo=soft_qmix", "pool.collection=process"],
    ],
    ids=lambda c: "+".join(x.split("=")[1] for x in c),
)
def test_every_learner_learns_a_coordination_game(compose_train, tmp_path: Path, choice: list[str]) -> None:
    cfg = compose_train([*choice, EASY_GAME, *TINY, "seed=1"])
    summary = train(cfg, tmp_path)
    assert summary["final_test_return"] == pytest.approx(4.0)
    assert summary["env_steps"] >= 2000 and summary["updates"] > 0
    q_tot = summary["matrix_game"]["q_tot"]
    assert abs(q_tot[0][0] - 4.0) < 1.0  # the value of the greedy joint action is learned


MATRIX = ["experiment=paper_matrix", "t_max=6000", "algo.epsilon_anneal_time=3000", "print_report=false"]
PAYOFF = [[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]


# In the 20-seed study of docs/results.md QMIX ends on the plateau in 19 of 20 seeds (seed 8 found (A, A));
# these three seeds are not hand-picked: they are the first three.
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qmix_settles_on_the_suboptimal_plateau(compose_train, tmp_path: Path, seed: int) -> None:
    summary = train(compose_train(["algo=qmix", *MATRIX, f"seed={seed}"]), tmp_path)
    report = summary["matrix_game"]
    a1, a2 = report["greedy_actions"]
    assert a1 in (1, 2) and a2 in (1, 2)  # greedy joint action inside the {B, C} plateau
    assert abs(report["q_tot"][a1][a2]) < 0.5


@pytest.mark.parametrize(("form", "seed"), [("release", 0), ("release", 1), ("full", 0), ("full", 1)])
def test_soft_qmix_keeps_igm_and_fits_its_greedy_joint_action(
    compose_train, tmp_path: Path, form: str, seed: int
) -> None:
    summary = train(compose_train(["algo=soft_qmix", f"ablation={form}", *MATRIX, f"seed={seed}"]), tmp_path)
    report = summary["matrix_game"]
    for probs, greedy in zip(report["policy_probs"], report["greedy_actions"], strict=True):
        assert probs[greedy] == pytest.approx(max(probs), abs=1e-6)  # policy mode = argmax Q_i
    a1, a2 = report["greedy_actions"]
    assert abs(report["q_tot"][a1][a2] - PAYOFF[a1][a2]) <= 1.0


def test_cli_run_writes_every_output_and_prints_the_table(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "train.py", "t_max=600", "test_interval=200", "log_interval=200", f"hydra.run.dir={run_dir}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Learned Q_tot" in proc.stdout and "training policy" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] == 600 and summary["versions"]["torch"].startswith("2.13")
    assert len(summary["matrix_game"]["q_tot"]) == 3
    assert (run_dir / "checkpoints" / "last.ckpt").stat().st_size > 0
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in ["env_step", "test/return_mean", "train/return_mean", "loss/td", "loss/policy", "train/alpha"]:
        assert column in header
    assert "alpha: 0.03" in (run_dir / "config.yaml").read_text()


@pytest.mark.parametrize("overrides", [["algo=qmix"], ["algo=soft_qmix", "ablation=entropy"]])
def test_cli_variants_run(tmp_path: Path, overrides: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "train.py", *overrides, "t_max=300", f"hydra.run.dir={tmp_path}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "summary.json").read_text())["env_steps"] == 300
