"""Tables and curves of SMAX learning runs: ours (run dirs of `train.py`) beside JaxMARL's QMIX (jaxmarl_qmix.py).

  python benchmarks/parity/smax_report.py diagnosis --runs "raw state, reward x1=DIR" ... --out DIR
  python benchmarks/parity/smax_report.py learning --ours DIR... --anchor JSON... --out DIR

`diagnosis` prints one row per named run: the greedy test win rate and return at the end and the best over
the run, and the scale of the learned values next to the returns they predict (|Q_tot| against the mean
training return of the last log rows), as markdown and JSON.
`learning` groups our runs by algorithm and the anchor's by seed, and gives at every 100k env steps the
greedy test win rate of each seed (the mean of its tests in the 50k steps up to there), its IQM over seeds with a 95%
stratified-bootstrap CI (rliable, as `python -m softqmix.results`), how many seeds reached 0.3 by then, and
a plot of the mean curves with CI bands.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from softqmix.results.stats import aggregate_seeds, mean_curve_with_ci

WIN, RETURN = "test/battle_won_mean", "test/return_mean"
TARGET_WIN_RATE = 0.3


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]


def test_curve(rows: list[dict[str, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tests = [r for r in rows if WIN in r]
    return (
        np.array([r["env_step"] for r in tests]),
        np.array([r[WIN] for r in tests]),
        np.array([r[RETURN] for r in tests]),
    )


def diagnosis(args: argparse.Namespace) -> None:
    records = []
    for item in args.runs:
        name, path = item.split("=", 1)
        run_dir = Path(path)
        rows = read_metrics(run_dir)
        cfg = OmegaConf.load(run_dir / "config.yaml")
        steps, win, ret = test_curve(rows)
        train = [r for r in rows if "train/q_tot_abs_mean" in r and "train/return_mean" in r][-args.last_rows :]
        records.append(
            {
                "run": name,
                "dir": str(run_dir),
                "algo": str(cfg.algo.name),
                "env_steps": int(steps[-1]),
                "final_win_rate": float(win[-1]),
                "best_win_rate": float(win.max()),
                "final_return": float(ret[-1]),
                "reward_scale": float(cfg.env.get("reward_scale", 1.0)),
                "q_tot_abs": float(np.mean([r["train/q_tot_abs_mean"] for r in train])),
                "train_return": float(np.mean([r["train/return_mean"] for r in train])),
            }
        )
    lines = [
        "| run | algo | env steps | final win rate | best win rate | final return (SMAX scale) "
        "| mean abs Q_tot | training return (env scale) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        scale = r["reward_scale"]
        lines.append(
            f"| {r['run']} | {r['algo']} | {r['env_steps']:,} | {r['final_win_rate']:.2f} | {r['best_win_rate']:.2f} "
            f"| {r['final_return'] / scale:.2f} | {r['q_tot_abs']:.2f} | {r['train_return']:.2f} |"
        )
    write(args.out, "diagnosis", "\n".join(lines) + "\n", records)


Curves = dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]  # method -> seed -> (env steps, win rates)
Speeds = dict[str, list[float]]  # method -> env steps per wall second of each finished run


def our_curves(roots: list[Path]) -> tuple[Curves, Speeds]:
    """Every run dir (holding metrics.csv) under the roots; speeds from the finished runs' summary.json."""
    curves: Curves = defaultdict(dict)
    speeds: Speeds = defaultdict(list)
    for root in roots:
        for metrics in sorted(root.rglob("metrics.csv")):
            cfg = OmegaConf.load(metrics.parent / "config.yaml")
            steps, win, _ = test_curve(read_metrics(metrics.parent))
            method = f"{cfg.algo.name} (ours)"
            curves[method][str(cfg.seed)] = (steps, win)
            summary = metrics.parent / "summary.json"
            if summary.exists():
                done = json.loads(summary.read_text())
                speeds[method].append(done["env_steps"] / done["wall_seconds"])
    return curves, speeds


def anchor_curves(paths: list[Path]) -> tuple[Curves, Speeds]:
    curves: Curves = defaultdict(dict)
    speeds: Speeds = defaultdict(list)
    for path in paths:
        record = json.loads(path.read_text())
        extra = "".join(f", {item}" for item in record.get("set", []))
        label = f"{record['algo']} (JaxMARL, hidden {record['hidden']}{extra})"
        for seed, curve in record["curves"].items():
            order = np.argsort(curve["env_step"])
            curves[label][f"{path.stem}:{seed}"] = (
                np.asarray(curve["env_step"])[order],
                np.asarray(curve["test_win_rate"])[order],
            )
            speeds[label].append(record["steps"] / record["wall_s_per_seed"][seed])
    return curves, speeds


def at_step(steps: np.ndarray, values: np.ndarray, step: int) -> float:
    """The last test at or before `step` (a test within 1% after it counts as at it); NaN past the run's end."""
    ok = steps <= step * 1.01
    if not ok.any() or steps.max() < step * 0.95:
        return math.nan
    return float(values[ok][-1])


def window_mean(steps: np.ndarray, values: np.ndarray, step: int, window: int) -> float:
    """The mean of the tests in (step - window, step] (1% slack after), NaN past the run's end: one 32-battle
    test is noisy (a win rate of 0.3 has a standard error of 0.08), two or three are less so."""
    ok = (steps > step - window) & (steps <= step * 1.01)
    if not ok.any() or steps.max() < step * 0.95:
        return math.nan
    return float(values[ok].mean())


def learning(args: argparse.Namespace) -> None:
    ours, our_speeds = our_curves(args.ours)
    anchor, anchor_speeds = anchor_curves(args.anchor)
    methods, speeds = {**ours, **anchor}, {**our_speeds, **anchor_speeds}
    checkpoints = list(range(args.every, args.t_max + 1, args.every))
    records, lines = [], []
    header = " | ".join(f"{c // 1000}k" for c in checkpoints)
    lines += [
        f"| method | seeds | {header} | seeds >= {TARGET_WIN_RATE} by {checkpoints[-1] // 1000}k |",
        "|---|---|" + "---|" * (len(checkpoints) + 1),
    ]
    for method, seeds in sorted(methods.items()):
        cells, per_checkpoint = [], {}
        for c in checkpoints:
            values = [window_mean(s, w, c, args.window) for s, w in seeds.values()]
            values = [v for v in values if not math.isnan(v)]
            if len(values) < len(seeds):
                cells.append("–")
                continue
            agg = aggregate_seeds(values, reps=args.reps, confidence=0.95, seed=0)
            per_checkpoint[c] = {"per_seed": values, "iqm": agg.iqm, "ci": [agg.iqm_low, agg.iqm_high]}
            cells.append(f"{agg.iqm:.2f} [{agg.iqm_low:.2f}, {agg.iqm_high:.2f}]")
        reached = [bool((w[s <= checkpoints[-1] * 1.01] >= TARGET_WIN_RATE).any()) for s, w in seeds.values()]
        lines.append(f"| {method} | {len(seeds)} | {' | '.join(cells)} | {sum(reached)} of {len(seeds)} |")
        rates = speeds.get(method, [])
        records.append(
            {
                "method": method,
                "seeds": sorted(seeds),
                "checkpoints": per_checkpoint,
                "seeds_reaching_target": sum(reached),
                "best_per_seed": {k: float(w[s <= checkpoints[-1] * 1.01].max()) for k, (s, w) in seeds.items()},
                "env_steps_per_s": rates,
            }
        )
    lines.append("")
    lines.append(
        f"Cells: IQM over seeds [95% bootstrap CI] of each seed's mean greedy test win rate over the tests in the "
        f"last {args.window // 1000}k steps up to that step; last column: seeds whose win rate reached "
        f"{TARGET_WIN_RATE} in a single test up to {checkpoints[-1] // 1000}k."
    )
    lines += ["", "| method | finished runs | env steps per wall second (mean, min-max) |", "|---|---|---|"]
    for record in records:
        rates = record["env_steps_per_s"]
        if rates:
            lines.append(
                f"| {record['method']} | {len(rates)} | {np.mean(rates):.0f} ({min(rates):.0f}-{max(rates):.0f}) |"
            )
    write(args.out, "learning", "\n".join(lines) + "\n", records)
    plot(methods, args.out / "learning.png", args.t_max, args.reps)


def plot(methods: dict, path: Path, t_max: int, reps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0, t_max, 51)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for method, seeds in sorted(methods.items()):
        curves = np.array([[at_step(s, w, int(g)) for g in grid] for s, w in seeds.values()])
        keep = ~np.isnan(curves).any(axis=0)
        if not keep.any():
            continue
        mean, low, high = mean_curve_with_ci(curves[:, keep], reps=reps, confidence=0.95, seed=0)
        ax.plot(grid[keep], mean, label=f"{method} ({len(seeds)} seeds)")
        ax.fill_between(grid[keep], low, high, alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("greedy test win rate")
    ax.set_title("SMAX protoss 5v5 (mean over seeds, 95% bootstrap CI)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def write(out: Path, name: str, markdown: str, records: list) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(markdown)
    (out / f"{name}.json").write_text(json.dumps(records, indent=1))
    print(markdown)
    print(f"wrote {out / name}.md and .json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    diag = sub.add_parser("diagnosis", help="one row per named run")
    diag.add_argument("--runs", nargs="+", required=True, help="'name=run dir' items")
    diag.add_argument("--last-rows", type=int, default=4, help="training log rows averaged for |Q_tot|, return")
    diag.add_argument("--out", type=Path, required=True)
    learn = sub.add_parser("learning", help="ours beside the anchor at every 100k steps")
    learn.add_argument("--ours", nargs="*", type=Path, default=[], help="dirs holding our run dirs")
    learn.add_argument("--anchor", nargs="*", type=Path, default=[], help="jaxmarl_qmix.py JSON outputs")
    learn.add_argument("--t-max", type=int, default=500_000)
    learn.add_argument("--every", type=int, default=100_000)
    learn.add_argument("--window", type=int, default=50_000, help="env steps of tests averaged per checkpoint")
    learn.add_argument("--reps", type=int, default=5000)
    learn.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    diagnosis(args) if args.command == "diagnosis" else learning(args)


if __name__ == "__main__":
    main()
