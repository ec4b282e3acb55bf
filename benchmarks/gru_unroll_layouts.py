"""Cost of one agent-GRU forward and backward pass over a replay batch, in four layouts, on `--threads` CPU threads.

    python benchmarks/gru_unroll_layouts.py --limit 90 --bucket 70 \\
        --out benchmarks/results/gru_unroll_layouts_typical_with_ours.json
    python benchmarks/gru_unroll_layouts.py --limit 146 --bucket 90 \\
        --out benchmarks/results/gru_unroll_layouts_longest_with_ours.json

(`gru_unroll_layouts_{typical,longest,typical_2threads}.json` are the same commands, `--threads 2` for the last,
run before the fourth layout existed.)

Why: a value learner's update on SMAX unrolls the agent GRU over every step of its batch, cut to the batch's
longest episode, while most battles are much shorter. Could unrolling each episode only to its own length pay?
The batch here is 32 episodes x 5 agents, lengths drawn from N(`--mean-length`, 12) (clamped to [20, limit]) and
one episode at `--limit`: on protoss 5v5 QMIX batches are 89.5 steps long on average and at most 146
(benchmarks/replay_batch_lengths.py, benchmarks/results/replay_batch_lengths_smax_5v5.json). Layouts:

  padded    nn.GRU over the whole batch, to the longest episode (the learner with algo.packed_unroll_max_live=0)
  packed    torch's PackedSequence through nn.GRU, each row unrolled to its own length
  bucketed  two nn.GRU unrolls: the episodes within `--bucket` steps, and the rest at full length
  ours      softqmix.nets.packed_gru: each row over its own length, hand-written backward (the learner's default)

Prints and saves JSON (ms per pass, median of `--repeats`, the layouts taking turns).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from softqmix.nets.packed_gru import pack_plan, packed_gru


def timed_ms(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median ms per call of each step; the steps take turns in every repeat, so a slow spell of the machine
    falls on all of them alike instead of on whichever ran during it."""
    for step in steps.values():
        step()  # allocations and first-call costs out of the measurement
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            samples[name].append((time.perf_counter() - started) * 1e3)
    return {name: round(statistics.median(values), 1) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--mean-length", type=float, default=55.0)
    parser.add_argument("--bucket", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gru = nn.GRU(args.hidden, args.hidden, batch_first=True)
    lengths = torch.normal(args.mean_length, 12.0, (args.episodes,)).round().long().clamp(20, args.limit)
    lengths[0] = args.limit  # one battle at the time limit
    steps = args.limit + 1  # the bootstrap observation after the last step
    rows = (lengths + 1).repeat_interleave(args.agents)
    inputs = torch.randn(args.episodes * args.agents, steps, args.hidden, requires_grad=True)

    def padded() -> None:
        gru(inputs)[0].sum().backward()

    def packed() -> None:
        seq = nn.utils.rnn.pack_padded_sequence(inputs, rows, batch_first=True, enforce_sorted=False)
        gru(seq)[0].data.sum().backward()

    short = rows <= args.bucket + 1

    def bucketed() -> None:
        a = gru(inputs[short, : args.bucket + 1])[0]
        b = gru(inputs[~short])[0]
        (a.sum() + b.sum()).backward()

    plan = pack_plan(rows, n_agents=1, steps=steps)
    flat = inputs.reshape(-1, args.hidden)

    def ours() -> None:
        packed_gru(flat.index_select(0, plan.rows), gru, plan).sum().backward()

    layouts = {"padded": padded, "packed": packed, "bucketed": bucketed, "ours": ours}
    result = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "mean_row_length": float(rows.float().mean()),
        "rows_in_long_bucket": int((~short).sum()),
        "ms_per_forward_backward": timed_ms(layouts, args.repeats),
    }
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
