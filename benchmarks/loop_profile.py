"""Where a whole training run's time goes: one `train.py` run under cProfile, split into the loop's parts.

    python benchmarks/loop_profile.py --out benchmarks/results/loop_profile_smax_5v5_qmix.json -- \
        algo=qmix env=smax/protoss_5v5 t_max=40000 algo.batch_size=32 batch_size_run=16 algo.env_steps_per_update=256

Everything after `--` is passed to train.py (the script adds csv logging, one torch thread, no periodic
checkpoints and a scratch run dir). Collection must be serial (the default): cProfile sees only the main thread,
so an overlapped collector's time would be missing from the split. Reported:
  * parts: cumulative seconds of the learner's updates, training collection (actor + envs), greedy tests, JAX
    compilation and start-up (imports, config, env construction: everything before the training loop);
  * top: the functions with the most own time (cProfile's tottime), the rows that explain the parts.
cProfile adds a fixed cost per Python call, so Python-heavy parts (collection) look costlier than they are; the
run's own perf/ metrics (seconds per update, collection seconds per 100 env steps), taken without the profiler
in `jaxmarl_speed.py` runs, are the unbiased numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARTS = {  # part -> (file suffix, function name) whose cumulative time it is
    "updates": ("softqmix/algos/learner.py", "update"),
    "training collection": ("softqmix/data/collector.py", "collect"),
    "greedy tests": ("softqmix/loop/module.py", "run_test"),
    "training loop (all)": ("softqmix/fit.py", "fit_run"),
    "JAX compilation": ("jax/_src/compiler.py", "backend_compile_and_load"),
}


def profile_run(overrides: list[str], scratch: Path) -> pstats.Stats:
    out = scratch / "train.prof"
    command = [sys.executable, "-m", "cProfile", "-o", str(out), "train.py", *overrides]
    command += ["logger=csv", "trainer.torch_threads=1", "checkpoint.interval=0", f"hydra.run.dir={scratch / 'run'}"]
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    return pstats.Stats(str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("overrides", nargs="+", help="train.py overrides, after --")
    args = parser.parse_args()
    if any(o.startswith("pool.collection=") and not o.endswith("serial") for o in args.overrides):
        raise SystemExit("profile with pool.collection=serial: cProfile does not see the collection thread")
    with tempfile.TemporaryDirectory() as scratch:
        stats = profile_run(args.overrides, Path(scratch))
        summary = json.loads((Path(scratch) / "run" / "summary.json").read_text())
    total = stats.total_tt  # type: ignore[attr-defined]
    entries = stats.stats  # type: ignore[attr-defined]  # (file, line, name) -> (cc, nc, tottime, cumtime, callers)
    parts = {}
    for part, (suffix, name) in PARTS.items():
        parts[part] = round(sum(v[3] for k, v in entries.items() if k[0].endswith(suffix) and k[2] == name), 2)
    parts["start-up (before the training loop)"] = round(total - parts["training loop (all)"], 2)
    top = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[: args.top]
    rows = [
        {"function": f"{Path(k[0]).name}:{k[1]}({k[2]})", "calls": v[1], "tottime_s": round(v[2], 3),
         "cumtime_s": round(v[3], 3)}
        for k, v in top
    ]  # fmt: skip
    record = {
        "command": " ".join(["python", "benchmarks/loop_profile.py", *sys.argv[1:]]),
        "profiled_seconds": round(total, 2),
        "env_steps": summary["env_steps"],
        "updates": summary["updates"],
        "parts_s": parts,
        "top_by_own_time": rows,
    }
    print(json.dumps({k: v for k, v in record.items() if k != "top_by_own_time"}, indent=1))
    for r in rows:
        print(f"{r['tottime_s']:8.2f} {r['cumtime_s']:8.2f} {r['calls']:8d}  {r['function']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
