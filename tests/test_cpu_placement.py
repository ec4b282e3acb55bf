"""pool.cpu_placement: where the learner's main thread, its helper threads and the collection process run."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lightning as L
import pytest

from softqmix.config import validate_config
from softqmix.cpu_placement import (
    DEFAULT_COLLECTOR_NICE,
    CpuSplit,
    follow_helper_placement,
    learner_pinned,
    resolve_cpu_split,
    usable_cpus,
)
from softqmix.data.collector import EpisodeCollector
from softqmix.data.collector_process import CollectorProcess, PoolRecipe, SpawnedChild
from softqmix.envs.pool import EnvPool
from softqmix.errors import ConfigError
from softqmix.progress import TrainingProgress
from softqmix.train import train
from tests.helpers import CorridorEnv, SeededRandomActor

CPUS = usable_cpus()
assert CPUS is not None, "these tests read per-thread CPU affinity from /proc (Linux)"
FIRST, LAST = min(CPUS), max(CPUS)  # the same CPU on a one-CPU machine: the split is then still applied as given


def resolve(**changes: object) -> CpuSplit | None:
    settings: dict = dict(
        placement="auto",
        process_collection=True,
        accelerator="cpu",
        torch_threads=1,
        collector_nice=None,
        cpus=frozenset({0, 1, 2, 3}),
    )
    settings.update(changes)
    return resolve_cpu_split(**settings)


def test_auto_pins_the_learner_to_the_first_usable_cpu_and_the_collector_to_the_rest() -> None:
    assert resolve() == CpuSplit(frozenset({0}), frozenset({1, 2, 3}), DEFAULT_COLLECTOR_NICE)
    assert resolve(cpus=frozenset({4, 7}), collector_nice=12) == CpuSplit(frozenset({4}), frozenset({7}), 12)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"process_collection": False}, "pool.collection is not process"),
        ({"cpus": None}, "needs Linux"),
        ({"cpus": frozenset({3})}, "may use only CPU 3"),
        ({"accelerator": "gpu"}, "trainer.accelerator=gpu"),
        ({"torch_threads": 2}, "trainer.torch_threads=2"),
        ({"side_by_side_launcher": "JoblibLauncher"}, r"launcher \(JoblibLauncher\) runs its runs side by side"),
    ],
)
def test_pinning_that_cannot_apply_is_shared_under_auto_and_an_error_when_asked_for(change: dict, why: str) -> None:
    assert resolve(**change) is None
    with pytest.raises(ConfigError, match=f"pool.cpu_placement=pinned cannot apply: .*{why}"):
        resolve(placement="pinned", **change)
    with pytest.raises(ConfigError, match=f"pool.collector_nice=3 is used only when .*{why}"):
        resolve(collector_nice=3, **change)


def test_shared_placement_pins_nothing_and_refuses_a_collector_nice() -> None:
    assert resolve(placement="shared") is None
    with pytest.raises(ConfigError, match=r"pool.collector_nice=7 .*pool.cpu_placement=shared"):
        resolve(placement="shared", collector_nice=7)


def test_the_config_refuses_placement_settings_without_a_collection_process(compose_train) -> None:
    with pytest.raises(ConfigError, match=r"pool.cpu_placement=pinned places the collection process.*=thread"):
        validate_config(compose_train(["pool.collection=thread", "pool.cpu_placement=pinned"]))
    with pytest.raises(ConfigError, match=r"pool.collector_nice places the collection process.*=serial"):
        validate_config(compose_train(["pool.collector_nice=5"]))
    with pytest.raises(ValueError, match=r"pool.collector_nice"):
        validate_config(compose_train(["pool.collection=process", "pool.collector_nice=25"]))
    validate_config(compose_train(["pool.collection=process", "pool.cpu_placement=shared"]))


def _threads_of(pid: int) -> list[int]:
    return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]


def assert_placed(pid: int, cpus: frozenset[int], nice: int) -> None:
    for tid in _threads_of(pid):
        assert os.sched_getaffinity(tid) == cpus, f"thread {tid} of the collection process"
        assert os.getpriority(os.PRIO_PROCESS, tid) == nice, f"thread {tid} of the collection process"


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_the_collection_process_runs_on_the_helper_cpus_at_its_niceness(start_method: str) -> None:
    split = CpuSplit(frozenset({FIRST}), frozenset({LAST}), collector_nice=3)
    own_nice = os.getpriority(os.PRIO_PROCESS, 0)
    pool = EnvPool(CorridorEnv, 2, name="corridor")
    remote = CollectorProcess(
        EpisodeCollector(pool, seed=0, name="corridor"),
        SeededRandomActor(3, seed=0),
        TrainingProgress(),
        start_method=start_method,
        split=split,
    )
    try:
        remote.request(t_env=0)
        assert remote.receive().stats.env_steps > 0
        assert_placed(remote.process.pid, split.helpers, min(19, own_nice + 3))
    finally:
        remote.close()
        pool.close()
    assert os.sched_getaffinity(0) == CPUS and os.getpriority(os.PRIO_PROCESS, 0) == own_nice  # the parent's own


def test_a_spawned_child_started_with_another_split_is_refused() -> None:
    child = SpawnedChild(PoolRecipe(CorridorEnv, None, 2, "corridor"), split=None)
    collector = EpisodeCollector(EnvPool(CorridorEnv, 2, name="corridor"), seed=0, name="corridor")
    split = CpuSplit(frozenset({FIRST}), frozenset({LAST}), collector_nice=3)
    try:
        with pytest.raises(ValueError, match="started with CPU split None, the run has CpuSplit"):
            CollectorProcess(
                collector,
                SeededRandomActor(3, seed=0),
                TrainingProgress(),
                start_method="spawn",
                spawned=child,
                split=split,
            )
    finally:
        child.close()
        collector.close()


def test_the_learner_and_its_helper_threads_are_pinned_only_inside_the_block() -> None:
    split = CpuSplit(frozenset({FIRST}), frozenset({LAST}), collector_nice=3)
    helper = ThreadPoolExecutor(max_workers=1)  # made before the block, as the target-unroll thread may be

    def helper_cpus() -> frozenset[int]:
        follow_helper_placement()
        return frozenset(os.sched_getaffinity(0))

    try:
        assert helper.submit(helper_cpus).result() == CPUS
        with learner_pinned(split):
            assert os.sched_getaffinity(0) == split.learner
            assert helper.submit(helper_cpus).result() == split.helpers
        assert os.sched_getaffinity(0) == CPUS
        assert helper.submit(helper_cpus).result() == CPUS  # the next run of a sweep may not pin
        with learner_pinned(None):
            assert os.sched_getaffinity(0) == CPUS
    finally:
        helper.shutdown()


class RecordPlacement(L.Callback):
    """The CPUs of the learner's thread, of its target-unroll thread and of the collection process, in training."""

    def __init__(self) -> None:
        self.learner: set[frozenset[int]] = set()
        self.target_unroll: set[frozenset[int]] = set()
        self.child: set[frozenset[int]] = set()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.learner.add(frozenset(os.sched_getaffinity(0)))
        self.child.add(frozenset(os.sched_getaffinity(module.train_collector.process.pid)))
        for thread in threading.enumerate():
            if thread.name.startswith("target-unroll") and thread.native_id is not None:
                self.target_unroll.add(frozenset(os.sched_getaffinity(thread.native_id)))


def test_a_run_with_a_collection_process_pins_as_resolved_and_leaves_the_learner_free_after(
    compose_train, tmp_path: Path
) -> None:
    """On a machine with two or more usable CPUs the default (auto) pins; on one, it shares (nothing moves)."""
    recorder = RecordPlacement()
    overrides = ["env=mpe/spread_simple", "pool.collection=process", "t_max=400", "test_interval=1000"]
    cfg = compose_train([*overrides, "test_nepisode=2", "algo.batch_size=4", "print_report=false"])
    summary = train(cfg, tmp_path, extra_callbacks=[recorder])
    assert summary["status"] == "completed" and recorder.learner
    split = resolve_cpu_split("auto", True, "cpu", 1, None, CPUS)
    assert recorder.learner == {split.learner if split else CPUS}
    assert recorder.child == recorder.target_unroll == {split.helpers if split else CPUS}
    assert os.sched_getaffinity(0) == CPUS


@pytest.mark.parametrize(
    ("overrides", "side_by_side"),
    [
        ([], None),  # a single run
        (["hydra.mode=MULTIRUN"], None),  # the basic launcher: one run at a time
        (["hydra.mode=MULTIRUN", "hydra/launcher=slurm"], None),  # each Slurm job has its own CPUs
        (["hydra.mode=MULTIRUN", "hydra/launcher=joblib"], "JoblibLauncher"),
        (["hydra.mode=MULTIRUN", "hydra/launcher=submitit_local"], "LocalLauncher"),
    ],
)
def test_runs_that_a_sweep_runs_side_by_side_on_one_machine_are_not_pinned(
    overrides: list[str], side_by_side: str | None
) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from softqmix import CONF_DIR
    from softqmix.train import _launcher_running_runs_side_by_side

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        assert _launcher_running_runs_side_by_side() == side_by_side
    finally:
        HydraConfig.instance().cfg = None
