"""MPE Spread through the real `mpe2` package (PettingZoo's AEC API), as in the paper's §5.2.

Difficulty: after mpe2's own reset, agent positions are multiplied by `scale` and landmark
positions by `scale * landmark_scale`, then observations are recomputed from the world.
mpe2 draws both from U(-1, 1); the paper's OpenRL copy drew landmarks from 0.8 U(-1, 1),
hence `landmark_scale = 0.8` (docs/mpe.md).

Team reward, `reward: paper` (default), the paper's convention:
    r_t = sum_i [ -sum_l min_a |p_a - p_l|  -  #{a : |p_a - p_i| < size_a + size_i} ]
the second count includes agent i itself (the original MPE quirk, a constant -1 per agent
per step), so returns sit on the scale of the paper's Table 3. `reward: mpe2` is the sum of
mpe2's own per-agent rewards: (1 - local_ratio) * global + local_ratio * (-collisions with others).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from softqmix.envs.base import EnvConfig, EnvInfo, Observation, StepResult
from softqmix.envs.registry import EnvFamily, register_env_family
from softqmix.errors import ConfigError

REWARDS = ("paper", "mpe2")


@dataclass
class MPEEnvConfig(EnvConfig):
    """mpe2 simple_spread_v3 with the paper's difficulty scaling and reward; the defaults are Spread Simple."""

    family: str = "mpe"
    n_agents: int = 3  # N agents and N landmarks
    scale: float = 1.0  # initial positions x1 / x1.5 / x2 for Simple / Medium / Hard
    landmark_scale: float = 0.8  # landmarks at 0.8 U(-1,1) * scale as in the paper's MPE copy
    episode_limit: int = 25
    reward: str = "paper"  # paper | mpe2
    local_ratio: float = 0.5  # mpe2's mix of global and collision reward (reward=mpe2 only)
    # True, as in the paper's code: no bootstrap at step 25. Bootstrapping the limit (false) makes the targets an
    # infinite-horizon return of a reward unbounded below; QMIX's values then diverge on Spread past ~250k steps.
    time_limit_is_termination: bool = True
    obs_last_action: bool = False


class MPESpreadEnv:
    """mpe2 `simple_spread_v3` with N agents, N landmarks, 5 discrete actions, all always available."""

    def __init__(
        self,
        n_agents: int = 3,
        scale: float = 1.0,
        landmark_scale: float = 0.8,
        episode_limit: int = 25,
        reward: str = "paper",
        local_ratio: float = 0.5,
        time_limit_is_termination: bool = True,
        render_mode: str | None = None,
    ) -> None:
        try:
            from mpe2 import simple_spread_v3
        except ImportError as exc:  # pragma: no cover - mpe2 is a core dependency
            raise ConfigError("env family 'mpe' needs the mpe2 package: pip install mpe2") from exc
        if reward not in REWARDS:
            raise ConfigError(f"env.reward must be one of {REWARDS}, got '{reward}'")
        if scale <= 0 or landmark_scale <= 0:
            raise ConfigError(f"env.scale and env.landmark_scale must be > 0, got {scale}, {landmark_scale}")
        self.n_agents, self.scale, self.landmark_scale = n_agents, scale, landmark_scale
        self.episode_limit, self.reward_kind = episode_limit, reward
        self.time_limit_is_termination = time_limit_is_termination
        # mpe2's raw AEC env, stepped agent by agent in turn as PettingZoo's AEC API prescribes (the
        # world moves after the last agent's action). Not `parallel_env()`: its two wrappers only
        # police the call order and the action range (this adapter sends valid actions in order),
        # and its AEC-to-parallel loop computes every observation twice; together 40% of a step.
        self._raw = simple_spread_v3.raw_env(
            N=n_agents,
            local_ratio=local_ratio,
            max_cycles=episode_limit,
            continuous_actions=False,
            render_mode=render_mode,
        )
        self._names = list(self._raw.possible_agents)
        self._n_actions = int(self._raw.action_space(self._names[0]).n)
        self._obs_dim = int(self._raw.observation_space(self._names[0]).shape[0])
        self._avail = np.ones((n_agents, self._n_actions), dtype=np.float32)

    def info(self) -> EnvInfo:
        return EnvInfo(
            n_agents=self.n_agents,
            n_actions=self._n_actions,
            obs_dim=self._obs_dim,
            state_dim=self._obs_dim * self.n_agents,
            episode_limit=self.episode_limit,
        )

    @property
    def world(self) -> Any:
        return self._raw.world

    def _observation(self) -> Observation:
        obs = np.stack([self._raw.observe(name) for name in self._names])
        # state = all observations concatenated, as mpe2's state() and the paper's env define it
        return Observation(obs=obs, state=obs.reshape(-1), avail=self._avail)

    def reset(self, seed: int | None = None) -> Observation:
        self._raw.reset(seed=seed)
        world = self._raw.world
        for agent in world.agents:
            agent.state.p_pos = agent.state.p_pos * self.scale
        for landmark in world.landmarks:
            landmark.state.p_pos = landmark.state.p_pos * (self.scale * self.landmark_scale)
        self._raw.original_cam_range = float(np.max(np.abs([e.state.p_pos for e in world.entities])))
        return self._observation()

    def paper_reward(self) -> float:
        """The paper's team reward from the current world state (see module docstring)."""
        world = self._raw.world
        agents = np.array([a.state.p_pos for a in world.agents])
        landmarks = np.array([lm.state.p_pos for lm in world.landmarks])
        sizes = np.array([a.size for a in world.agents])
        cover = np.sqrt(np.square(landmarks[:, None] - agents[None]).sum(-1)).min(axis=1).sum()
        apart = np.sqrt(np.square(agents[:, None] - agents[None]).sum(-1))
        collisions = int((apart < sizes[:, None] + sizes[None]).sum())  # includes each agent with itself
        return float(-len(agents) * cover - collisions)

    def step(self, actions: np.ndarray) -> StepResult:
        flat = np.asarray(actions).reshape(-1)
        if flat.shape != (self.n_agents,) or flat.min() < 0 or flat.max() >= self._n_actions:
            raise ValueError(f"MPE Spread expects {self.n_agents} actions in [0, {self._n_actions}), got {flat}")
        raw = self._raw
        for action in flat.tolist():  # agent_selection cycles through the agents in this order
            raw.step(action)
        reward = self.paper_reward() if self.reward_kind == "paper" else float(sum(raw.rewards.values()))
        truncated = any(raw.truncations.values())
        terminated = any(raw.terminations.values()) or (truncated and self.time_limit_is_termination)
        return StepResult(
            reward=reward,
            terminated=terminated,
            truncated=truncated and not terminated,
            next=self._observation(),
        )

    def render(self) -> np.ndarray | None:
        return self._raw.render()

    def get_rng_state(self) -> dict[str, Any]:
        return self._raw.np_random.bit_generator.state

    def set_rng_state(self, state: dict[str, Any]) -> None:
        self._raw.np_random.bit_generator.state = state

    def close(self) -> None:
        self._raw.close()


register_env_family(EnvFamily(name="mpe", schema=MPEEnvConfig, build=MPESpreadEnv))
