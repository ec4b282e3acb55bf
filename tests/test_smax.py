"""SMAX through jaxmarl: sizes, race unit mixes, SMAC action masks, scripted outcomes, a short run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from softqmix.envs import make_env
from softqmix.envs.smax import INSTALL_HINT, N_SMAC_MOVES, require_jaxmarl
from softqmix.errors import ConfigError
from softqmix.train import train

STOP, NORTH, SOUTH, EAST, WEST = 1, 2, 3, 4, 5
SMAX_TYPES = ["marine", "marauder", "stalker", "zealot", "zergling", "hydralisk"]  # jaxmarl's order


def smax_env(compose_train, scenario: str, *overrides: str):
    cfg = compose_train([f"env=smax/{scenario}", *overrides])
    return make_env(OmegaConf.to_container(cfg.env, resolve=True))


@pytest.mark.parametrize(
    ("scenario", "sizes", "race_types"),
    [
        # obs = 13 features x (allies - 1 + enemies) + 10 own (jaxmarl's formula); normalised state = 10 features
        # + 1 team bit per unit (jaxmarl's raw one also has each unit's type id: 12 per unit)
        ("protoss_5v5", (5, 11, 127, 110), {"stalker", "zealot"}),
        ("terran_10v10", (10, 16, 257, 220), {"marine", "marauder"}),
        ("zerg_5v5", (5, 11, 127, 110), {"zergling", "hydralisk"}),
    ],
)
def test_sizes_and_race_unit_mixes(compose_train, scenario: str, sizes: tuple, race_types: set) -> None:
    env = smax_env(compose_train, scenario)
    info = env.info()
    assert (info.n_agents, info.n_actions, info.obs_dim, info.state_dim) == sizes
    assert info.episode_limit == 200 and info.reports_wins
    seen = set()
    for seed in range(6):
        env.reset(seed)
        types = np.asarray(env._state.state.unit_types)
        allies, enemies = types[: info.n_agents], types[info.n_agents :]
        assert np.array_equal(allies, enemies)  # the enemy team copies the ally team, as in SMACv2
        seen |= {SMAX_TYPES[t] for t in allies}
    assert seen == race_types


def positions(env) -> np.ndarray:
    return np.asarray(env._state.state.unit_positions)


def charge(env, avail: np.ndarray) -> np.ndarray:
    """Attack the first enemy in range; otherwise walk towards the enemies' centre; dead: no-op."""
    pos = positions(env)
    target = pos[env.n_agents :].mean(axis=0)
    actions = []
    for i, row in enumerate(avail):
        if row[0]:
            actions.append(0)
        elif row[N_SMAC_MOVES:].any():
            actions.append(N_SMAC_MOVES + int(np.flatnonzero(row[N_SMAC_MOVES:])[0]))
        else:
            dx, dy = target - pos[i]
            actions.append((EAST if dx > 0 else WEST) if abs(dx) > abs(dy) else (NORTH if dy > 0 else SOUTH))
    return np.array(actions)


def stay(env, avail: np.ndarray) -> np.ndarray:
    return np.where(avail[:, STOP] > 0, STOP, 0)


def play(env, policy, seed: int = 0):
    current = env.reset(seed)
    for t in range(1, 201):
        result = env.step(policy(env, current.avail))
        current = result.next
        if result.terminated or result.truncated:
            return t, result
    raise AssertionError("the episode did not end at the 200-step limit")


def test_scripted_win_against_an_enemy_that_does_not_shoot(compose_train) -> None:
    env = smax_env(compose_train, "protoss_5v5", "env.enemy_shoots=false")
    steps, last = play(env, charge)
    assert last.terminated and last.info["battle_won"] == 1.0 and last.info["dead_enemies"] == 5.0
    assert steps < 200 and last.info["timeout"] == 0.0


def test_scripted_loss_and_the_dead_agents_mask(compose_train) -> None:
    env = smax_env(compose_train, "terran_5v5")
    _, last = play(env, stay)  # standing still while the heuristic enemy attacks
    assert last.terminated and last.info["battle_won"] == 0.0 and last.info["dead_allies"] == 5.0
    assert last.info["timeout"] == 0.0
    # SMAC convention: a dead agent may only take the no-op (SMAX's own dead units may only stop)
    assert np.array_equal(last.next.avail, np.tile(np.eye(11)[0], (5, 1)))


def test_a_battle_nobody_fights_times_out_at_200(compose_train) -> None:
    env = smax_env(compose_train, "zerg_5v5", "env.enemy_shoots=false")
    steps, last = play(env, stay)
    assert steps == 200 and last.terminated
    # units pushed into the walls die (walls_cause_death), but nobody is shot
    assert (last.info["battle_won"], last.info["timeout"], last.info["dead_enemies"]) == (0.0, 1.0, 0.0)
    env = smax_env(compose_train, "zerg_5v5", "env.enemy_shoots=false", "env.time_limit_is_termination=false")
    _, last = play(env, stay)
    assert last.truncated and not last.terminated


def random_legal(rng: np.random.Generator):
    return lambda env, avail: np.array([rng.choice(np.flatnonzero(row)) for row in avail])


def test_the_mixer_state_is_on_smacv2s_scale(compose_train) -> None:
    """Positions, cooldowns and health within [-1, 1], dead units all zero, and the same battle as the raw
    state: jaxmarl's raw world state holds positions in map units and cooldowns that run far below zero."""
    env = smax_env(compose_train, "protoss_5v5")
    raw = smax_env(compose_train, "protoss_5v5", "env.state_features=raw")
    assert raw.info().state_dim == 120
    largest, raw_largest = 0.0, 0.0
    for seed in range(3):
        policy = random_legal(np.random.default_rng(seed))
        current, current_raw = env.reset(seed), raw.reset(seed)
        for _ in range(200):
            actions = policy(env, current.avail)
            result, result_raw = env.step(actions), raw.step(actions)
            current, current_raw = result.next, result_raw.next
            units = current.state[:100].reshape(10, 10)
            alive = np.asarray(env._state.state.unit_alive)
            assert np.array_equal(units[~alive], np.zeros_like(units[~alive]))
            raw_units = current_raw.state[:100].reshape(10, 10)  # health, x, y, cooldown, 6 type bits
            assert np.allclose(units[:, 0], raw_units[:, 0])
            assert np.allclose(units[alive, 1:3], (raw_units[alive, 1:3] - 16.0) / 16.0, atol=1e-6)  # 32 x 32 map
            assert np.array_equal(units[:, 4:], raw_units[:, 4:])
            assert np.array_equal(current.obs, current_raw.obs) and result.reward == result_raw.reward
            largest = max(largest, float(np.abs(current.state).max()))
            raw_largest = max(raw_largest, float(np.abs(current_raw.state).max()))
            if result.terminated or result.truncated:
                break
    assert largest <= 1.0
    assert raw_largest > 10.0


def test_rewards_are_on_smacv2s_scale(compose_train) -> None:
    """A battle's return is 10x SMAX's own (a won battle is worth 20, SMACv2's normalised maximum)."""
    scaled = smax_env(compose_train, "protoss_5v5", "env.enemy_shoots=false")
    plain = smax_env(compose_train, "protoss_5v5", "env.enemy_shoots=false", "env.reward_scale=1")
    returns = []
    for env in (scaled, plain):
        current, total = env.reset(0), 0.0
        while True:
            result = env.step(charge(env, current.avail))
            current, total = result.next, total + result.reward
            if result.terminated or result.truncated:
                break
        assert result.info["battle_won"] == 1.0
        returns.append(total)
    assert returns[1] == pytest.approx(2.0, abs=1e-4)  # all enemy health removed (1) plus the win bonus (1)
    assert returns[0] == pytest.approx(20.0, abs=1e-3)


def test_living_agents_can_always_stop_and_never_no_op(compose_train) -> None:
    env = smax_env(compose_train, "protoss_5v5")
    current = env.reset(3)
    assert (current.avail[:, STOP] == 1).all() and (current.avail[:, 0] == 0).all()
    assert (current.avail[:, NORTH : WEST + 1] == 1).all()  # open ground at the start


def test_short_training_run_on_smax(compose_train, tmp_path: Path) -> None:
    cfg = compose_train(
        [
            "env=smax/protoss_5v5",
            "t_max=1000",
            "test_interval=500",
            "test_nepisode=4",
            "log_interval=250",
            "algo.batch_size=4",
            "algo.buffer_size=32",
            "trainer.enable_progress_bar=false",
            "logger=csv",
        ]
    )
    summary = train(cfg, tmp_path)
    assert summary["env_steps"] >= 1000 and summary["reports_wins"]
    assert summary["final_test_battle_won"] is not None and len(summary["tests"]) >= 2
    assert summary["env_reward_scale"] == 10.0  # the summary says on which scale its returns are


def test_missing_jaxmarl_names_the_install_command(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "jaxmarl", None)  # what an environment without the extra looks like
    with pytest.raises(ConfigError) as error:
        require_jaxmarl()
    assert str(error.value) == INSTALL_HINT


def test_vector_env_plays_each_battle_as_the_single_env_with_the_same_seed(compose_train) -> None:
    """One jitted, vmapped call for all battles is SMAX's own dynamics: battle i of the vector seeded with s_i
    gives the single env's episode for s_i step for step (same random actions), however the others end."""
    from softqmix.envs.smax import SMAXEnv, SMAXVectorEnv

    cfg = compose_train(["env=smax/protoss_5v5"])
    fields = {
        k: v for k, v in OmegaConf.to_container(cfg.env).items() if k not in ("family", "name", "obs_last_action")
    }
    singles = [SMAXEnv(**fields) for _ in range(3)]
    vector = SMAXVectorEnv(3, **fields)
    seeds = [5, 6, 7]
    current = [env.reset(seed) for env, seed in zip(singles, seeds, strict=True)]
    for a, b in zip(current, vector.reset(seeds), strict=True):
        assert np.array_equal(a.obs, b.obs) and np.array_equal(a.avail, b.avail)
    rng, active, lengths = np.random.default_rng(0), [0, 1, 2], [0, 0, 0]
    while active:
        actions = {i: np.array([rng.choice(np.flatnonzero(row)) for row in current[i].avail]) for i in active}
        batched = vector.step(active, np.stack([actions[i] for i in active]))
        for i, b in zip(active, batched, strict=True):
            a = singles[i].step(actions[i])
            assert (a.reward, a.terminated, a.truncated, a.info) == (b.reward, b.terminated, b.truncated, b.info)
            assert np.allclose(a.next.obs, b.next.obs) and np.array_equal(a.next.avail, b.next.avail)
            current[i] = a.next
            lengths[i] += 1
        active = [i for i in active if not (batched[active.index(i)].terminated or batched[active.index(i)].truncated)]
    assert len(set(lengths)) > 1  # the battles ended at different steps


def test_smax_compiles_each_step_function_once(compose_train) -> None:
    """SMAX's reset made a weakly typed leaf that its step returns strongly typed, which compiled the jitted step
    twice (seconds each); the adapter casts the reset state, so every shape compiles once."""
    from softqmix.envs.smax import SMAXVectorEnv

    env = smax_env(compose_train, "zerg_5v5")
    current = env.reset(0)
    for _ in range(5):
        current = env.step(current.avail.argmax(-1)).next
    cfg = compose_train(["env=smax/zerg_5v5"])
    fields = {
        k: v for k, v in OmegaConf.to_container(cfg.env).items() if k not in ("family", "name", "obs_last_action")
    }
    vector = SMAXVectorEnv(4, **fields)
    obs = vector.reset([0, 1, 2, 3])
    for _ in range(5):
        obs = [r.next for r in vector.step([0, 1, 2, 3], np.stack([o.avail.argmax(-1) for o in obs]))]
    game = env._game
    assert game.step._cache_size() == 1 and game.reset._cache_size() == 1
    assert game.step_many._cache_size() == 1 and game.reset_many._cache_size() == 1


def test_a_vector_env_compiles_no_single_env_function(compose_train) -> None:
    """The sizes come from a trace of reset; only the vmapped functions that collection calls are compiled."""
    from softqmix.envs.smax import SMAXVectorEnv

    cfg = compose_train(["env=smax/terran_5v5"])
    fields = {
        k: v for k, v in OmegaConf.to_container(cfg.env).items() if k not in ("family", "name", "obs_last_action")
    }
    vector = SMAXVectorEnv(2, **{**fields, "world_steps_per_env_step": 7})  # a game no other test compiled
    assert vector.info().obs_dim > 0 and vector.info().state_dim > 0
    obs = vector.reset([0, 1])
    vector.step([0, 1], np.stack([o.avail.argmax(-1) for o in obs]))
    game = vector._game
    assert game.reset._cache_size() == 0 and game.step._cache_size() == 0
    assert game.reset_many._cache_size() == 1 and game.step_many._cache_size() == 1


def test_warm_up_compiles_what_collection_calls_and_changes_no_battle(compose_train) -> None:
    """A collection process warms its vector env up while it waits for its actor: the warm-up must compile the
    very programs that reset and step then call (one compiled program each, not a second signature), and leave
    the battles, keys and step counts as they were."""
    from softqmix.envs.smax import SMAXVectorEnv

    cfg = compose_train(["env=smax/terran_5v5"])
    fields = {
        k: v for k, v in OmegaConf.to_container(cfg.env).items() if k not in ("family", "name", "obs_last_action")
    }
    fields["world_steps_per_env_step"] = 7  # the game of the test above; 3 battles: a vector size nothing else uses
    warmed, plain = SMAXVectorEnv(3, **fields), SMAXVectorEnv(3, **fields)
    game = warmed._game

    def programs() -> list[int]:  # compiled programs of the three calls, over every vector size so far
        return [game.split_many._cache_size(), game.reset_many._cache_size(), game.step_many._cache_size()]

    before = programs()
    warmed.warm_up()
    warmed_up = programs()
    assert warmed_up == [n + 1 for n in before]  # one program each for 3 battles
    seeds = [3, 4, 5]
    warmed_obs, plain_obs = warmed.reset_all(seeds), plain.reset_all(seeds)
    warmed.warm_up()  # between a reset and a step as well
    for _ in range(4):
        assert np.array_equal(warmed_obs.obs, plain_obs.obs) and np.array_equal(warmed_obs.avail, plain_obs.avail)
        actions, active = plain_obs.avail.argmax(-1), np.ones(3, dtype=bool)
        warmed_obs, plain_obs = warmed.step_all(actions, active).next, plain.step_all(actions, active).next
    assert warmed.get_rng_state() == plain.get_rng_state()
    assert programs() == warmed_up  # the real resets and steps compiled nothing new


def test_smax_uses_the_configured_jax_compilation_cache(compose_train, tmp_path) -> None:
    import jax

    before = jax.config.jax_compilation_cache_dir
    try:
        cfg = compose_train(["env=smax/zerg_5v5", f"env.jax_cache_dir={tmp_path / 'jax'}"])
        make_env(cfg.env)
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jax") and (tmp_path / "jax").is_dir()
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def smax_fields(cfg) -> dict:  # type: ignore[no-untyped-def]
    return {k: v for k, v in OmegaConf.to_container(cfg.env).items() if k not in ("family", "name", "obs_last_action")}


def test_array_collection_gives_the_per_env_loops_episodes(compose_train) -> None:
    """The collector's array path (one array op per field and step) writes exactly the batch and stats that its
    loop over envs writes from the same vector env: same actor draws, same finished-env padding, same ends."""
    import torch

    from softqmix.algos.registry import build_learner
    from softqmix.data.collector import EpisodeCollector
    from softqmix.envs.pool import EnvPool, PerEnvView
    from softqmix.envs.smax import SMAXVectorEnv

    cfg = compose_train(["algo=qmix", "env=smax/protoss_5v5", "env.episode_limit=40"])
    fields = smax_fields(cfg)
    pools = {
        "arrays": EnvPool(lambda: None, 4, vector_factory=lambda n: SMAXVectorEnv(n, **fields)),
        "per env": EnvPool(lambda: None, 4, vector_factory=lambda n: PerEnvView(SMAXVectorEnv(n, **fields))),
    }
    assert pools["arrays"].steps_arrays and not pools["per env"].steps_arrays
    actor = build_learner(cfg.algo, pools["arrays"].info, True).actor
    got = {}
    for name, pool in pools.items():
        collector = EpisodeCollector(pool, seed=3)
        torch.manual_seed(0)
        got[name] = [collector.collect(actor, explore=True) for _ in range(2)]  # seeded, then continued streams
    for (batch_a, stats_a), (batch_b, stats_b) in zip(got["arrays"], got["per env"], strict=True):
        assert stats_a == stats_b
        for field in ("obs", "state", "avail", "actions", "reward", "terminated", "filled"):
            assert torch.equal(getattr(batch_a, field), getattr(batch_b, field)), field
    lengths = [length for _, stats in got["arrays"] for length in stats.lengths]
    assert min(lengths) < 40 and 40 in lengths  # battles that ended early, and battles cut at the limit


def test_a_spawned_collection_process_collects_what_the_learner_would(compose_train) -> None:
    """SMAX's collection process is spawned (JAX hangs in a forked child): it rebuilds the envs from their
    factories and the collector's state, and acts with the actor's shared weights, refreshed between rounds. Its
    episodes equal those of the same collector and actor in this process, also after the weights change."""
    import torch

    from softqmix.algos.registry import build_learner
    from softqmix.data.collector import EpisodeCollector
    from softqmix.data.collector_process import CollectorProcess
    from softqmix.envs.pool import EnvPool
    from softqmix.envs.registry import env_factory, vector_env_factory

    overrides = ["algo=qmix", "env=smax/protoss_5v5", "env.episode_limit=30"]
    cfg = compose_train([*overrides, "algo.epsilon_start=0.3", "algo.epsilon_finish=0.3"])  # draws and weights count

    def collector() -> EpisodeCollector:
        pool = EnvPool(env_factory(cfg.env), 3, name="smax", vector_factory=vector_env_factory(cfg.env))
        return EpisodeCollector(pool, seed=7, name="smax")

    local = collector()
    learner = build_learner(cfg.algo, local.info, True)
    here, there = learner.actor.detached_copy(5), learner.actor.detached_copy(5).share_memory()
    remote = CollectorProcess(collector(), there, learner.progress, start_method="spawn")
    try:
        for round_ in range(2):
            if round_ == 1:  # an update: new weights in the learner, copied into both actors while idle
                with torch.no_grad():
                    for p in learner.agent.parameters():
                        p.add_(torch.randn_like(p))
                here.refresh_from(learner.actor)
                there.refresh_from(learner.actor)
            want, want_stats = local.collect(here, explore=True)
            remote.request(t_env=0)
            got = remote.receive()
            assert got.stats == want_stats
            for field in ("obs", "state", "avail", "actions", "reward", "terminated", "filled"):
                assert torch.equal(getattr(got.episodes, field), getattr(want, field)), (round_, field)
        assert remote.state_dict() == local.state_dict()  # what a checkpoint keeps: seeds used, env RNG
    finally:
        remote.close()
        local.close()
    assert not remote.process.is_alive()


def test_smax_trains_with_a_spawned_collection_process_and_keeps_the_console_ours(tmp_path: Path) -> None:
    """The CLI run: the child's own output (jaxmarl's import lines) goes to the run's log, and the run resumes.
    The resume does not repeat pool.collection=process: it comes from the saved config, after the point where a
    run started from the command line spawns its child, and must still be spawned (a fork would hang)."""
    import json
    import subprocess

    from tests.helpers import REPO_ROOT

    run_dir = tmp_path / "run"
    common = [
        "env=smax/protoss_5v5",
        "pool.collection=process",
        "batch_size_run=4",
        "test_interval=400",
        "test_nepisode=4",
        "algo.batch_size=4",
        "algo.buffer_size=32",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
    ]
    for t_max, resumed in ((400, None), (800, True)):  # the second run finds the first's checkpoint and resumes
        proc = subprocess.run(
            [sys.executable, "train.py", *[o for o in common if not (resumed and "collection" in o)], f"t_max={t_max}"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Importing submoduled" not in proc.stdout + proc.stderr
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["env_steps"] >= t_max and summary["updates"] > 0
        assert (summary["resumed_from_step"] is not None) == bool(resumed)
    assert summary["resumed_from_step"] >= 400
    # each of the two runs: once from the learner (its import, logged) and once from the child (its output)
    assert (run_dir / "train.log").read_text().count("Importing submoduled") == 4


def test_a_run_stopped_before_training_leaves_no_spawned_child(compose_train, tmp_path: Path) -> None:
    """SMAX's collection process starts before the run dir is locked; a busy run dir stops the run, and the child
    goes with it."""
    import multiprocessing

    from softqmix.errors import RunDirBusy
    from tests.helpers import hold_run_dir_lock

    run_dir = tmp_path / "run"
    holder = hold_run_dir_lock(run_dir)
    try:
        with pytest.raises(RunDirBusy):
            train(compose_train(["env=smax/protoss_5v5", "pool.collection=process"]), run_dir)
    finally:
        holder.kill()
        holder.wait()
    assert multiprocessing.active_children() == []


class NoMoveLeft:
    """A SMAX vector env whose battle 2 offers agent 3 no legal action after the first step."""

    def __init__(self, vector) -> None:  # type: ignore[no-untyped-def]
        self.vector, self.n_envs = vector, vector.n_envs

    def info(self):  # type: ignore[no-untyped-def]
        return self.vector.info()

    def reset_all(self, seeds):  # type: ignore[no-untyped-def]
        return self.vector.reset_all(seeds)

    def step_all(self, actions, active):  # type: ignore[no-untyped-def]
        step = self.vector.step_all(actions, active)
        step.next.avail = step.next.avail.copy()
        step.next.avail[2, 3] = 0.0
        return step


def test_array_collection_names_the_copy_and_agent_without_a_legal_action(compose_train) -> None:
    from softqmix.algos.registry import build_learner
    from softqmix.data.collector import EpisodeCollector
    from softqmix.envs.pool import EnvPool
    from softqmix.envs.smax import SMAXVectorEnv
    from softqmix.errors import EnvContractError

    cfg = compose_train(["algo=qmix", "env=smax/protoss_5v5"])
    fields = smax_fields(cfg)
    pool = EnvPool(lambda: None, 4, vector_factory=lambda n: NoMoveLeft(SMAXVectorEnv(n, **fields)))
    actor = build_learner(cfg.algo, pool.info, True).actor
    with pytest.raises(EnvContractError, match=r"env 'smax/x' \(copy 2\) gave agent 3 no legal action at step 1"):
        EpisodeCollector(pool, seed=0, name="smax/x").collect(actor, explore=True)
