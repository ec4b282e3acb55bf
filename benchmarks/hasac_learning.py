"""HASAC's learning check on MPE Spread (simple): final greedy return against a uniform policy, seed by seed.

    python benchmarks/hasac_learning.py --seeds 0 1 2 --out benchmarks/results/hasac_learning_mpe.json

Each seed trains HASAC for `--t-max` env steps with the paper_mpe recipe's HASAC settings (8 envs, the time
limit bootstrapped, no value normalisation, squared-error critic loss) scaled down to a CPU budget: a 2000-step
warm-up instead of 10000, [64, 64] nets instead of [256, 256], batches of 256 transitions instead of 1000 (one
update per 8 env steps, as HARL). The statistic is each seed's final greedy test return (32 episodes) minus the
mean return of a uniform policy over `--uniform-episodes` episodes of the same env; tests/test_hasac.py
(`-m slow`) asserts it. The runs go one after another in this process, one torch thread. Prints and saves JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from softqmix import CONF_DIR
from softqmix.config import register_configs
from softqmix.data.collector import EpisodeCollector
from softqmix.envs.pool import EnvPool
from softqmix.envs.registry import env_factory
from softqmix.train import train

SETTINGS = [
    "algo=hasac",
    "env=mpe/spread_simple",
    "batch_size_run=8",
    "env.time_limit_is_termination=false",
    "algo.value_norm=false",
    "algo.huber_loss=false",
    "algo.warmup_steps=2000",
    "algo.hidden_sizes=[64,64]",
    "algo.batch_size=256",
    "test_nepisode=32",
    "log_interval=1000",
    "checkpoint.interval=0",
    "logger=csv",
    "print_report=false",
    "trainer.enable_progress_bar=false",
]


class UniformActor:
    """Uniform over each agent's available actions (MPE: all five)."""

    def initial_hidden(self, n_envs: int) -> torch.Tensor:
        return torch.zeros(n_envs)

    def act(self, obs, state, avail, last, hidden, explore):  # type: ignore[no-untyped-def]
        flat = avail.reshape(-1, avail.shape[-1]).float()
        return torch.multinomial(flat, 1).view(avail.shape[:-1]), hidden


def compose_run(overrides: list[str]) -> Any:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def uniform_return(cfg: Any, episodes: int, seed: int) -> float:
    torch.manual_seed(seed)
    collector = EpisodeCollector(EnvPool(env_factory(cfg.env), 8, name="mpe/spread_simple"), seed=seed)
    returns: list[float] = []
    try:
        while len(returns) < episodes:
            returns += collector.collect(UniformActor(), explore=True)[1].returns
    finally:
        collector.close()
    return float(np.mean(returns[:episodes]))


def run(seeds: list[int], t_max: int, uniform_episodes: int, uniform_seed: int) -> dict[str, Any]:
    register_configs()
    rows = []
    base = compose_run([*SETTINGS, f"t_max={t_max}", f"test_interval={t_max // 3}"])
    uniform = uniform_return(base, uniform_episodes, uniform_seed)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            started = time.perf_counter()
            cfg = compose_run([*SETTINGS, f"t_max={t_max}", f"test_interval={t_max // 3}", f"seed={seed}"])
            summary = train(cfg, Path(tmp) / f"seed{seed}")
            final = float(summary["final_test_return"])
            rows.append(
                {
                    "seed": seed,
                    "final_test_return": round(final, 2),
                    "gap_to_uniform": round(final - uniform, 2),
                    "test_returns": [round(t["test/return_mean"], 2) for t in summary["tests"]],
                    "updates": summary["updates"],
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    gaps = [row["gap_to_uniform"] for row in rows]
    return {
        "uniform_return": round(uniform, 2),
        "uniform_episodes": uniform_episodes,
        "mean_gap": round(float(np.mean(gaps)), 2),
        "min_gap": min(gaps),
        "runs": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--t-max", type=int, default=30_000)
    parser.add_argument("--uniform-episodes", type=int, default=256)
    parser.add_argument("--uniform-seed", type=int, default=0, help="env seed of the uniform policy's episodes")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "command": f"python benchmarks/hasac_learning.py --seeds {' '.join(map(str, args.seeds))} "
        f"--t-max {args.t_max} --uniform-episodes {args.uniform_episodes} --uniform-seed {args.uniform_seed}",
        "settings": SETTINGS,
        **run(args.seeds, args.t_max, args.uniform_episodes, args.uniform_seed),
    }
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
