"""The counters that schedule a run, and where its wall time goes.

Everything in a run is scheduled by env steps and episodes (tests, logs, target copies,
exploration schedules, the end), never by Lightning's optimizer-step counter, so that runs of
different algorithms line up on one x-axis. The learner, the training loop and the collection
process all read these counters; they live here so that none of them imports another for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class TrainingProgress:
    """Counters that a checkpoint saves and a resume restores."""

    t_env: int = 0
    episodes: int = 0
    updates: int = 0
    last_target_sync_episode: int = 0
    last_target_sync_update: int = 0
    last_test_t: int = -1
    last_log_t: int = 0
    last_checkpoint_t: int = 0
    # updates the last collection earned and not yet run (a checkpoint can fall between them), and the env
    # steps collected toward the next update when updates are paced by env steps (algo.env_steps_per_update)
    updates_owed: int = 0
    steps_toward_update: int = 0

    def state_dict(self) -> dict[str, int]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, int]) -> None:
        for k, v in state.items():
            setattr(self, k, int(v))


@dataclass
class Timing:
    """Wall seconds spent per part of the loop; benchmarks and the perf/ metrics read them."""

    collect_seconds: float = 0.0
    collect_env_steps: int = 0
    update_seconds: float = 0.0
    updates: int = 0
    test_seconds: float = 0.0
