"""The SMACv2 path against the API-faithful fake wrapper (tests/fakes/smacv2.py); only StarCraft II is missing."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from softqmix.data.collector import EpisodeCollector
from softqmix.envs import env_factory, make_env
from softqmix.envs.pool import EnvPool
from softqmix.envs.smacv2 import INSTALL_HINT
from softqmix.train import train
from tests.fakes import smacv2 as fake
from tests.helpers import REPO_ROOT, MaskedRandomActor

# From smacv2's get_*_size formulas (starcraft2.py): state, obs, n_actions, n_agents.
PAPER_SCENARIOS = {
    "protoss_5v5": (130, 92, 11, 5),
    "terran_5v5": (120, 82, 11, 5),
    "zerg_5v5": (120, 82, 11, 5),
    "protoss_10v10": (310, 182, 16, 10),
    "terran_10v10": (290, 162, 16, 10),
    "zerg_10v10": (290, 162, 16, 10),
}
STOP, WEST, ATTACK_0 = 1, 5, 6


@pytest.fixture
def wrapper(monkeypatch: pytest.MonkeyPatch) -> type[fake.StarCraftCapabilityEnvWrapper]:
    return fake.install(monkeypatch)


def env_config(compose_train, scenario: str, *overrides: str) -> dict:
    cfg = compose_train([f"env=smacv2/{scenario}", *overrides])
    return OmegaConf.to_container(cfg.env, resolve=True)


@pytest.mark.parametrize("scenario", sorted(PAPER_SCENARIOS))
def test_sizes_of_each_paper_scenario(compose_train, wrapper, scenario: str) -> None:
    config = env_config(compose_train, scenario)
    env = make_env(config)
    info = env.info()
    assert (info.state_dim, info.obs_dim, info.n_actions, info.n_agents) == PAPER_SCENARIOS[scenario]
    assert info.episode_limit == 200 and info.reports_wins
    first = env.reset()
    assert first.obs.shape == (info.n_agents, info.obs_dim) and first.state.shape == (info.state_dim,)
    assert first.avail.shape == (info.n_agents, info.n_actions)
    (made,) = wrapper.instances
    # the wrapper edits capability_config in place; the adapter hands it a copy, so the config stays clean
    assert made.kwargs["capability_config"]["team_gen"]["env_key"] == "team_gen"
    assert "env_key" not in config["env_args"]["capability_config"]["team_gen"]
    assert made.kwargs["map_name"] == f"10gen_{scenario.split('_')[0]}"
    assert ("exception_unit_types" in made.kwargs["capability_config"]["team_gen"]) == (
        not scenario.startswith("protoss")
    )


def play(env, policy, max_steps: int = 250) -> tuple[list, object]:
    """Run one episode with policy(avail) -> actions; returns the step results and the last one."""
    current = env.reset()
    results = []
    for _ in range(max_steps):
        result = env.step(policy(current.avail))
        results.append(result)
        current = result.next
        if result.terminated or result.truncated:
            break
    return results, results[-1]


def attack_first(avail: np.ndarray) -> np.ndarray:
    """Attack the first enemy in range, else stop; the dead take their no-op."""
    return np.array(
        [np.flatnonzero(row[ATTACK_0:])[0] + ATTACK_0 if row[ATTACK_0:].any() else int(np.argmax(row)) for row in avail]
    )


def test_win_loss_and_timeout_bookkeeping(compose_train, wrapper) -> None:
    env = make_env(env_config(compose_train, "terran_5v5"))
    _, won = play(env, attack_first)
    assert won.terminated and not won.truncated and won.info["battle_won"] == 1.0 and won.info["timeout"] == 0.0

    stop_or_noop = lambda avail: np.where(avail[:, STOP] > 0, STOP, 0)  # noqa: E731
    results, lost = play(env, stop_or_noop)
    assert lost.terminated and lost.info["battle_won"] == 0.0 and lost.info["dead_allies"] == 5.0
    assert lost.info["timeout"] == 0.0 and len(results) < 200
    # a dead agent may only take the no-op, and sees zeros
    assert np.array_equal(lost.next.avail[0], np.eye(11)[0]) and not lost.next.obs[0].any()

    flee = lambda avail: np.where(avail[:, WEST] > 0, WEST, np.where(avail[:, STOP] > 0, STOP, 0))  # noqa: E731
    results, timeout = play(env, flee)
    assert len(results) == 200 and timeout.terminated and not timeout.truncated  # the paper's code: termination
    assert timeout.info == {"battle_won": 0.0, "timeout": 1.0, "dead_allies": 0.0, "dead_enemies": 0.0}
    env = make_env(env_config(compose_train, "terran_5v5", "env.time_limit_is_termination=false"))
    _, timeout = play(env, flee)
    assert timeout.truncated and not timeout.terminated  # bootstrapped through, if the user asks for it


def test_reward_is_scaled_so_that_a_win_sums_to_about_twenty(compose_train, wrapper) -> None:
    env = make_env(env_config(compose_train, "zerg_5v5"))
    results, last = play(env, attack_first)
    assert last.info["battle_won"] == 1.0
    assert sum(r.reward for r in results) == pytest.approx(20.0)  # reward_scale_rate 20 over max_reward


def test_reset_that_returns_none_still_yields_the_observation(compose_train, wrapper) -> None:
    env = make_env(env_config(compose_train, "protoss_5v5"))
    env.reset()
    wrapper.instances[0].fail_next_reset = True
    first = env.reset()
    assert first.obs.shape == (5, 92) and first.avail[:, STOP].all()


def test_env_pool_workers_run_the_wrapper_with_legal_actions(compose_train, wrapper) -> None:
    pool = EnvPool(env_factory(env_config(compose_train, "zerg_5v5")), 2, mode="workers", name="smacv2/zerg_5v5")
    collector = EpisodeCollector(pool, seed=0, name="smacv2/zerg_5v5")
    try:
        _, stats = collector.collect(MaskedRandomActor(11, seed=0), explore=True)
    finally:
        collector.close()
    assert len(stats.returns) == 2 and all(0 < length <= 200 for length in stats.lengths)
    assert set(stats.battle_won) <= {0.0, 1.0}


SHORT = [
    "env=smacv2/protoss_5v5",
    "algo=soft_qmix",
    "t_max=1200",
    "test_interval=600",
    "test_nepisode=4",
    "log_interval=300",
    "algo.batch_size=4",
    "algo.buffer_size=32",
    "trainer.enable_progress_bar=false",
    "logger=csv",
]


def test_short_training_run_logs_win_rates_and_closes_starcraft(compose_train, wrapper, tmp_path: Path) -> None:
    summary = train(compose_train(SHORT), tmp_path)
    assert summary["env_steps"] >= 1200 and summary["reports_wins"]
    assert 0.0 <= summary["final_test_battle_won"] <= 1.0
    assert all(len(test["battle_won"]) == 4 for test in summary["tests"])
    with open(tmp_path / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert any(r.get("train/battle_won_mean") for r in rows) and any(r.get("test/battle_won_mean") for r in rows)
    assert wrapper.instances and all(w.closed for w in wrapper.instances)  # training and test envs
    assert not any(w.illegal_action_seen for w in wrapper.instances)


@pytest.mark.parametrize("interrupt", [ConnectionError("SC2 websocket closed"), KeyboardInterrupt()])
def test_starcraft_is_closed_when_training_fails_or_is_interrupted(
    compose_train, wrapper, tmp_path: Path, monkeypatch, interrupt: BaseException
) -> None:
    def crash(self, actions):  # the SC2 connection breaks, or Ctrl-C arrives, mid-episode
        raise interrupt

    cfg = compose_train(SHORT)
    monkeypatch.setattr(wrapper, "step", crash)
    # Lightning turns a KeyboardInterrupt inside fit into SystemExit(1) after its own teardown
    expected = SystemExit if isinstance(interrupt, KeyboardInterrupt) else type(interrupt)
    with pytest.raises(expected):
        train(cfg, tmp_path)
    assert wrapper.instances and all(w.closed for w in wrapper.instances)


def test_without_smacv2_the_run_stops_with_install_instructions(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "train.py", "env=smacv2/zerg_10v10", f"hydra.run.dir={tmp_path}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {INSTALL_HINT}"]
