"""How long the replay batches of a training run are: the steps each sampled batch is unrolled over.

    python benchmarks/replay_batch_lengths.py --out benchmarks/results/replay_batch_lengths_smax_5v5.json -- \\
        algo=qmix env=smax/protoss_5v5 t_max=60000 algo.batch_size=32 batch_size_run=16 \\
        algo.env_steps_per_update=256 pool.collection=thread test_interval=60000 test_nepisode=16 logger=csv

Why: a batch is cut to its longest episode, so the cost of a value learner's update follows the longest of its
B episodes, not their mean. This runs `softqmix.train` with the overrides after `--` and records the length of
every batch the replay buffer hands out. Prints and saves JSON (count, mean, max, and a histogram in 25-step bins).
"""

from __future__ import annotations

import argparse
import collections
import json
import runpy
import sys
from pathlib import Path

from softqmix.data import buffer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("overrides", nargs="*", help="softqmix.train overrides, after --")
    args = parser.parse_args()

    lengths: list[int] = []
    sample = buffer.EpisodeBuffer.sample

    def recording_sample(self: buffer.EpisodeBuffer, *a: object, **k: object) -> buffer.EpisodeBatch:
        batch = sample(self, *a, **k)
        lengths.append(int(batch.actions.shape[1]))
        return batch

    buffer.EpisodeBuffer.sample = recording_sample  # type: ignore[method-assign]
    sys.argv = ["softqmix.train", *args.overrides]
    try:
        runpy.run_module("softqmix.train", run_name="__main__")
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise
    result = {
        "command": "python benchmarks/replay_batch_lengths.py -- " + " ".join(args.overrides),
        "batches": len(lengths),
        "mean_steps": round(sum(lengths) / max(len(lengths), 1), 1),
        "max_steps": max(lengths, default=0),
        "histogram_25_step_bins": dict(sorted(collections.Counter(t // 25 * 25 for t in lengths).items())),
    }
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
