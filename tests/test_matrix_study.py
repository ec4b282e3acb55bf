"""The reproduction criterion and its table, on synthetic run directories with known outcomes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from softqmix.eval.matrix_study import collect_runs, run_success, success_table, to_markdown

PAYOFF = [[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]


def _summary(greedy: list[int], q_aa: float) -> dict:
    q_tot = [[q_aa, -12, -14], [-8, 0, 0], [-10, 0, 0]]
    return {"matrix_game": {"greedy_actions": greedy, "q_tot": q_tot}}


def test_success_needs_greedy_optimum_and_accurate_value() -> None:
    assert run_success(_summary([0, 0], 7.2), PAYOFF)
    assert not run_success(_summary([0, 0], 6.9), PAYOFF)  # value off by more than 1
    assert not run_success(_summary([0, 1], 8.0), PAYOFF)  # not the optimal joint action


def _write_run(root: Path, name: str, algo: dict, summary: dict) -> None:
    run = root / name
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "config.yaml").write_text(yaml.safe_dump({"algo": algo, "env": {"payoff": PAYOFF}}))


def test_table_groups_by_variant_and_alpha(tmp_path: Path) -> None:
    soft = {"name": "soft_qmix", "variant": "release", "soft_target": True, "behaviour": "softmax"}
    qmix = {"name": "qmix", "variant": "default", "soft_target": False, "behaviour": "eps_greedy", "alpha": 0.03}
    _write_run(tmp_path, "a", {**soft, "alpha": 0.03}, _summary([0, 0], 8.0))
    _write_run(tmp_path, "b", {**soft, "alpha": 0.03}, _summary([1, 1], 0.0))
    _write_run(tmp_path, "c", {**soft, "alpha": 0.1}, _summary([0, 0], 8.1))
    _write_run(tmp_path, "e", {**soft, "alpha": 0.1}, _summary([0, 0], 5.0))  # greedy right, value wrong
    _write_run(tmp_path, "d", qmix, _summary([2, 1], 0.0))
    rows = success_table(collect_runs([tmp_path]))
    by_key = {(r["algo"], r["alpha"]): (r["greedy_optimal"], r["successes"], r["runs"]) for r in rows}
    assert by_key == {("qmix", None): (0, 0, 1), ("soft_qmix", 0.03): (1, 1, 2), ("soft_qmix", 0.1): (2, 1, 2)}
    assert "| soft_qmix | release | 0.03 | 1/2 | 1/2 | 50% |" in to_markdown(rows)
