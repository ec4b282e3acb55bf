"""Export completed runs in marl-eval's raw-data JSON layout (Gorsane et al., 2022).

Layout: env family → task → algorithm → `run_<seed>` → `step_<i>` = {step_count, metric: [one value
per test episode]}, plus `absolute_metrics` = the last evaluation's episodes. marl-eval asks for a
separate, 10× longer evaluation of the final policy there; `python evaluate.py run=<dir>
test_nepisode=<10×>` produces one, and until then the last regular test stands in for it.
"""

from __future__ import annotations

from typing import Any

from softqmix.results.runs import EPISODE_KEYS, RunRecord, RunStatus


def _episode_metrics(test: dict[str, Any], metrics: list[str]) -> dict[str, list[float]]:
    return {metric: [float(v) for v in test[EPISODE_KEYS[metric]]] for metric in metrics}


def marl_eval_json(records: list[RunRecord]) -> dict[str, Any]:
    export: dict[str, Any] = {}
    for record in records:
        if record.status is not RunStatus.completed or not record.tests:
            continue
        family, task = record.env.split("/", 1)
        run: dict[str, Any] = {
            f"step_{i}": {"step_count": int(test["env_step"]), **_episode_metrics(test, record.metrics)}
            for i, test in enumerate(record.tests)
        }
        run["absolute_metrics"] = _episode_metrics(record.tests[-1], record.metrics)
        export.setdefault(family, {}).setdefault(task, {}).setdefault(record.method, {})[f"run_{record.seed}"] = run
    return export
