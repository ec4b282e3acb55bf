"""The MPE Spread adapter against mpe2 itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from softqmix.envs.mpe import MPESpreadEnv


def test_shapes_and_info() -> None:
    env = MPESpreadEnv()
    first = env.reset(seed=0)
    info = env.info()
    assert (info.n_agents, info.n_actions, info.obs_dim, info.state_dim, info.episode_limit) == (3, 5, 18, 54, 25)
    assert first.obs.shape == (3, 18) and first.state.shape == (54,) and first.avail.shape == (3, 5)
    assert (first.avail == 1).all()
    np.testing.assert_array_equal(first.state, first.obs.reshape(-1))


def _mean_agent_landmark_distance(scale: float, episodes: int = 200) -> float:
    env = MPESpreadEnv(scale=scale)
    env.reset(seed=123)
    dists = []
    for _ in range(episodes):
        env.reset()
        for a in env.world.agents:
            for lm in env.world.landmarks:
                dists.append(np.linalg.norm(a.state.p_pos - lm.state.p_pos))
    return float(np.mean(dists))


def test_initial_distances_grow_with_the_difficulty_scale() -> None:
    simple, medium, hard = (_mean_agent_landmark_distance(k) for k in (1.0, 1.5, 2.0))
    assert simple < medium < hard
    assert medium / simple == pytest.approx(1.5, rel=0.1) and hard / simple == pytest.approx(2.0, rel=0.1)


def test_observation_reflects_the_scaled_world() -> None:
    env = MPESpreadEnv(scale=2.0)
    first = env.reset(seed=5)
    agent0 = env.world.agents[0]
    np.testing.assert_allclose(first.obs[0, 2:4], agent0.state.p_pos, rtol=1e-6)  # own position
    np.testing.assert_allclose(
        first.obs[0, 4:6], env.world.landmarks[0].state.p_pos - agent0.state.p_pos, rtol=1e-5, atol=1e-6
    )


def _hand_paper_reward(env: MPESpreadEnv) -> float:
    agents, landmarks = env.world.agents, env.world.landmarks
    cover = 0.0
    for lm in landmarks:
        cover += min(math.dist(a.state.p_pos, lm.state.p_pos) for a in agents)
    total = 0.0
    for i in agents:
        overlapping = sum(1 for a in agents if math.dist(a.state.p_pos, i.state.p_pos) < a.size + i.size)
        total += -cover - overlapping  # overlapping counts i itself
    return total


def test_paper_reward_matches_a_hand_computation_including_collisions() -> None:
    env = MPESpreadEnv(scale=0.05)  # everyone starts packed together: collisions guaranteed
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    collided = False
    for _ in range(10):
        result = env.step(rng.integers(0, 5, size=3))
        assert result.reward == pytest.approx(_hand_paper_reward(env), abs=1e-9)
        collided |= (
            result.reward
            < -3
            * sum(min(math.dist(a.state.p_pos, lm.state.p_pos) for a in env.world.agents) for lm in env.world.landmarks)
            - 3
            - 1e-9
        )
    assert collided  # the test exercised the collision term, not only the self-count


def test_mpe2_reward_is_the_sum_of_mpe2_agent_rewards() -> None:
    env = MPESpreadEnv(reward="mpe2", scale=0.05, local_ratio=0.5)
    env.reset(seed=2)
    result = env.step(np.array([0, 1, 2]))
    agents, landmarks = env.world.agents, env.world.landmarks
    cover = sum(min(math.dist(a.state.p_pos, lm.state.p_pos) for a in agents) for lm in landmarks)
    others = sum(
        1 for i in agents for a in agents if a is not i and math.dist(a.state.p_pos, i.state.p_pos) < a.size + i.size
    )
    assert result.reward == pytest.approx(3 * 0.5 * -cover + 0.5 * -others, abs=1e-9)


@pytest.mark.parametrize("as_termination", [False, True])
def test_time_limit_ends_as_truncation_or_termination_as_switched(as_termination: bool) -> None:
    env = MPESpreadEnv(time_limit_is_termination=as_termination)
    env.reset(seed=0)
    results = [env.step(np.zeros(3, dtype=int)) for _ in range(25)]
    assert not any(r.terminated or r.truncated for r in results[:-1])
    assert results[-1].terminated is as_termination and results[-1].truncated is (not as_termination)


def test_rng_state_roundtrip_reproduces_the_next_episode() -> None:
    env = MPESpreadEnv()
    env.reset(seed=3)
    state = env.get_rng_state()
    first = env.reset().obs.copy()
    env.set_rng_state(state)
    np.testing.assert_array_equal(env.reset().obs, first)


def test_episodes_equal_those_of_mpe2_parallel_env() -> None:
    """The adapter steps mpe2's AEC env directly; mpe2's own parallel API must see the same episode."""
    from mpe2 import simple_spread_v3

    ours = MPESpreadEnv(reward="mpe2", scale=1.0, landmark_scale=1.0, time_limit_is_termination=False)
    theirs = simple_spread_v3.parallel_env(N=3, local_ratio=0.5, max_cycles=25, continuous_actions=False)
    first = ours.reset(seed=5)
    obs, _ = theirs.reset(seed=5)
    np.testing.assert_array_equal(first.obs, np.stack([obs[name] for name in theirs.agents]))
    actions = np.random.default_rng(0).integers(0, 5, size=(25, 3))
    for t, step_actions in enumerate(actions):
        names = list(theirs.agents)
        obs, rewards, terminations, truncations, _ = theirs.step(dict(zip(names, step_actions.tolist(), strict=True)))
        result = ours.step(step_actions)
        np.testing.assert_array_equal(result.next.obs, np.stack([obs[name] for name in names]))
        assert result.reward == pytest.approx(sum(rewards.values()), abs=1e-12)
        assert result.truncated == any(truncations.values()) == (t == 24)
        assert not result.terminated and not any(terminations.values())


@pytest.mark.parametrize("scenario", ["spread_simple", "spread_medium", "spread_hard"])
def test_spread_ends_at_the_time_limit_as_termination_by_default(compose_train, scenario: str) -> None:
    """The paper's code does not bootstrap the 25-step end; bootstrapping it let QMIX's values diverge on Spread
    (|Q_tot| up to 1.7e7 at 1M steps, docs/results.md §8), so a run without the switch must not bootstrap."""
    from softqmix.envs.registry import make_env

    env = make_env(compose_train([f"env=mpe/{scenario}"]).env)
    env.reset(seed=0)
    results = [env.step(np.zeros(env.info().n_agents, dtype=int)) for _ in range(env.info().episode_limit)]
    assert results[-1].terminated and not results[-1].truncated
    assert not any(r.terminated or r.truncated for r in results[:-1])
