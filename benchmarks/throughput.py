"""Training throughput: env steps/s, updates/s, seconds per update and per 100 env steps.

    python benchmarks/throughput.py --out benchmarks/results/throughput.json           # MPE Spread (simple)
    python benchmarks/throughput.py --env smax/protoss_5v5 --warmup 6000 --out benchmarks/results/throughput_smax.json

For each (algo, batch size, pool mode) it trains for `--steps` env steps after `--warmup`
env steps (the buffer fills and the first updates run), at the EPyMARL reference settings:
4 envs, one update per collection of 4 episodes (one per 100 env steps); `--envs 1` gives
EPyMARL's other reference, one env and one update per episode. Reported:
- env_steps_per_s: collection + learning together, after warm-up
- updates_per_s, seconds_per_update (learner only), collect_seconds_per_100_steps (actor + envs)
- peak_rss_mib of this process (worker processes not included)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from softqmix import CONF_DIR
from softqmix.config import register_configs
from softqmix.train import train


class _Clock(L.Callback):
    """Starts the clock when the warm-up ends."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.mark: dict[str, Any] | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: object) -> None:
        if self.mark is None and pl_module.progress.t_env >= self.warmup:
            t = pl_module.timing
            self.mark = {
                "time": time.perf_counter(),
                "t_env": pl_module.progress.t_env,
                "updates": pl_module.progress.updates,
                "update_seconds": t.update_seconds,
                "collect_seconds": t.collect_seconds,
                "collect_steps": t.collect_env_steps,
            }
        self.module = pl_module


def run(
    env: str, algo: str, batch_size: int, mode: str, steps: int, warmup: int, out_dir: Path, n_envs: int = 4
) -> dict[str, Any]:
    register_configs()
    GlobalHydra.instance().clear()
    overrides = [
        f"algo={algo}",
        f"env={env}",
        f"algo.batch_size={batch_size}",
        f"t_max={warmup + steps}",
        f"test_interval={10 * (warmup + steps)}",  # one test at the start only
        "test_nepisode=4",
        f"log_interval={warmup + steps}",
        f"batch_size_run={n_envs}",
        f"pool.mode={mode.split('+')[0]}",
        f"pool.collection={mode.split('+')[1] if '+' in mode else 'serial'}",
        "trainer.enable_progress_bar=false",
        "checkpoint.interval=0",
        "print_report=false",
        "logger=csv",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    clock = _Clock(warmup)
    started = time.perf_counter()
    run_dir = out_dir / f"{env.replace('/', '_')}_{algo}_b{batch_size}_{mode.replace('+', '_')}_e{n_envs}"
    summary = train(cfg, run_dir, extra_callbacks=[clock])
    total = time.perf_counter() - started
    end = time.perf_counter()
    mark, module = clock.mark, clock.module
    assert mark is not None, "warm-up longer than the run"
    t = module.timing
    measured = end - mark["time"]
    updates = module.progress.updates - mark["updates"]
    steps_done = module.progress.t_env - mark["t_env"]
    return {
        "env": env,
        "algo": algo,
        "batch_size": batch_size,
        "pool_mode": mode,
        "n_envs": n_envs,
        "env_steps_measured": steps_done,
        "env_steps_per_s": round(steps_done / measured, 1),
        "updates_per_s": round(updates / measured, 2),
        "seconds_per_update": round((t.update_seconds - mark["update_seconds"]) / max(updates, 1), 5),
        "collect_seconds_per_100_steps": round(
            100 * (t.collect_seconds - mark["collect_seconds"]) / max(t.collect_env_steps - mark["collect_steps"], 1), 5
        ),
        "wall_seconds_total": round(total, 1),
        "final_test_return": summary["final_test_return"],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="mpe/spread_simple", help="an env config, e.g. smax/protoss_5v5")
    parser.add_argument("--algos", nargs="+", default=["qmix", "soft_qmix"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 128])
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["inprocess", "inprocess+thread", "inprocess+process", "workers"],
        help="pool.mode, with +thread or +process for pool.collection=thread|process (default serial)",
    )
    parser.add_argument("--envs", type=int, default=4, help="batch_size_run: one update per this many episodes")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument(
        "--warmup", type=int, default=4_000, help="env steps before timing; at least enough to fill `batch` episodes"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/throughput.json"))
    parser.add_argument("--run-dir", type=Path, default=Path("outputs/benchmarks"))
    args = parser.parse_args()
    rows = []
    for algo in args.algos:
        for batch in args.batch_sizes:
            for mode in args.modes:
                warmup = max(args.warmup, 25 * (batch + 8))  # the buffer must hold `batch` episodes first
                row = run(args.env, algo, batch, mode, args.steps, warmup, args.run_dir, args.envs)
                print(json.dumps(row), flush=True)
                rows.append(row)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "command": "python benchmarks/throughput.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
        ),
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
