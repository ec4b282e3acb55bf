"""Which threads of a running process use the CPU: CPU seconds per thread over a window, from /proc (Linux).

    python train.py algo=qmix env=smax/protoss_5v5 t_max=100000 algo.batch_size=32 batch_size_run=16 \
        algo.env_steps_per_update=256 pool.collection=thread trainer.torch_threads=1 test_interval=100000 \
        test_nepisode=32 logger=csv checkpoint.interval=0 env.jax_cache_dir=<a filled cache> &
    sleep 20; python benchmarks/thread_cpu.py --pid $! --seconds 20 \
        --out benchmarks/results/thread_cpu_smax_5v5_qmix.json

Why: in a training run with overlapped collection the learner's update takes longer than alone, and the question is
whether another thread of the run (the collector, XLA's worker pool, a logger) holds the second core or the update
waits for something else (the GIL, a core shared with a sibling). Threads are named as the OS sees them: the main
thread and Python threads share the process name (`python`), XLA's pool threads are `tf_XLAEigen`. Reported: each
thread with more than 0.05 s in the window, and the totals per name, in CPU seconds and in cores (seconds / window).
Prints and saves JSON.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
from pathlib import Path


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """Thread id -> (name, user + system CPU seconds so far) of every thread of `pid`."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except FileNotFoundError:  # the thread ended between listing and reading
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / ticks)  # utime, stime (stat fields 14, 15)
    return out


def thread_run_and_wait_seconds(pid: int) -> dict[int, tuple[str, float, float]]:
    """Thread id -> (name, seconds run on a CPU, seconds runnable but waiting for one) of every thread of `pid`
    so far, from /proc/<pid>/task/<tid>/schedstat (its first two fields, in nanoseconds)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            ran, waited, _ = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError):  # the thread ended between listing and reading
            continue
        out[int(tid)] = (name, int(ran) / 1e9, int(waited) / 1e9)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not Path(f"/proc/{args.pid}").exists():
        raise SystemExit(f"no process {args.pid} (is it still running?)")
    before, started = thread_cpu_seconds(args.pid), time.perf_counter()
    time.sleep(args.seconds)
    after, window = thread_cpu_seconds(args.pid), time.perf_counter() - started
    threads, per_name, count = [], collections.Counter(), collections.Counter()
    for tid, (name, cpu) in sorted(after.items()):
        used = cpu - before.get(tid, (name, 0.0))[1]
        per_name[name] += used
        count[name] += 1
        if used > 0.05:
            threads.append({"tid": tid, "name": name, "cpu_s": round(used, 2), "cores": round(used / window, 2)})
    names = [
        {"name": name, "threads": count[name], "cpu_s": round(used, 2), "cores": round(used / window, 2)}
        for name, used in per_name.most_common()
    ]
    report = {"pid": args.pid, "window_s": round(window, 1), "busy_threads": threads, "by_name": names}
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
