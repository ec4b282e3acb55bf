"""Where a training run's time goes, per process and per part, from a py-spy raw profile (both of the processes
of a run with a spawned collector).

  pip install py-spy   # a profiler, not a dependency of the project
  py-spy record -r 50 --subprocesses -f raw -o prof.txt -- python train.py algo=qmix env=smax/protoss_5v5 \
      t_max=100000 algo.batch_size=32 batch_size_run=16 algo.env_steps_per_update=256 pool.collection=process \
      trainer.torch_threads=1 test_interval=100000 test_nepisode=32 logger=csv checkpoint.interval=0
  python benchmarks/profile_split.py prof.txt --rate 50 --out benchmarks/results/profile_split_smax_5v5_qmix.json

py-spy samples threads while they run Python or native code, not while they wait, so the seconds are CPU-busy
seconds of sampled threads (inflated by the profiler by roughly 10-20%). Each sample of the learner's process is
put in the first part whose marker its stack holds, in this order: imports, the update's forward pass
(`compute_losses`), its backward pass (`manual_backward`), the batch stream (sampling a replay batch and waiting
for a round), greedy tests, anything else; the collector's samples go to imports, collection or anything else.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

LEARNER_PARTS = (
    ("imports", "_find_and_load"),
    ("update: forward (compute_losses)", "compute_losses"),
    ("update: backward", "manual_backward"),
    ("batch stream (sample, wait for a round)", "_DataFetcher.__next__"),
    ("greedy tests", "GreedyEvaluation"),
)
COLLECTOR_PARTS = (("imports", "_find_and_load"), ("collection", "_collect_round"))


def split(lines: list[str], rate: float) -> dict[str, dict[str, float]]:
    out: dict[str, collections.Counter[str]] = {"learner": collections.Counter(), "collector": collections.Counter()}
    for line in lines:
        stack, count = line.rsplit(" ", 1)
        frames = stack.split(";")
        if len(frames) < 2:
            continue
        # a spawned child's stack starts with multiprocessing's spawn_main; the learner's with train.py
        who = "collector" if any("spawn_main" in f for f in frames[:3]) else "learner"
        parts = COLLECTOR_PARTS if who == "collector" else LEARNER_PARTS
        part = next((name for name, marker in parts if marker in stack), "other")
        out[who][part] += int(count)
    return {who: {k: round(v / rate, 1) for k, v in c.most_common()} for who, c in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path, help="py-spy record -f raw output")
    parser.add_argument("--rate", type=float, default=50.0, help="the -r given to py-spy (samples per second)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = {
        "profile": args.profile.name,
        "rate": args.rate,
        **split(args.profile.read_text().splitlines(), args.rate),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
