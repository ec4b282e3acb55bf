"""`python -m softqmix.results <sweep dirs> [--out DIR]`: tables, curves and a marl-eval export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from softqmix.results.report import summarise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m softqmix.results", description=__doc__)
    parser.add_argument("roots", nargs="+", type=Path, help="run dirs, sweep dirs, or trees of them")
    parser.add_argument("--out", type=Path, default=None, help="output dir (default: <first root>/results)")
    parser.add_argument("--reps", type=int, default=5000, help="bootstrap resamples for the CIs")
    parser.add_argument("--confidence", type=float, default=0.95, help="CI level")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap resampling")
    args = parser.parse_args(argv)
    out = args.out or args.roots[0] / "results"
    try:
        report = summarise(args.roots, out, reps=args.reps, confidence=args.confidence, seed=args.bootstrap_seed)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.markdown)
    print(f"written: {', '.join(str(p) for p in [*report.files.values(), *report.curves])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
