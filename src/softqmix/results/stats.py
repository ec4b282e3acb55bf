"""Aggregates over seeds: mean ± std as in the paper's tables, and rliable's IQM with bootstrap CIs.

The IQM (25% trimmed mean) and its stratified-bootstrap confidence interval are the
recommendation of Agarwal et al. (2021) for few-seed RL results; rliable is their reference
implementation, so the numbers match what other MARL papers report with it. For a success
count (seeds that reached a goal) the Wilson score interval of the proportion.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from rliable import library as rly
from rliable import metrics


def _interval_estimates(
    scores: np.ndarray, func: Callable[[np.ndarray], np.ndarray], reps: int, confidence: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """rliable's stratified bootstrap over runs, for one score matrix [runs, columns].

    rliable 1.2 draws its resampled indices from numpy's global generator (`np.random.choice` in
    `StratifiedBootstrap.update_indices`), not from the `random_state` it is given, so the same `seed` gave a
    different interval on every call. The global generator is seeded for the call and restored after it.
    """
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        return _rliable_interval_estimates(scores, func, reps, confidence, seed)
    finally:
        np.random.set_state(saved)


def _rliable_interval_estimates(
    scores: np.ndarray, func: Callable[[np.ndarray], np.ndarray], reps: int, confidence: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():  # rliable still passes arch the RandomState it deprecates; seeding is intended
        warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)
        point, interval = rly.get_interval_estimates(
            {"x": scores},
            func,
            reps=reps,
            confidence_interval_size=confidence,
            random_state=np.random.RandomState(seed),
        )
    return point["x"], interval["x"]


@dataclass(frozen=True)
class SeedAggregate:
    n: int
    mean: float
    std: float  # sample standard deviation over seeds (ddof=1); 0 for a single seed
    iqm: float
    iqm_low: float
    iqm_high: float


def aggregate_seeds(scores: list[float] | np.ndarray, reps: int, confidence: float, seed: int) -> SeedAggregate:
    """Mean, std and IQM with a `confidence` bootstrap interval of one method's final scores."""
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"expected a non-empty 1-D list of per-seed scores, got shape {values.shape}")
    point, interval = _interval_estimates(
        values[:, None], lambda x: np.array([metrics.aggregate_iqm(x)]), reps, confidence, seed
    )
    return SeedAggregate(
        n=int(values.size),
        mean=float(values.mean()),
        std=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        iqm=float(point[0]),
        iqm_low=float(interval[0, 0]),
        iqm_high=float(interval[1, 0]),
    )


def mean_curve_with_ci(
    curves: np.ndarray, reps: int, confidence: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-point mean over seeds of `curves` [seeds, points], with a bootstrap CI band over seeds."""
    if curves.shape[0] == 1:
        return curves[0], curves[0], curves[0]
    point, interval = _interval_estimates(curves, lambda x: np.mean(x, axis=0), reps, confidence, seed)
    return point, interval[0], interval[1]


def wilson_interval(successes: int, runs: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a success proportion: `successes` of `runs` independent seeds.

    Unlike the normal approximation p ± z·sqrt(p(1 − p)/n) it stays inside [0, 1] and does not shrink to a
    point at 0/n or n/n, which matters for the few-seed counts it is used on.
    """
    if runs <= 0 or not 0 <= successes <= runs:
        raise ValueError(f"need 0 <= successes <= runs and runs > 0, got {successes}/{runs}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / runs
    scale = 1 + z * z / runs
    centre = (p + z * z / (2 * runs)) / scale
    half = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / scale
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends (the two terms cancel at 0/n and n/n)
    high = 1.0 if successes == runs else min(1.0, centre + half)
    return low, high
