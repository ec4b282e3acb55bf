"""Whole training runs under different `pool.cpu_placement` settings, taken in turns: wall time, and how long each
thread of the learner and of its collection process ran and waited for a CPU (Linux).

    python benchmarks/cpu_placement.py --repeats 3 --out benchmarks/results/cpu_placement_smax_5v5_qmix.json \
        --arms "pool.cpu_placement=shared" "pool.cpu_placement=pinned" -- \
        algo=qmix env=smax/protoss_5v5 t_max=100000 algo.batch_size=32 batch_size_run=16 \
        algo.env_steps_per_update=256 pool.collection=process trainer.torch_threads=1 test_interval=100000 \
        test_nepisode=32 logger=csv checkpoint.interval=0 env.jax_cache_dir=<a filled cache>

Why: with a collection process the learner's main thread is the loop's critical path, and the question is whether
the other threads (the collection process's, XLA's, the target unroll's) take its core. Each run is sampled once
over `--window` seconds, `--sample-at` seconds after it starts (inside the training loop for the runs above):
per thread, the CPU seconds it ran and the seconds it was runnable but waited for a CPU (/proc/<tid>/schedstat,
fields 1 and 2). `wall_s` is the process from start to exit; `fit_s` the run's own `wall_seconds` (the loop).
This machine's speed drifts by tens of percent over minutes, so arms take turns and only adjacent runs compare.
Prints and saves JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from thread_cpu import thread_run_and_wait_seconds  # beside this script

ROOT = Path(__file__).resolve().parent.parent


def collection_process(pid: int) -> int | None:
    """The collection process: the learner's child that runs multiprocessing's spawn_main (spawned, SMAX) or the
    learner's own command line (forked); not multiprocessing's resource tracker."""
    own = Path(f"/proc/{pid}/cmdline").read_bytes()
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        command = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"spawn_main" in command or command == own:
            return int(child)
    return None


def sample(pid: int, window: float) -> list[dict[str, object]]:
    """Per busy thread (> 0.05 s run in the window) of the learner and its collection process."""
    procs = {"learner": pid}
    child = collection_process(pid)
    if child is not None:
        procs["collection process"] = child
    before = {role: thread_run_and_wait_seconds(p) for role, p in procs.items()}
    time.sleep(window)
    rows = []
    for role, p in procs.items():
        for tid, (name, ran, waited) in thread_run_and_wait_seconds(p).items():
            if tid not in before[role]:
                continue
            _, ran0, waited0 = before[role][tid]
            if ran - ran0 > 0.05:
                main = " (main thread)" if tid == p else ""
                rows.append(
                    {
                        "process": role,
                        "thread": f"{name}{main}",
                        "ran_s": round(ran - ran0, 2),
                        "waited_for_cpu_s": round(waited - waited0, 2),
                    }
                )
    return rows


def run(arm: list[str], base: list[str], sample_at: float, window: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "train.py", *base, *arm, f"hydra.run.dir={tmp}/run"]
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(sample_at)
        threads = sample(proc.pid, window) if proc.poll() is None else []
        code = proc.wait()
        wall = time.perf_counter() - started
        summary_file = Path(tmp) / "run" / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {code}")
    return {"wall_s": round(wall, 2), "fit_s": summary.get("wall_seconds"), "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", nargs="+", required=True, help="one quoted string of overrides per arm")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample-at", type=float, default=14.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("base", nargs="+", help="overrides every arm shares (after --)")
    args = parser.parse_args()
    rows = []
    for repeat in range(1, args.repeats + 1):
        for arm in args.arms:
            row = {"arm": arm, "repeat": repeat, **run(arm.split(), args.base, args.sample_at, args.window)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    medians = {
        arm: {
            "wall_s": statistics.median(r["wall_s"] for r in rows if r["arm"] == arm),
            "fit_s": statistics.median(r["fit_s"] for r in rows if r["arm"] == arm),
        }
        for arm in args.arms
    }
    result = {
        "command": [sys.executable, *sys.argv],
        "base_overrides": args.base,
        "cpus": len(os.sched_getaffinity(0)),
        "sample": {"at_s": args.sample_at, "window_s": args.window},
        "rows": rows,
        "medians": medians,
    }
    print(json.dumps(medians, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
