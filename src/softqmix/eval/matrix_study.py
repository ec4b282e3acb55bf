"""Success of matrix-game runs, tabulated over seeds: `python -m softqmix.eval.matrix_study <sweep dirs>`.

A run succeeds when its greedy joint action is the payoff's optimum and the learned Q_tot
there is within `tolerance` of the optimal payoff (the reproduction criterion of issue 2).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml


def optimal_joint_action(payoff: list[list[float]]) -> tuple[int, int]:
    flat = [v for row in payoff for v in row]
    return divmod(max(range(len(flat)), key=flat.__getitem__), len(payoff))


def greedy_is_optimal(summary: dict[str, Any], payoff: list[list[float]]) -> bool:
    return tuple(summary["matrix_game"]["greedy_actions"]) == optimal_joint_action(payoff)


def run_success(summary: dict[str, Any], payoff: list[list[float]], tolerance: float = 1.0) -> bool:
    """Greedy joint action = argmax payoff, and |Q_tot there - payoff there| <= tolerance."""
    if not greedy_is_optimal(summary, payoff):
        return False
    a1, a2 = optimal_joint_action(payoff)
    return abs(summary["matrix_game"]["q_tot"][a1][a2] - payoff[a1][a2]) <= tolerance


def collect_runs(roots: list[Path]) -> list[dict[str, Any]]:
    """Every run dir under the roots that has a summary.json, with its resolved config."""
    runs = []
    for root in roots:
        for summary_path in sorted(root.rglob("summary.json")):
            cfg = yaml.safe_load((summary_path.parent / "config.yaml").read_text())
            runs.append({"dir": summary_path.parent, "summary": json.loads(summary_path.read_text()), "cfg": cfg})
    return runs


def success_table(runs: list[dict[str, Any]], tolerance: float = 1.0) -> list[dict[str, Any]]:
    """One row per (algo, variant, alpha): successes / seeds."""
    groups: dict[tuple[str, str, float | None], list[tuple[bool, bool]]] = defaultdict(list)
    for run in runs:
        algo = run["cfg"]["algo"]
        soft = algo["soft_target"] or algo["behaviour"] == "softmax"
        key = (algo["name"], algo["variant"], algo["alpha"] if soft else None)
        payoff = run["cfg"]["env"]["payoff"]
        groups[key].append((greedy_is_optimal(run["summary"], payoff), run_success(run["summary"], payoff, tolerance)))
    rows = []
    for (name, variant, alpha), results in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        successes = sum(ok for _, ok in results)
        rows.append(
            {
                "algo": name,
                "variant": variant,
                "alpha": alpha,
                "greedy_optimal": sum(g for g, _ in results),
                "successes": successes,
                "runs": len(results),
                "rate": successes / len(results),
            }
        )
    return rows


def to_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| algo | variant | alpha | greedy (A, A) | success | rate |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        alpha = "–" if r["alpha"] is None else f"{r['alpha']:g}"
        lines.append(
            f"| {r['algo']} | {r['variant']} | {alpha} | {r['greedy_optimal']}/{r['runs']} "
            f"| {r['successes']}/{r['runs']} | {100 * r['rate']:.0f}% |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("roots", nargs="+", type=Path, help="sweep or run directories")
    parser.add_argument("--tolerance", type=float, default=1.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = success_table(collect_runs(args.roots), args.tolerance)
    print(to_markdown(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
