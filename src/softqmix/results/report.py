"""Everything `python -m softqmix.results` writes, built once so the CLI and the notebook agree."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from softqmix.results.curves import plot_env_curves
from softqmix.results.marl_eval import marl_eval_json
from softqmix.results.runs import RunRecord, load_runs
from softqmix.results.tables import markdown_tables, problems_markdown, runs_frame, summary_frame


@dataclass
class ResultsReport:
    records: list[RunRecord]
    table: pd.DataFrame  # env × method × metric aggregates
    runs: pd.DataFrame  # every run found (and every missing one) with its status
    markdown: str
    curves: list[Path] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def summarise(
    roots: list[Path], out: Path | None, reps: int = 5000, confidence: float = 0.95, seed: int = 0
) -> ResultsReport:
    """Read every run under `roots`; with `out`, write results.md/.csv, runs.csv, marl_eval.json and curves."""
    records = load_runs(roots)
    if not records:
        raise FileNotFoundError(f"no run directories (with config.yaml) under {', '.join(map(str, roots))}")
    table = summary_frame(records, reps=reps, confidence=confidence, seed=seed)
    runs = runs_frame(records)
    sections = [markdown_tables(table, confidence) if not table.empty else "No completed runs."]
    problems = problems_markdown(records)
    if problems:
        sections.append(problems)
    report = ResultsReport(records, table, runs, "\n\n".join(sections) + "\n")
    if out is None:
        return report
    out.mkdir(parents=True, exist_ok=True)
    report.files = {
        "markdown": out / "results.md",
        "csv": out / "results.csv",
        "runs": out / "runs.csv",
        "marl_eval": out / "marl_eval.json",
    }
    report.files["markdown"].write_text(report.markdown)
    table.to_csv(report.files["csv"], index=False)
    runs.to_csv(report.files["runs"], index=False)
    report.files["marl_eval"].write_text(json.dumps(marl_eval_json(records), indent=1))
    for env in sorted({r.env for r in records}):
        metrics = sorted({m for r in records if r.env == env for m in r.metrics})
        for metric in metrics:
            path = out / "curves" / f"{_slug(env)}_{metric}.png"
            if plot_env_curves(records, env, metric, path, reps=reps, confidence=confidence, seed=seed):
                report.curves.append(path)
    return report
