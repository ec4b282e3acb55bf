"""Which CPUs the learner and its collection process run on when collection overlaps learning in a process.

Why: with `pool.collection=process` the learner's main thread is the run's critical path (every update waits on
it), while the collection process (its Python thread and XLA's worker threads for SMAX) and the learner's
target-unroll thread share the rest. Left to the OS scheduler, these three keep taking the learner's core from it:
in a warm 100k-step SMAX 5v5 QMIX run on 2 cores, the learner's main thread spent 2.2-2.5 s of 20 runnable but
not running (/proc/<tid>/schedstat). Pinned, it keeps a core of its own and the collection process yields to the
target unroll (a niceness of its own); the same run then waits 0.03-0.11 s of 20, and ends 4% sooner, MPE Spread
10% (benchmarks/cpu_placement.py; docs/results.md §11).

`pinned` puts the learner's main thread on the first CPU the process may use, and the collection process and the
learner's helper threads on the others. It needs Linux (per-thread affinity), a CPU learner with one intra-op
thread (`trainer.torch_threads=1`: more threads would share the one core) and at least two usable CPUs.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from softqmix.errors import ConfigError

DEFAULT_COLLECTOR_NICE = 5  # 10 and 19 ran within noise of 5 (docs/results.md §11); 5 takes least from collection


class CpuPlacement(str, Enum):
    auto = "auto"  # pinned where it applies (see module docstring), else shared
    pinned = "pinned"
    shared = "shared"  # the OS places every thread


@dataclass(frozen=True)
class CpuSplit:
    """The learner's main thread on `learner`; the collection process and the learner's helper threads on
    `helpers`, the collection process `collector_nice` steps nicer than the learner."""

    learner: frozenset[int]
    helpers: frozenset[int]
    collector_nice: int

    def describe(self) -> str:
        return (
            f"cpus: learner on {_cpu_list(self.learner)}, collection process on {_cpu_list(self.helpers)} "
            f"(nice +{self.collector_nice}; pool.cpu_placement=shared turns this off)"
        )

    def enter_collector(self) -> None:
        """Called first thing in the collection process: every thread it has, and so every thread it makes
        later (they inherit the creating thread's), goes to the helper CPUs at the collector's niceness."""
        for tid in _thread_ids():
            with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                os.sched_setaffinity(tid, self.helpers)
                now = os.getpriority(os.PRIO_PROCESS, tid)
                os.setpriority(os.PRIO_PROCESS, tid, min(19, now + self.collector_nice))


def _cpu_list(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def _thread_ids() -> list[int]:
    return [int(tid) for tid in os.listdir("/proc/self/task")]


def usable_cpus() -> frozenset[int] | None:
    """The CPUs this process may run on; None where the OS has no per-thread affinity (not Linux)."""
    if not hasattr(os, "sched_getaffinity") or not os.path.isdir("/proc/self/task"):
        return None
    return frozenset(os.sched_getaffinity(0))


def resolve_cpu_split(
    placement: CpuPlacement | str,
    process_collection: bool,
    accelerator: str,
    torch_threads: int,
    collector_nice: int | None,
    cpus: frozenset[int] | None,
    side_by_side_launcher: str | None = None,
) -> CpuSplit | None:
    """The split for these settings, or None (shared). An explicit `pinned` that cannot apply, and a
    `collector_nice` that would go unused, are errors that name the setting and why. `side_by_side_launcher`
    names the sweep launcher when this run is one of several running at once on this machine: each would pin its
    learner to the same CPU."""
    placement = CpuPlacement(placement)
    why_not = None
    if not process_collection:
        why_not = "it places the collection process, and pool.collection is not process"
    elif side_by_side_launcher is not None:
        why_not = (
            f"this sweep's launcher ({side_by_side_launcher}) runs its runs side by side on this machine, and each "
            "would pin its learner to the same CPU"
        )
    elif cpus is None:
        why_not = "this OS has no per-thread CPU affinity (it needs Linux)"
    elif len(cpus) < 2:
        why_not = f"this process may use only CPU {_cpu_list(cpus)}, and pinning needs two"
    elif accelerator != "cpu":
        why_not = f"the learner runs on trainer.accelerator={accelerator}, and pinning is for a CPU learner"
    elif torch_threads != 1:
        why_not = f"trainer.torch_threads={torch_threads} would put all of the learner's threads on one core"
    if placement is CpuPlacement.pinned and why_not is not None:
        raise ConfigError(f"pool.cpu_placement=pinned cannot apply: {why_not}; use pool.cpu_placement=auto")
    if placement is CpuPlacement.shared or why_not is not None:
        if collector_nice is not None:
            raise ConfigError(
                f"pool.collector_nice={collector_nice} is used only when the collection process is pinned, and "
                f"here it is not ({why_not or 'pool.cpu_placement=shared'}); drop the override"
            )
        return None
    assert cpus is not None
    first = min(cpus)
    nice = DEFAULT_COLLECTOR_NICE if collector_nice is None else collector_nice
    return CpuSplit(frozenset({first}), cpus - {first}, nice)


# Helper threads of the learner (the target unroll) follow the placement of the run in progress: a thread pool lives
# across the runs of a sweep, whose placements may differ, so each helper task checks a generation counter.
_helper_cpus: frozenset[int] | None = None  # None: no run has placed the helpers yet
_generation = 0
_seen = threading.local()


def follow_helper_placement() -> None:
    """Called at the start of each helper task: moves the calling thread to the CPUs the run in progress gives
    helpers (all of them again once a pinned run ended) when that changed since its last task; one comparison
    otherwise."""
    if getattr(_seen, "generation", 0) == _generation:
        return
    if _helper_cpus is not None:
        os.sched_setaffinity(0, _helper_cpus)
    _seen.generation = _generation


@contextlib.contextmanager
def learner_pinned(split: CpuSplit | None) -> Iterator[None]:
    """The calling (learner's main) thread on `split.learner` and the helper threads on `split.helpers` while the
    block runs; afterwards all of them may use every CPU again. No-op for None."""
    global _helper_cpus, _generation
    if split is None:
        yield
        return
    before = frozenset(os.sched_getaffinity(0))
    os.sched_setaffinity(0, split.learner)
    _helper_cpus, _generation = split.helpers, _generation + 1
    try:
        yield
    finally:
        _helper_cpus, _generation = before, _generation + 1
        os.sched_setaffinity(0, before)
