"""Single runs side by side: `python -m softqmix.eval.curves LABEL=RUN_DIR ... --out fig.png`.

For sweeps (several seeds per method, CI bands, tables) use `python -m softqmix.results`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt

from softqmix.results.runs import read_test_curve


def plot_runs(runs: dict[str, Path], out: Path, title: str, column: str = "test/return_mean") -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, run_dir in runs.items():
        steps, values = read_test_curve(run_dir, column)
        ax.plot(steps, values, label=label, linewidth=1.4)
    ax.set_xlabel("env steps")
    ax.set_ylabel(column)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR pairs")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="")
    parser.add_argument("--column", default="test/return_mean")
    args = parser.parse_args(argv)
    runs = dict(item.split("=", 1) for item in args.runs)
    plot_runs({k: Path(v) for k, v in runs.items()}, args.out, args.title, args.column)


if __name__ == "__main__":
    main()
