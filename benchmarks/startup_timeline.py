"""When each stage of a run's start-up happens, in the learner and in a spawned collection process, and where the
learner's time in the loop goes.

    python benchmarks/startup_timeline.py --out benchmarks/results/startup_timeline_smax_5v5_qmix.json -- \
        algo=qmix env=smax/protoss_5v5 t_max=100000 algo.batch_size=32 batch_size_run=16 \
        algo.env_steps_per_update=256 pool.collection=process trainer.torch_threads=1 test_interval=100000 \
        test_nepisode=32 logger=csv checkpoint.interval=0

Runs `train.py` with the overrides after `--` in a fresh interpreter, timed from just before that interpreter
starts, with markers around the stages that decide when the first update can run: the learner's imports (torch
and our config code; jaxmarl in `check_env_requirements`; Lightning before the envs are built), its envs, its
first greedy test and its wait for the first rounds; the child's imports, env build, warm-up (`serve` starts once
the envs are built and warmed up) and its first rounds. The markers wrap functions from outside (nothing in the
package changes), so each run's own timings are what the JSON holds: one run, not a benchmark of many. The
JSON has every event (seconds since start, process, event) and the milestones read off them, and
`learner_call_totals`: every call of the learner's loop steps (an update, a replay insert and sample, receiving a
round from the child), counted, with their wall and thread-CPU seconds, median and longest.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EVENTS = "STARTUP_TIMELINE_EVENTS"  # the file both processes append their events to
STARTED = "STARTUP_TIMELINE_T0"  # time.time() just before the run's interpreter was started


def _marker(process: str) -> Any:
    path, started = os.environ[EVENTS], float(os.environ[STARTED])

    def mark(event: str) -> None:
        with open(path, "a") as handle:  # one short line per write: the two processes' lines do not mix
            handle.write(json.dumps({"s": round(time.time() - started, 3), "process": process, "event": event}) + "\n")

    return mark


def _wrap(mark: Any, owner: Any, name: str, label: str, calls: int = 1) -> None:
    """Mark the start and end of the first `calls` calls of owner.name."""
    original = getattr(owner, name)
    count = {"n": 0}

    @functools.wraps(original)
    def marked(*args: Any, **kwargs: Any) -> Any:
        count["n"] += 1
        if count["n"] > calls:
            return original(*args, **kwargs)
        mark(f"{label} #{count['n']} starts")
        result = original(*args, **kwargs)
        mark(f"{label} #{count['n']} ends")
        return result

    setattr(owner, name, marked)


def _time_calls(calls: dict[str, list[tuple[float, float]]], owner: Any, name: str, label: str) -> None:
    """Record the wall and thread-CPU seconds of every call of owner.name under `label`."""
    original = getattr(owner, name)
    calls[label] = []

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            calls[label].append((time.perf_counter() - wall, time.thread_time() - cpu))

    setattr(owner, name, timed)


def call_totals(calls: dict[str, list[tuple[float, float]]]) -> dict[str, dict[str, float]]:
    """Per label: calls, total wall and CPU seconds, median and longest call in milliseconds."""
    totals = {}
    for label, times in calls.items():
        if not times:
            continue
        walls = [wall for wall, _ in times]
        totals[label] = {
            "calls": len(times),
            "wall_s": round(sum(walls), 3),
            "cpu_s": round(sum(cpu for _, cpu in times), 3),
            "median_ms": round(1000 * statistics.median(walls), 2),
            "max_ms": round(1000 * max(walls), 2),
        }
    return totals


def _run_learner(overrides: list[str]) -> None:
    mark = _marker("learner")
    mark("interpreter up")
    import torch  # noqa: F401

    mark("torch imported")
    from softqmix import train
    from softqmix.data import collector_process

    mark("softqmix.train imported")
    from softqmix.algos.learner import Learner
    from softqmix.data.buffer import EpisodeBuffer

    calls: dict[str, list[tuple[float, float]]] = {}
    for owner, name, label in (
        (Learner, "update", "update"),
        (EpisodeBuffer, "insert", "replay insert"),
        (EpisodeBuffer, "sample", "replay sample"),
        (collector_process.CollectorProcess, "receive", "receive round"),
    ):
        _time_calls(calls, owner, name, label)
    _wrap(mark, train, "_spawn_collection_process", "spawn collection process")
    _wrap(mark, train, "check_env_requirements", "import jaxmarl (check_env_requirements)")
    build = train._build_collectors_and_fit

    def build_marked(*args: Any, **kwargs: Any) -> Any:
        mark("Lightning imported; envs and learner next")
        from softqmix.loop import module

        _wrap(mark, module.TrainingLoop, "run_test", "greedy test", calls=2)
        _wrap(mark, module.TrainingLoop, "training_step", "update")
        return build(*args, **kwargs)

    train._build_collectors_and_fit = build_marked
    _wrap(mark, collector_process.CollectorProcess, "receive", "receive round", calls=3)
    sys.argv = ["train.py", *overrides]
    from softqmix.cli_checks import run_train_cli

    try:
        run_train_cli()
    finally:
        mark("learner exits")
        with open(os.environ[EVENTS], "a") as handle:
            handle.write(json.dumps({"process": "learner", "call_totals": call_totals(calls)}) + "\n")


def _prepare_child() -> None:
    """Runs in a spawned child, which imports this script as its main module."""
    mark = _marker("child")
    mark("interpreter up")
    import torch  # noqa: F401

    mark("torch imported")
    from softqmix.data import collector_process

    _wrap(mark, collector_process.PoolRecipe, "build", "build envs")
    _wrap(mark, collector_process, "serve", "serve (envs built and warmed up)")
    _wrap(mark, collector_process, "_collect_round", "collect round", calls=3)


def milestones(events: list[dict[str, Any]]) -> dict[str, float | None]:
    def at(process: str, event: str) -> float | None:
        return next((e["s"] for e in events if e["process"] == process and e["event"] == event), None)

    return {
        "child_spawned_s": at("learner", "spawn collection process #1 starts"),
        "child_ready_s": at("child", "serve (envs built and warmed up) #1 starts"),
        "child_first_round_done_s": at("child", "collect round #1 ends"),
        "learner_lightning_imported_s": at("learner", "Lightning imported; envs and learner next"),
        "learner_first_test_s": at("learner", "greedy test #1 starts"),
        "learner_first_test_done_s": at("learner", "greedy test #1 ends"),
        "learner_second_test_s": at("learner", "greedy test #2 starts"),
        "learner_second_test_done_s": at("learner", "greedy test #2 ends"),
        "learner_waits_for_round_1_from_s": at("learner", "receive round #1 starts"),
        "learner_has_round_1_s": at("learner", "receive round #1 ends"),
        # Lightning's first training step starts, takes the first batch (which waits for its rounds) and updates
        "first_training_step_s": at("learner", "update #1 starts"),
        "first_update_done_s": at("learner", "update #1 ends"),
        "learner_exits_s": at("learner", "learner exits"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("overrides", nargs="+", help="train.py overrides, after --")
    args = parser.parse_args()
    events_file = args.out.with_suffix(".events.jsonl")
    events_file.unlink(missing_ok=True)
    env = {**os.environ, EVENTS: str(events_file), STARTED: repr(time.time())}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    code = subprocess.run(
        [sys.executable, __file__, "--as-run", *args.overrides], cwd=REPO, env=env, stdout=subprocess.DEVNULL
    ).returncode
    lines = [json.loads(line) for line in events_file.read_text().splitlines()]
    events_file.unlink()
    events = [line for line in lines if "event" in line]
    totals = next((line["call_totals"] for line in lines if "call_totals" in line), None)
    result = {
        "command": [sys.executable, "train.py", *args.overrides],
        "exit_code": code,
        "milestones": milestones(events),
        "learner_call_totals": totals,
        "events": sorted(events, key=lambda e: e["s"]),
    }
    print(json.dumps({"milestones": result["milestones"], "learner_call_totals": totals}, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if code != 0:
        sys.exit(f"train.py exited with {code}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--as-run"]:
        _run_learner(sys.argv[2:])
    else:
        main()
elif __name__ == "__mp_main__" and EVENTS in os.environ:
    _prepare_child()
