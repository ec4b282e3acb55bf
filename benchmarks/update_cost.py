"""The learner's update alone: milliseconds per update on a replay batch of real episode shapes, and where they go.

    python benchmarks/update_cost.py --env mpe/spread_simple --algos qmix soft_qmix --batch-sizes 32 128
    python benchmarks/update_cost.py --env smax/protoss_5v5 --algos qmix soft_qmix --batch-sizes 128 --profile
    python benchmarks/update_cost.py --env smax/protoss_5v5 --algos qmix soft_qmix --batch-sizes 32 \
        --mean-length 55 --longest 90 --out benchmarks/results/update_cost_smax_5v5_typical.json
    python benchmarks/update_cost.py --env smax/protoss_5v5 --algos qmix soft_qmix --batch-sizes 32 \
        --mean-length 55 --longest 90 --overrides algo.packed_unroll_max_live=0 \
        --out benchmarks/results/update_cost_smax_5v5_typical_padded.json
    python benchmarks/update_cost.py --env smax/protoss_5v5 --algos qmix --batch-sizes 32 --mean-length 55 \
        --longest 90 --beside spin --out benchmarks/results/update_cost_smax_5v5_beside_spin.json   # also: copy

Builds the learner for the env's sizes (the env is made once to read them), fills a batch of full-length
episodes (or, with `--mean-length`, of battles whose lengths are drawn from N(mean, 12), one of them `--longest`
steps long, as a SMAX replay batch is: benchmarks/replay_batch_lengths.py) with random observations, legal-action
masks and actions, and times `Learner.update` (losses, backward, clipping, optimizer steps, target copies) after a
warm-up, in one torch thread. A learner that samples transitions (HASAC: `--batch-sizes` counts transitions) gets
its batch from a buffer of such episodes through its own `sample_replay`, whose time per batch is reported beside
(`sample_ms_median`). `--profile` adds torch.profiler's table of the ops that take the time. Reports wall and
thread CPU milliseconds (the second stays close to the update's cost when other processes share the cores).
`--beside spin|copy` times the update while another process keeps the other core busy, with arithmetic or with
memory traffic: whether the two cores slow each other down when both work. Prints and saves JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from softqmix import CONF_DIR
from softqmix.algos.learner import Learner
from softqmix.algos.registry import build_learner
from softqmix.config import register_configs
from softqmix.data.buffer import EpisodeBatch, EpisodeBuffer
from softqmix.envs import make_env
from softqmix.envs.base import EnvInfo


def random_batch(
    info: EnvInfo, batch_size: int, seed: int = 0, mean_length: float | None = None, longest: int | None = None
) -> EpisodeBatch:
    """Full-length episodes (the costliest case), or terminated ones of random lengths (`mean_length`) cut to the
    longest; every agent with a random non-empty set of legal actions."""
    gen = torch.Generator().manual_seed(seed)
    if mean_length is not None:
        limit = longest or info.episode_limit
        lengths = torch.normal(mean_length, 12.0, (batch_size,), generator=gen).round().long().clamp(1, limit)
        lengths[0] = limit
        full = random_batch(info, batch_size, seed)
        batch = EpisodeBatch(
            **{k: v[:, : limit + (1 if k in ("obs", "state", "avail") else 0)].clone() for k, v in vars(full).items()}
        )
        steps = torch.arange(limit)
        batch.filled.copy_((steps[None] < lengths[:, None]).float())
        batch.terminated.copy_((steps[None] == lengths[:, None] - 1).float())
        return batch
    batch = EpisodeBatch.zeros(batch_size, info)
    batch.obs.copy_(torch.randn(batch.obs.shape, generator=gen))
    batch.state.copy_(torch.randn(batch.state.shape, generator=gen))
    avail = (torch.rand(batch.avail.shape, generator=gen) > 0.3).float()
    avail[..., 1] = 1.0
    batch.avail.copy_(avail)
    legal = avail[:, :-1].reshape(-1, info.n_actions)
    batch.actions.copy_(torch.multinomial(legal, 1, generator=gen).view(batch.actions.shape))
    batch.reward.copy_(torch.randn(batch.reward.shape, generator=gen))
    batch.filled.fill_(1.0)
    batch.terminated[:, -1] = 1.0
    return batch


def replay_batch(
    learner: Learner, info: EnvInfo, batch_size: int, mean_length: float | None = None, longest: int | None = None
) -> tuple[Any, float | None]:
    """What the training loop hands this learner: `batch_size` random episodes, or, for a learner that samples
    transitions, `batch_size` of them from twice as many full-length episodes as they need (and the median
    milliseconds of drawing such a batch)."""
    if type(learner).sample_replay is Learner.sample_replay:
        return random_batch(info, batch_size, 0, mean_length, longest), None
    episodes = 2 * math.ceil(batch_size / info.episode_limit)
    buffer = EpisodeBuffer(episodes, info)
    buffer.insert(random_batch(info, episodes))
    times = []
    for _ in range(20):
        started = time.perf_counter()
        batch = learner.sample_replay(buffer)
        times.append(time.perf_counter() - started)
    return batch, round(1000 * statistics.median(times), 2)


def measure(
    algo_cfg: Any,
    info: EnvInfo,
    obs_last_action: bool,
    batch_size: int,
    updates: int,
    warmup: int,
    profile: bool,
    mean_length: float | None = None,
    longest: int | None = None,
) -> dict[str, Any]:
    torch.manual_seed(0)
    learner = build_learner(algo_cfg, info, obs_last_action)
    optimizers = learner.make_optimizers()
    batch, sample_ms = replay_batch(learner, info, batch_size, mean_length, longest)
    for _ in range(warmup):
        learner.update(batch, optimizers)
    times, cpu = [], []
    for _ in range(updates):
        started, started_cpu = time.perf_counter(), time.thread_time()
        learner.update(batch, optimizers)
        times.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - started_cpu)
    row: dict[str, Any] = {
        "algo": algo_cfg.name,
        "batch_size": batch_size,
        "ms_per_update_median": round(1000 * statistics.median(times), 2),
        "ms_per_update_mean": round(1000 * statistics.fmean(times), 2),
        # CPU time of this thread: what the update costs, also while other processes share the cores
        "cpu_ms_per_update_median": round(1000 * statistics.median(cpu), 2),
        "updates_timed": updates,
    }
    if sample_ms is not None:
        row["sample_ms_median"] = sample_ms
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                learner.update(batch, optimizers)
        row["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    return row


BESIDE = {  # another process's load on the other core (--beside)
    "spin": "while True: pass",
    "copy": "import numpy as np\na = np.ones(2**25, np.float32)\nb = np.empty_like(a)\nwhile True: np.copyto(b, a)",
}


def measure_all(args: argparse.Namespace) -> tuple[list[dict[str, Any]], Any]:
    """One row per algorithm and batch size, and the env's sizes."""
    rows: list[dict[str, Any]] = []
    info = None
    for algo in args.algos:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=[f"algo={algo}", f"env={args.env}", *args.overrides])
        if info is None:
            env = make_env(cfg.env)
            info = env.info()
            env.close()
        for batch_size in args.batch_sizes:
            row = measure(
                cfg.algo,
                info,
                cfg.env.obs_last_action,
                batch_size,
                args.updates,
                args.warmup,
                args.profile,
                args.mean_length,
                args.longest,
            )
            row["env"] = args.env
            table = row.pop("profile", None)
            print(json.dumps(row), flush=True)
            if table:
                print(table, flush=True)
                row["profile"] = table
            rows.append(row)
    return rows, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="mpe/spread_simple")
    parser.add_argument("--algos", nargs="+", default=["qmix", "soft_qmix"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 128])
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--overrides", nargs="*", default=[], help="more config overrides, e.g. algo.g_hidden=8")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--mean-length", type=float, default=None, help="episodes of random lengths (not full)")
    parser.add_argument("--longest", type=int, default=None, help="with --mean-length: the batch's longest episode")
    parser.add_argument(
        "--beside",
        choices=sorted(BESIDE),
        default=None,
        help="time the updates while another process keeps the other core busy: `spin`, a pure Python loop "
        "(arithmetic units), or `copy`, numpy copying 128 MiB arrays (memory traffic)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    register_configs()
    with contextlib.ExitStack() as stack:
        if args.beside:
            load = subprocess.Popen([sys.executable, "-c", BESIDE[args.beside]])
            stack.callback(load.wait)
            stack.callback(load.kill)
        rows, info = measure_all(args)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "command": "python benchmarks/update_cost.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if v not in (None, False, [])
        ),
        "env_info": info.__dict__ if info else None,
        "results": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
