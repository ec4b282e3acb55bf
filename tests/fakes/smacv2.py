"""An API-faithful stand-in for `smacv2.env.StarCraftCapabilityEnvWrapper`, written from smacv2's interface
(the wrapper in oxwhirl/smacv2, smacv2/env/starcraft2/wrapper.py and starcraft2.py; docs/smacv2.md).

StarCraft II cannot run here, so everything SMACv2-specific that the platform relies on is
reproduced: the constructor's keyword arguments and its in-place edit of `capability_config`,
`get_env_info()` keys and sizes per scenario (the documented formulas), the per-agent lists that
get_obs()/get_avail_actions() return, no-op only for dead agents, AssertionError on an illegal
action, the info keys, get_stats() (ZeroDivisionError before the first episode), the reward
scaling, the timeout as termination, and the None that reset() returns after a retried reset.
The battle itself is a toy: units on a plane, attacks in range, enemies that stand and shoot.
"""

from __future__ import annotations

import sys
import types
from typing import Any, ClassVar

import numpy as np

ACCEPTED_KWARGS = {
    "map_name", "capability_config", "step_mul", "move_amount", "difficulty", "game_version", "seed",
    "continuing_episode", "obs_all_health", "obs_own_health", "obs_last_action", "obs_pathing_grid",
    "obs_terrain_height", "obs_timestep_number", "obs_instead_of_state", "obs_own_pos", "state_last_action",
    "state_timestep_number", "reward_sparse", "reward_only_positive", "reward_death_value", "reward_win",
    "reward_defeat", "reward_negative_scale", "reward_scale", "reward_scale_rate", "conic_fov", "num_fov_actions",
    "use_unit_ranges", "min_attack_range", "fully_observable", "heuristic_ai", "debug", "prob_obs_enemy",
    "action_mask", "replay_dir", "replay_prefix", "window_size_x", "window_size_y", "kill_unit_step_mul",
    "obs_starcraft", "heuristic_rest",
}  # fmt: skip
MAPS = {"10gen_protoss": "protoss", "10gen_terran": "terran", "10gen_zerg": "zerg"}
EPISODE_LIMIT = 200
SHOOT_RANGE = 6.0
ALLY_DAMAGE, ENEMY_DAMAGE = 0.25, 0.05  # health fractions per hit; allies that focus fire win
HEALTH_MAX = 45.0


class StarCraftCapabilityEnvWrapper:
    instances: ClassVar[list[StarCraftCapabilityEnvWrapper]] = []

    def __init__(self, **kwargs: Any) -> None:
        unknown = set(kwargs) - ACCEPTED_KWARGS
        if unknown:
            raise TypeError(f"StarCraft2Env.__init__() got an unexpected keyword argument '{sorted(unknown)[0]}'")
        cap = kwargs["capability_config"]
        for key, sub in cap.items():  # the real wrapper edits the caller's dict in place
            if key not in ("n_units", "n_enemies"):
                sub.update(env_key=key, n_units=cap["n_units"], n_enemies=cap["n_enemies"])
        self.race = MAPS[kwargs["map_name"]]
        self.n_agents = cap["team_gen"]["n_units"]
        self.n_enemies = cap["team_gen"]["n_enemies"]
        self.episode_limit = EPISODE_LIMIT
        self.kwargs = kwargs
        wider_terran = self.race == "terran" and self.n_agents > self.n_enemies
        self.n_actions = 6 + (self.n_agents if wider_terran else self.n_enemies)
        self.shield = 1 if self.race == "protoss" else 0
        self.max_reward = self.n_enemies * kwargs.get("reward_death_value", 10) + kwargs.get("reward_win", 200)
        self.sc2_running = False
        self.closed = False
        self.fail_next_reset = False  # set by a test: reset() retries and returns None, like the real bug
        self.illegal_action_seen = False
        self._stats = {"battles_won": 0, "battles_game": 0, "battles_draw": 0, "timeouts": 0, "restarts": 0}
        self._rng = np.random.default_rng()  # unseeded, as smacv2's generators
        StarCraftCapabilityEnvWrapper.instances.append(self)

    # ---- sizes (the formulas of smacv2's starcraft2.py get_*_size)
    def get_obs_size(self) -> int:
        sh = self.shield
        return 4 + self.n_enemies * (4 + 3 + 1 + sh) + (self.n_agents - 1) * (4 + 1 + sh + 3) + (1 + sh + 2 + 3)

    def get_state_size(self) -> int:
        sh = self.shield
        return self.n_agents * (4 + sh + 3) + self.n_enemies * (3 + sh + 3) + self.n_agents * self.n_actions

    def get_env_info(self) -> dict[str, Any]:
        shield = ["shield"] if self.shield else []
        return {
            "state_shape": self.get_state_size(),
            "obs_shape": self.get_obs_size(),
            "cap_shape": 3,
            "n_actions": self.n_actions,
            "n_agents": self.n_agents,
            "episode_limit": self.episode_limit,
            "agent_features": ["health", "energy/cooldown", "rel_x", "rel_y", *shield, "type_0", "type_1", "type_2"],
            "enemy_features": ["health", "rel_x", "rel_y", *shield, "type_0", "type_1", "type_2"],
        }

    # ---- episode
    def reset(self) -> tuple[list[np.ndarray], np.ndarray] | None:
        if self.closed:
            raise RuntimeError("reset() after close()")
        self.sc2_running = True
        self.t = 0
        self.ally_pos = np.column_stack([np.full(self.n_agents, 10.0), np.linspace(10, 20, self.n_agents)])
        self.enemy_pos = np.column_stack([np.full(self.n_enemies, 14.0), np.linspace(10, 20, self.n_enemies)])
        self.ally_health = np.ones(self.n_agents)
        self.enemy_health = np.ones(self.n_enemies)
        self.ally_types = self._rng.integers(0, 3, self.n_agents)
        self.last_actions = np.zeros((self.n_agents, self.n_actions), dtype=np.float32)
        self.max_reward = self.n_enemies * 10 + 200 + self.n_enemies * HEALTH_MAX  # fixed per SMACv2's first team
        if self.fail_next_reset:
            self.fail_next_reset = False
            self._stats["restarts"] += 1
            return None
        return self.get_obs(), self.get_state()

    def _in_range(self, i: int) -> np.ndarray:
        dist = np.linalg.norm(self.enemy_pos - self.ally_pos[i], axis=1)
        return (dist <= SHOOT_RANGE) & (self.enemy_health > 0)

    def get_avail_agent_actions(self, i: int) -> list[int]:
        avail = [0] * self.n_actions
        if self.ally_health[i] <= 0:
            avail[0] = 1  # no-op, and only no-op, for the dead
            return avail
        avail[1] = 1  # stop
        x, y = self.ally_pos[i]
        step = self.kwargs.get("move_amount", 2)
        avail[2], avail[3] = int(y + step <= 32), int(y - step >= 0)
        avail[4], avail[5] = int(x + step <= 32), int(x - step >= 0)
        for j, ok in enumerate(self._in_range(i)):
            avail[6 + j] = int(ok)
        return avail

    def get_avail_actions(self) -> list[list[int]]:
        return [self.get_avail_agent_actions(i) for i in range(self.n_agents)]

    def get_obs_agent(self, i: int) -> np.ndarray:
        obs = np.zeros(self.get_obs_size(), dtype=np.float32)
        if self.ally_health[i] <= 0:
            return obs
        avail = self.get_avail_agent_actions(i)
        obs[:4] = avail[2:6]
        feats = []
        for j in range(self.n_enemies):
            d = self.enemy_pos[j] - self.ally_pos[i]
            feats += [avail[6 + j], np.linalg.norm(d) / 9, d[0] / 9, d[1] / 9, self.enemy_health[j]]
            feats += [1.0] * self.shield + [0.0, 0.0, 0.0]
        obs[4 : 4 + len(feats)] = feats
        return obs

    def get_obs(self) -> list[np.ndarray]:
        return [self.get_obs_agent(i) for i in range(self.n_agents)]

    def get_state(self) -> np.ndarray:
        state = np.zeros(self.get_state_size(), dtype=np.float32)
        width = 4 + self.shield + 3
        for i in range(self.n_agents):
            if self.ally_health[i] > 0:
                state[i * width] = self.ally_health[i]
                state[i * width + 2 : i * width + 4] = (self.ally_pos[i] - 16) / 16
        offset = self.n_agents * width
        for j in range(self.n_enemies):
            state[offset + j * (3 + self.shield + 3)] = max(self.enemy_health[j], 0.0)
        state[-self.n_agents * self.n_actions :] = self.last_actions.reshape(-1)
        return state

    def step(self, actions: Any) -> tuple[float, bool, dict[str, Any]]:
        actions = [int(a) for a in actions]
        for i, a in enumerate(actions):
            if not self.get_avail_agent_actions(i)[a]:
                self.illegal_action_seen = True
                raise AssertionError(f"Agent {i} cannot perform action {a}")
        self.t += 1
        self.last_actions[:] = 0
        enemy_before = self.enemy_health.clip(0).copy()
        step = self.kwargs.get("move_amount", 2)
        for i, a in enumerate(actions):
            self.last_actions[i, a] = 1
            if 2 <= a <= 5:
                self.ally_pos[i] += {2: (0, step), 3: (0, -step), 4: (step, 0), 5: (-step, 0)}[a]
            elif a >= 6:
                self.enemy_health[a - 6] -= ALLY_DAMAGE
        for j in np.flatnonzero(self.enemy_health > 0):
            dist = np.linalg.norm(self.ally_pos - self.enemy_pos[j], axis=1)
            targets = np.flatnonzero((dist <= SHOOT_RANGE) & (self.ally_health > 0))
            if targets.size:
                self.ally_health[targets[0]] -= ENEMY_DAMAGE
        dead_allies = int((self.ally_health <= 0).sum())
        dead_enemies = int((self.enemy_health <= 0).sum())
        new_deaths = int(((enemy_before > 0) & (self.enemy_health <= 0)).sum())
        reward = float((enemy_before - self.enemy_health.clip(0)).sum() * HEALTH_MAX) + 10.0 * new_deaths
        won = dead_enemies == self.n_enemies
        lost = dead_allies == self.n_agents
        info: dict[str, Any] = {"battle_won": False, "dead_allies": dead_allies, "dead_enemies": dead_enemies}
        terminated = won or lost or self.t >= self.episode_limit
        if won:
            reward += 200.0
            info["battle_won"] = True
            self._stats["battles_won"] += 1
        if terminated:
            self._stats["battles_game"] += 1
            if not (won or lost):
                self._stats["timeouts"] += 1
        reward /= self.max_reward / self.kwargs.get("reward_scale_rate", 20)
        return reward, terminated, info

    def get_stats(self) -> dict[str, Any]:
        games = self._stats["battles_game"]
        return {**self._stats, "win_rate": self._stats["battles_won"] / games}  # ZeroDivisionError before a game

    def close(self) -> None:
        self.sc2_running = False
        self.closed = True


def install(monkeypatch: Any) -> type[StarCraftCapabilityEnvWrapper]:
    """Make `from smacv2.env import StarCraftCapabilityEnvWrapper` import this fake."""
    package = types.ModuleType("smacv2")
    env_module = types.ModuleType("smacv2.env")
    env_module.StarCraftCapabilityEnvWrapper = StarCraftCapabilityEnvWrapper  # type: ignore[attr-defined]
    package.env = env_module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "smacv2", package)
    monkeypatch.setitem(sys.modules, "smacv2.env", env_module)
    StarCraftCapabilityEnvWrapper.instances.clear()
    return StarCraftCapabilityEnvWrapper
