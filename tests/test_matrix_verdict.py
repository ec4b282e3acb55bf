"""The one-line verdict after the matrix-game table, and the gradient clip over all of a learner's optimizers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from softqmix.algos.learner import GradClipMode, Learner, LearnerConfig, OptimizerGroup
from softqmix.algos.registry import build_learner
from softqmix.envs.base import EnvInfo
from softqmix.eval import matrix_report
from softqmix.eval.matrix_report import StudiedRate, matrix_verdict, studied_rate
from softqmix.progress import TrainingProgress

TABLE_1 = [[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]
REPO_ROOT = Path(__file__).resolve().parents[1]


def _report(greedy: list[int]) -> dict[str, Any]:
    # hand-made: agent 1 prefers its greedy action, so does agent 2; Q_tot is whatever the learner believed
    return {"greedy_actions": greedy, "q_tot": [[-12.0, -11.0, -11.0], [-1.5, 0.0, 0.0], [-1.5, 0.0, 0.0]]}


def test_verdict_names_the_optimum_only_when_the_greedy_joint_action_earns_the_best_payoff() -> None:
    hit = matrix_verdict(_report([0, 0]), TABLE_1, None, None)
    assert "(A, A) is the optimum (payoff 8)" in hit and "NOT" not in hit
    plateau = matrix_verdict(_report([1, 2]), TABLE_1, None, None)
    assert "(B, C) is NOT the optimum (A, A): it pays 0 against 8" in plateau
    mixed = matrix_verdict(_report([0, 1]), TABLE_1, ["x", "y", "z"], None)
    assert "(x, y) is NOT the optimum (x, x): it pays -12 against 8" in mixed
    # an optimum elsewhere, and a tie: any joint action that pays the best payoff is an optimum
    assert "is the optimum" in matrix_verdict(_report([1, 1]), [[0, 0], [0, 5]], None, None)
    assert "(B, B) is the optimum" in matrix_verdict(_report([1, 1]), [[1, 0], [0, 1]], None, None)


def test_verdict_quotes_the_study_for_studied_settings_and_says_so_otherwise() -> None:
    line = matrix_verdict(_report([1, 1]), TABLE_1, None, StudiedRate(ours=(3, 20), authors=(2, 20)))
    assert "3/20 seeds of this code and 2/20 of the authors' released code" in line
    assert matrix_report.STUDY_SECTION in line
    only_ours = matrix_verdict(_report([1, 1]), TABLE_1, None, StudiedRate(ours=(1, 10)))
    assert "1/10 seeds of this code (the authors' code was not run at these settings)" in only_ours
    assert "not among those studied" in matrix_verdict(_report([1, 1]), TABLE_1, None, None)


def test_study_lookup_matches_the_default_run_and_nothing_it_did_not_run(compose_train, monkeypatch) -> None:
    rate = StudiedRate(ours=(5, 20), authors=(4, 20))
    monkeypatch.setattr(matrix_report, "STUDY_RATES", {("default", 0.03, 10_000): rate})
    assert studied_rate(compose_train([])) is rate  # `python train.py`
    assert studied_rate(compose_train(["experiment=paper_matrix"])) is rate  # the same training
    for changed in (
        ["algo.alpha=0.1"],
        ["t_max=20000"],
        ["ablation=release"],  # the entropy leak: another form
        ["ablation=full"],
        ["algo.critic_lr=0.0005"],
        ["algo.grad_clip_mode=global"],
        ["algo.mixer=qmix"],
        ["env.payoff=[[8,-12,-12],[-12,0,0],[-12,0,1]]"],
        ["algo=qmix"],
    ):
        assert studied_rate(compose_train(changed)) is None, changed


def test_every_studied_row_is_a_form_the_lookup_knows() -> None:
    for form, alpha, t_max in matrix_report.STUDY_RATES:
        assert form in matrix_report.STUDY_FORMS and alpha > 0 and t_max > 0


class TwoParameters(Learner):
    """loss = 3a + 4b, with a and b stepped by two optimizers: gradients 3 and 4, joint norm 5."""

    objective = ("loss",)

    def __init__(self, mode: str, clip: float) -> None:
        cfg = LearnerConfig(name="toy", grad_norm_clip=clip, grad_clip_mode=GradClipMode[mode])
        super().__init__(
            cfg, EnvInfo(n_agents=1, n_actions=2, obs_dim=1, state_dim=1, episode_limit=1), False, TrainingProgress()
        )
        self.a = nn.Parameter(torch.zeros(1))
        self.b = nn.Parameter(torch.zeros(1))

    def optimizer_groups(self) -> list[OptimizerGroup]:
        return [OptimizerGroup("first", [self.a], 1.0), OptimizerGroup("second", [self.b], 1.0)]

    def compute_losses(self, batch: Any) -> dict[str, torch.Tensor]:
        return {"loss": 3 * self.a.sum() + 4 * self.b.sum()}


def _step(mode: str, clip: float) -> tuple[float, float, dict[str, torch.Tensor]]:
    learner = TwoParameters(mode, clip)
    optimizers = [torch.optim.SGD(group.parameters, lr=1.0) for group in learner.optimizer_groups()]
    logged = learner.update(None, optimizers)
    # with lr 1 the step is minus the clipped gradient
    return -float(learner.a.detach()), -float(learner.b.detach()), logged


@pytest.mark.parametrize("clip", [1.0, 2.5])
def test_global_clip_scales_all_gradients_by_one_factor(clip: float) -> None:
    a, b, logged = _step("global", clip)
    assert a == pytest.approx(3 * clip / 5, rel=1e-5) and b == pytest.approx(4 * clip / 5, rel=1e-5)
    assert float(logged["train/grad_norm"]) == pytest.approx(5.0)  # the joint norm before clipping


def test_per_optimizer_clip_scales_each_optimizers_gradients_on_its_own() -> None:
    a, b, logged = _step("per_optimizer", 1.0)  # 3 -> 1 and 4 -> 1: the direction changes
    assert a == pytest.approx(1.0, rel=1e-5) and b == pytest.approx(1.0, rel=1e-5)
    assert float(logged["train/grad_norm_first"]) == pytest.approx(3.0)
    assert float(logged["train/grad_norm_second"]) == pytest.approx(4.0)
    a, b, _ = _step("per_optimizer", 3.5)  # only b's norm exceeds the clip
    assert a == pytest.approx(3.0, rel=1e-5) and b == pytest.approx(3.5, rel=1e-5)


@pytest.mark.parametrize("mode", ["global", "per_optimizer"])
def test_no_clipping_below_the_bound(mode: str) -> None:
    a, b, _ = _step(mode, 10.0)
    assert (a, b) == (pytest.approx(3.0), pytest.approx(4.0))


def test_the_switch_reaches_a_soft_qmix_learner_from_the_config(compose_train) -> None:
    cfg = compose_train(["algo.grad_clip_mode=global"])
    assert cfg.algo.grad_clip_mode is GradClipMode["global"]
    info = EnvInfo(n_agents=2, n_actions=3, obs_dim=2, state_dim=2, episode_limit=1)
    learner = build_learner(cfg.algo, info, False)
    assert GradClipMode(learner.cfg.grad_clip_mode) is GradClipMode["global"]
    assert compose_train([]).algo.grad_clip_mode is GradClipMode["per_optimizer"]  # the default


def test_the_shipped_rates_are_the_committed_study_and_cover_the_default_run(compose_train) -> None:
    # matrix_parity.py report writes both files; a rerun of one without the other would make the verdict quote
    # numbers the docs' table does not show
    table = REPO_ROOT / "benchmarks/results/matrix_parity/matrix_parity.json"
    rows = {(r["code"], r["form"], r["alpha"], r["t_max"]): r for r in json.loads(table.read_text())}
    assert matrix_report.STUDY_RATES, "no study rates shipped"
    for (form, alpha, t_max), rate in matrix_report.STUDY_RATES.items():
        ours = rows[("ours", form, alpha, t_max)]
        assert rate.ours == (ours["greedy_optimal"], ours["runs"])
        theirs = rows.get(("authors", "release", alpha, t_max))
        if rate.authors is not None:
            assert theirs is not None and rate.authors == (theirs["greedy_optimal"], theirs["runs"])
    default = studied_rate(compose_train([]))  # `python train.py` quotes both codes
    assert default is not None and default.authors is not None and default.ours[1] >= 20


def test_a_partial_rerun_replaces_only_its_own_groups_of_an_earlier_report(monkeypatch) -> None:
    """matrix_parity.py report --earlier: the rerun's groups win, the others are kept, in the report's order."""
    from tests.helpers import load_script

    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks/parity"))
    parity = load_script("benchmarks/parity/matrix_parity.py")

    def row(code: str, form: str, alpha: float, t_max: int, successes: int) -> dict[str, Any]:
        return {"code": code, "form": form, "alpha": alpha, "t_max": t_max, "successes": successes}

    earlier = [
        row("authors", "release", 0.03, 10000, 7),
        row("ours", "default", 0.03, 10000, 7),
        row("ours", "release", 0.03, 10000, 8),
        row("ours", "release", 0.1, 10000, 4),
    ]
    rerun = [row("ours", "release", 0.1, 10000, 5), row("ours", "release", 0.03, 10000, 6)]
    merged = parity.with_earlier_rows(rerun, earlier)
    assert [(r["code"], r["form"], r["alpha"], r["successes"]) for r in merged] == [
        ("authors", "release", 0.03, 7),
        ("ours", "default", 0.03, 7),
        ("ours", "release", 0.03, 6),
        ("ours", "release", 0.1, 5),
    ]
