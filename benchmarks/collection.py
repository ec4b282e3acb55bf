"""Collection alone: env steps/s of whole exploring episodes for 4 / 16 / 64 envs, no learning.

    python benchmarks/collection.py --env smax/protoss_5v5 --envs 4 16 64 \
        --out benchmarks/results/collection_smax_5v5.json

For each number of envs it times `EpisodeCollector.collect` with an untrained QMIX actor (epsilon-greedy at
epsilon 1 after its schedule, one batched actor call per step for all envs and agents), after one warm-up
round (jit compilation for SMAX). `--layouts vector separate`: SMAX's one jitted, vmapped call for all envs
(the in-process default) against one SMAXEnv per env stepped in turn; `vector-per-env` is the same vector env
seen through its per-env interface, which makes the collector loop over envs instead of writing each step with
array ops (the collector's path before the VectorEnv interface). Env steps are the episodes' real steps (a
finished env's idle steps in the vector do not count; `idle_share` is their share of the steps computed); CPU
seconds are the process's, XLA's threads included.
Prints and saves JSON.

    python benchmarks/collection.py --env smax/protoss_5v5 --envs 16 64 --layouts vector vector-per-env \
        --out benchmarks/results/collection_smax_5v5_arrays.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from softqmix import CONF_DIR
from softqmix.algos.registry import build_learner
from softqmix.config import register_configs
from softqmix.data.collector import EpisodeCollector
from softqmix.envs.pool import EnvPool, PerEnvView
from softqmix.envs.registry import env_factory, vector_env_factory


def measure(cfg: Any, n_envs: int, layout: str, rounds: int) -> dict[str, Any]:
    vector = vector_env_factory(cfg.env) if layout != "separate" else None
    if layout != "separate" and vector is None:
        raise SystemExit(f"env family {cfg.env.family} has no vector form")
    if layout == "vector-per-env":
        vector = (lambda make: lambda n: PerEnvView(make(n)))(vector)
    pool = EnvPool(env_factory(cfg.env), n_envs, name=cfg.env.name, vector_factory=vector)
    collector = EpisodeCollector(pool, seed=0, name=cfg.env.name)
    torch.manual_seed(0)
    learner = build_learner(cfg.algo, collector.info, cfg.env.obs_last_action)
    collector.collect(learner.actor, explore=True)  # warm-up: compilation, first allocations
    steps, vector_steps, started, cpu = 0, 0, time.perf_counter(), time.process_time()
    for _ in range(rounds):
        _, stats = collector.collect(learner.actor, explore=True)
        steps += stats.env_steps
        vector_steps += max(stats.lengths)  # every env is stepped until the round's longest episode ends
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    collector.close()
    return {
        "env": f"{cfg.env.family}/{cfg.env.name}",
        "layout": layout,
        "n_envs": n_envs,
        "env_steps": steps,
        "env_steps_per_s": round(steps / wall, 1),
        "cpu_seconds_per_1k_env_steps": round(1000 * cpu / steps, 3),
        # the share of the env steps computed that belong to an episode that had already ended
        "idle_share": round(1 - steps / (n_envs * vector_steps), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="smax/protoss_5v5")
    parser.add_argument("--envs", nargs="+", type=int, default=[4, 16, 64])
    parser.add_argument(
        "--layouts", nargs="+", default=["vector", "separate"], choices=["vector", "vector-per-env", "separate"]
    )
    parser.add_argument("--env-steps", type=int, default=20_000, help="about this many timed env steps per row")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["algo=qmix", f"env={args.env}"])
    rows = []
    for layout in args.layouts:
        for n_envs in args.envs:
            rounds = max(1, args.env_steps // (n_envs * cfg.env.get("episode_limit", 100) // 2))
            row = measure(cfg, n_envs, layout, rounds)
            print(json.dumps(row), flush=True)
            rows.append(row)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "command": "python benchmarks/collection.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if v is not None
        ),
        "results": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
