"""Per env × method tables of final test scores over seeds, as CSV and as Markdown in the paper's layout.

The paper's Tables 2–4 have one row per environment and one column per algorithm, each cell
`mean ± std` over seeds; the Markdown keeps that layout and adds a second table with the IQM
and its 95% CI. The CSV is long-form (one row per env × method × metric) for further analysis.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from typing import Any

import pandas as pd

from softqmix.results.runs import RunRecord, RunStatus, missing_seeds
from softqmix.results.stats import aggregate_seeds

METRIC_TITLES = {"return": "test return", "win_rate": "test win rate"}


def _table_order(key: tuple[str, str, str], method_order: dict[str, int]) -> tuple[str, str, int]:
    env, method, metric = key
    return env, metric, method_order[method]


def summary_frame(records: list[RunRecord], reps: int, confidence: float, seed: int) -> pd.DataFrame:
    """One row per env × method × metric over the completed runs."""
    scores: dict[tuple[str, str, str], list[tuple[int, float]]] = defaultdict(list)
    for record in records:
        if record.status is not RunStatus.completed:
            continue
        for metric in record.metrics:
            if metric in record.final:
                scores[(record.env, record.method, metric)].append((record.seed, record.final[metric]))
    rows = []
    # envs and metrics sorted; methods in the order the sweep ran them (e.g. QMIX, +entropy, +f, Soft-QMIX)
    method_order = {method: i for i, method in enumerate(dict.fromkeys(r.method for r in records))}
    for (env, method, metric), pairs in sorted(
        scores.items(), key=lambda kv: (kv[0][0], kv[0][2], method_order[kv[0][1]])
    ):
        pairs.sort()
        stats = aggregate_seeds([v for _, v in pairs], reps=reps, confidence=confidence, seed=seed)
        seeds = " ".join(str(seed) for seed, _ in pairs)
        rows.append({"env": env, "method": method, "metric": metric, **asdict(stats), "seeds": seeds})
    columns = ["env", "method", "metric", "n", "mean", "std", "iqm", "iqm_low", "iqm_high", "seeds"]
    return pd.DataFrame(rows, columns=columns)


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}".replace("-", "−")


def _digits(frame: pd.DataFrame) -> int:
    """Three decimals for win rates and small returns, one for returns in the tens and hundreds."""
    return 3 if frame["mean"].abs().max() < 10 else 1


def _mean_std_cell(row: Any, digits: int) -> str:
    return f"{_number(row.mean, digits)} ± {_number(row.std, digits)} ({row.n})"


def _iqm_cell(row: Any, digits: int) -> str:
    return f"{_number(row.iqm, digits)} [{_number(row.iqm_low, digits)}, {_number(row.iqm_high, digits)}]"


def markdown_tables(frame: pd.DataFrame, confidence: float) -> str:
    """Paper layout per metric: rows = envs, columns = methods; mean ± std (n), then IQM [CI]."""
    parts: list[str] = []
    for metric, block in frame.groupby("metric", sort=False):
        methods = list(dict.fromkeys(block["method"]))
        digits = _digits(block)
        title = METRIC_TITLES.get(str(metric), str(metric))
        for heading, cell in (
            (f"Final {title}: mean ± std over seeds (n)", _mean_std_cell),
            (f"Final {title}: IQM [{confidence:.0%} bootstrap CI]", _iqm_cell),
        ):
            lines = [f"### {heading}", "", "| env | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
            for env, rows in block.groupby("env", sort=True):
                by_method = {r.method: cell(r, digits) for r in rows.itertuples()}
                lines.append(f"| {env} | " + " | ".join(by_method.get(m, "–") for m in methods) + " |")
            parts.append("\n".join(lines))
    return "\n\n".join(parts)


def problems_markdown(records: list[RunRecord]) -> str:
    """Every run the tables could not use, and every seed a method lacks; empty when there is none."""
    lines = []
    for record in records:
        if record.status is not RunStatus.completed:
            reason = f": {record.error}" if record.error else ""
            where = f"{record.env} {record.method} seed {record.seed}"
            lines.append(f"- **{record.status}** {where} ({record.path}){reason}")
    for (env, method), seeds in missing_seeds(records).items():
        lines.append(f"- **missing** {env} {method} seeds {', '.join(map(str, seeds))} (no run directory)")
    if not lines:
        return ""
    return "### Runs not in the tables\n\n" + "\n".join(lines)


def runs_frame(records: list[RunRecord]) -> pd.DataFrame:
    """Every run found, one row each with its status and final scores, then one row per missing seed."""
    rows = [
        {
            "env": r.env,
            "method": r.method,
            "seed": r.seed,
            "status": str(r.status),
            "final_return": r.final.get("return"),
            "final_win_rate": r.final.get("win_rate"),
            "error": r.error,
            "path": str(r.path),
        }
        for r in records
    ]
    for (env, method), seeds in missing_seeds(records).items():
        rows += [{"env": env, "method": method, "seed": seed, "status": "missing"} for seed in seeds]
    columns = ["env", "method", "seed", "status", "final_return", "final_win_rate", "error", "path"]
    return pd.DataFrame(rows, columns=columns)
