"""Learning curves over seeds, as in the paper's Figure 3: mean test score with a bootstrap CI band."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt

from softqmix.results.runs import METRIC_COLUMNS, RunRecord, read_test_curve
from softqmix.results.stats import mean_curve_with_ci
from softqmix.results.tables import METRIC_TITLES


def aligned_curves(records: list[RunRecord], column: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values [runs, steps]) on the test steps that every run reached.

    Seeds test at the same env steps (the schedule counts env steps), so the common grid is the
    intersection; a run that stopped early shortens it instead of biasing the late points.
    """
    curves = [dict(zip(*read_test_curve(r.path, column), strict=True)) for r in records]
    curves = [c for c in curves if c]
    if not curves:
        return None
    common = sorted(set.intersection(*(set(c) for c in curves)))
    if not common:
        return None
    return np.array(common), np.array([[c[s] for s in common] for c in curves])


def plot_env_curves(
    records: list[RunRecord], env: str, metric: str, out: Path, reps: int, confidence: float, seed: int
) -> Path | None:
    """One PNG for `env`: a line per method (mean over its seeds) with its CI band; None if no data."""
    by_method: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        if record.env == env:
            by_method[record.method].append(record)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    plotted = False
    for method, runs in by_method.items():
        aligned = aligned_curves(runs, METRIC_COLUMNS[metric])
        if aligned is None:
            continue
        steps, values = aligned
        mean, low, high = mean_curve_with_ci(values, reps=reps, confidence=confidence, seed=seed)
        (line,) = ax.plot(steps, mean, label=f"{method} ({values.shape[0]})", linewidth=1.4)
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        plotted = True
    if not plotted:
        plt.close(fig)
        return None
    ax.set_xlabel("env steps")
    ax.set_ylabel(METRIC_TITLES.get(metric, metric))
    ax.set_title(f"{env}: mean over seeds (n), {confidence:.0%} bootstrap CI")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
