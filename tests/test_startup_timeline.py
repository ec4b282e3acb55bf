"""benchmarks/startup_timeline.py: the milestones are the first matching event of the right process."""

from __future__ import annotations

from tests.helpers import load_script


def test_milestones_take_each_process_first_matching_event_and_leave_missing_ones_out() -> None:
    timeline = load_script("benchmarks/startup_timeline.py")
    events = [
        {"s": 2.5, "process": "learner", "event": "spawn collection process #1 starts"},
        {"s": 11.2, "process": "child", "event": "serve (envs built and warmed up) #1 starts"},
        {"s": 11.6, "process": "child", "event": "collect round #1 ends"},
        {"s": 12.0, "process": "child", "event": "collect round #1 ends"},  # a later one of the same name: ignored
        {"s": 13.4, "process": "learner", "event": "receive round #1 starts"},
        {"s": 13.5, "process": "learner", "event": "receive round #1 ends"},
        {"s": 13.9, "process": "learner", "event": "update #1 starts"},
        {"s": 14.0, "process": "child", "event": "update #1 starts"},  # another process's event of that name
    ]
    got = timeline.milestones(events)
    assert got["child_spawned_s"] == 2.5 and got["child_ready_s"] == 11.2
    assert got["child_first_round_done_s"] == 11.6
    assert got["learner_waits_for_round_1_from_s"] == 13.4 and got["learner_has_round_1_s"] == 13.5
    assert got["first_training_step_s"] == 13.9 and got["first_update_done_s"] is None
    assert got["learner_first_test_s"] is None and got["learner_exits_s"] is None


def test_call_totals_sum_each_label_and_skip_labels_never_called() -> None:
    timeline = load_script("benchmarks/startup_timeline.py")
    got = timeline.call_totals(
        {"update": [(0.06, 0.05), (0.08, 0.07), (0.07, 0.06)], "replay insert": [(0.002, 0.002)], "receive round": []}
    )
    assert set(got) == {"update", "replay insert"}
    assert got["update"] == {"calls": 3, "wall_s": 0.21, "cpu_s": 0.18, "median_ms": 70.0, "max_ms": 80.0}
    assert got["replay insert"]["calls"] == 1 and got["replay insert"]["median_ms"] == 2.0
