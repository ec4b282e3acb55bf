"""Replay inserts of SMAX-shaped rounds into a fresh buffer, by how the buffer's storage is allocated.

    python benchmarks/replay_insert_cost.py --out benchmarks/results/replay_insert_cost_smax_5v5.json

Each round is 16 episodes of protoss 5v5's sizes (200-step slots) whose lengths are drawn from N(55, 12), one of
them 90 steps long, as a SMAX replay round is (benchmarks/replay_batch_lengths.py); it crosses the collection
process's encoding (only the recorded steps, padded back) and is inserted into a 5000-episode buffer, as in a
100k-step run. `--allocators` compares the storage the buffer could use: `mmap` (what it uses: an anonymous map,
zero and not resident until written), `numpy` (calloc-backed zeros, for which numpy asks the kernel for huge
pages) and `empty` (torch.empty: not resident until written, but not guaranteed zero). Each allocator runs in a
fresh process, so that none inherits another's freed pages. Prints and saves JSON: median and total milliseconds
per insert and per decode.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ALLOCATORS = ("mmap", "numpy", "empty")


def _measure(allocator: str, rounds: int, capacity: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from softqmix.data import buffer as buffer_module
    from softqmix.data.buffer import EpisodeBatch, EpisodeBuffer
    from softqmix.data.collector_process import _batch_from_numpy, _batch_to_numpy
    from softqmix.envs.base import EnvInfo

    torch.set_num_threads(1)
    if allocator == "numpy":
        buffer_module.lazy_zeros = lambda shape, dtype: (  # type: ignore[assignment]
            torch.from_numpy(np.zeros(math.prod(shape) * dtype.itemsize, dtype=np.uint8)).view(dtype).view(shape)
        )
    elif allocator == "empty":
        buffer_module.lazy_zeros = lambda shape, dtype: torch.empty(shape, dtype=dtype)  # type: ignore[assignment]
    info = EnvInfo(n_agents=5, n_actions=11, obs_dim=127, state_dim=120, episode_limit=200, reports_wins=True)
    gen = torch.Generator().manual_seed(0)
    lengths = torch.normal(55.0, 12.0, (16,), generator=gen).round().long().clamp(1, 90)
    lengths[0] = 90
    episodes = EpisodeBatch.zeros(16, info)
    for row, length in enumerate(lengths.tolist()):
        for name in ("obs", "state", "avail"):
            getattr(episodes, name)[row, : length + 1] = torch.rand(getattr(episodes, name)[row, : length + 1].shape)
        episodes.actions[row, :length] = torch.randint(0, info.n_actions, (length, info.n_agents), generator=gen)
        episodes.reward[row, :length] = 1.0
        episodes.filled[row, :length] = 1.0
        episodes.terminated[row, length - 1] = 1.0
    message = pickle.dumps(_batch_to_numpy(episodes))
    buffer = EpisodeBuffer(capacity, info)
    decode, insert = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        received = _batch_from_numpy(pickle.loads(message))
        decoded = time.perf_counter()
        buffer.insert(received)
        insert.append(time.perf_counter() - decoded)
        decode.append(decoded - started)
    return {
        "allocator": allocator,
        "rounds": rounds,
        "capacity": capacity,
        "message_mb": round(len(message) / 2**20, 2),
        "insert_ms_median": round(1000 * statistics.median(insert), 2),
        "insert_s_total": round(sum(insert), 3),
        "decode_ms_median": round(1000 * statistics.median(decode), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--allocators", nargs="+", choices=ALLOCATORS, default=list(ALLOCATORS))
    parser.add_argument("--rounds", type=int, default=115, help="a 100k-step SMAX 5v5 run's rounds of 16 battles")
    parser.add_argument("--capacity", type=int, default=5000, help="episodes (algo.buffer_size)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", choices=ALLOCATORS, help=argparse.SUPPRESS)  # the child run of one allocator
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_measure(args.one, args.rounds, args.capacity)))
        return
    rows = []
    for allocator in args.allocators:
        command = [sys.executable, __file__, "--one", allocator, "--rounds", str(args.rounds)]
        output = subprocess.run(
            [*command, "--capacity", str(args.capacity)], check=True, capture_output=True, text=True
        )
        rows.append(json.loads(output.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        command = " ".join(["python", "benchmarks/replay_insert_cost.py", *sys.argv[1:]])
        args.out.write_text(json.dumps({"command": command, "results": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
