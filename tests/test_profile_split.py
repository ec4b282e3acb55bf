"""benchmarks/profile_split.py: py-spy samples are put in the right process and part, in seconds."""

from __future__ import annotations

from tests.helpers import load_script


def profile_split():  # type: ignore[no-untyped-def]
    return load_script("benchmarks/profile_split.py")


LEARNER = 'process 10:"python train.py algo=qmix";<module> (train.py:6)'
CHILD = f'{LEARNER};process 11:"python -B -c from multiprocessing.spawn import spawn_main; spawn_main(7)"'


def test_samples_go_to_their_process_and_first_matching_part() -> None:
    lines = [
        f"{LEARNER};_find_and_load (<frozen>:1) 100",
        f"{LEARNER};fit (a.py:1);Learner.update (l.py:2);ValueFactorisation.compute_losses (v.py:3) 50",
        f"{LEARNER};fit (a.py:1);Learner.update (l.py:2);LightningModule.manual_backward (m.py:4) 25",
        # an import inside the update counts as an import: imports come first
        f"{LEARNER};fit (a.py:1);ValueFactorisation.compute_losses (v.py:3);_find_and_load (<frozen>:1) 10",
        f"{LEARNER};fit (a.py:1);GreedyEvaluation.on_train_start (s.py:5) 5",
        f"{CHILD};<module> (<string>:1);_serve_spawned (c.py:1);_collect_round (c.py:2) 75",
        f"{CHILD};<module> (<string>:1);_find_and_load (<frozen>:1) 20",
        "process 12:no frames 3",
    ]
    got = profile_split().split(lines, rate=50.0)
    assert got["learner"] == {
        "imports": 2.2,
        "update: forward (compute_losses)": 1.0,
        "update: backward": 0.5,
        "greedy tests": 0.1,
    }
    assert got["collector"] == {"collection": 1.5, "imports": 0.4}
