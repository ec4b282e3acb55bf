"""Milliseconds per MPE Spread step (3 agents, random actions) through three ways of driving mpe2.

    python benchmarks/mpe_step.py --out benchmarks/results/mpe_step.json

- `parallel_env`: mpe2's `simple_spread_v3.parallel_env()` (PettingZoo's checking wrappers included)
- `aec_to_parallel_raw_env`: PettingZoo's AEC-to-parallel conversion over mpe2's raw env
- `adapter`: this project's `MPESpreadEnv` (raw AEC env stepped agent by agent, paper reward, obs stacked)
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from mpe2 import simple_spread_v3
from pettingzoo.utils.conversions import aec_to_parallel

from softqmix.envs.mpe import MPESpreadEnv


def _parallel_ms(env: Any, actions: np.ndarray) -> float:
    env.reset(seed=0)
    names = list(env.possible_agents)
    started = time.perf_counter()
    for step_actions in actions:
        env.step(dict(zip(names, step_actions.tolist(), strict=True)))
        if not env.agents:
            env.reset()
    return (time.perf_counter() - started) / len(actions) * 1e3


def _adapter_ms(actions: np.ndarray) -> float:
    env = MPESpreadEnv()
    env.reset(seed=0)
    started = time.perf_counter()
    for step_actions in actions:
        result = env.step(step_actions)
        if result.terminated or result.truncated:
            env.reset()
    return (time.perf_counter() - started) / len(actions) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3, help="the fastest of this many passes is reported")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/mpe_step.json"))
    args = parser.parse_args()
    actions = np.random.default_rng(0).integers(0, 5, size=(args.steps, 3))
    ways = {
        "parallel_env": lambda: _parallel_ms(simple_spread_v3.parallel_env(N=3, max_cycles=25), actions),
        "aec_to_parallel_raw_env": lambda: _parallel_ms(
            aec_to_parallel(simple_spread_v3.raw_env(N=3, max_cycles=25)), actions
        ),
        "adapter": lambda: _adapter_ms(actions),
    }
    ms = {name: round(min(run() for _ in range(args.repeats)), 4) for name, run in ways.items()}
    report = {
        "machine": {"python": platform.python_version()},
        "command": f"python benchmarks/mpe_step.py --steps {args.steps} --repeats {args.repeats} --out {args.out}",
        "ms_per_step": ms,
    }
    print(json.dumps(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
