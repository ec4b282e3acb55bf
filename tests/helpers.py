"""Tiny envs for tests: exact, fast and with known episode structure."""

from __future__ import annotations

import numpy as np

from softqmix.envs.base import EnvInfo, Observation, StepResult


class CorridorEnv:
    """Two agents; the episode terminates when both pick action 1, else is truncated at `limit` steps.

    obs = [t, agent index], state = [t]; the team reward is the step index, so every
    stored tensor can be checked against the step it came from.
    """

    def __init__(self, limit: int = 4, n_actions: int = 3) -> None:
        self.limit, self.n_actions, self.t = limit, n_actions, 0

    def info(self) -> EnvInfo:
        return EnvInfo(n_agents=2, n_actions=self.n_actions, obs_dim=2, state_dim=1, episode_limit=self.limit)

    def _obs(self) -> Observation:
        obs = np.array([[self.t, 0.0], [self.t, 1.0]], dtype=np.float32)
        return Observation(obs=obs, state=np.array([self.t], dtype=np.float32), avail=np.ones((2, self.n_actions)))

    def reset(self, seed: int | None = None) -> Observation:
        self.t = 0
        return self._obs()

    def step(self, actions: np.ndarray) -> StepResult:
        reward = float(self.t)
        self.t += 1
        terminated = bool((np.asarray(actions) == 1).all())
        truncated = not terminated and self.t >= self.limit
        return StepResult(reward=reward, terminated=terminated, truncated=truncated, next=self._obs())

    def close(self) -> None:
        pass
