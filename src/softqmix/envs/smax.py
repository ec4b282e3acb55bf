"""SMAX (jaxmarl): SMACv2-style battles that run without StarCraft II (docs/smacv2.md, "SMAX").

jaxmarl's `HeuristicEnemySMAX` on its SMACv2 scenarios (`smacv2_5_units`, `smacv2_10_units`:
surrounded-and-reflect start positions, random unit types, a scripted enemy) with three changes
that make each scenario a stand-in for its SMACv2 namesake:
- unit types are drawn per race from SMAX's own six types (protoss: stalker/zealot, terran:
  marine/marauder, zerg: zergling/hydralisk) with the SMACv2 weights of the types SMAX has,
  renormalised, and the enemy team copies the ally team, as SMACv2 does;
- episodes last at most `max_steps` = 200 steps, SMACv2's limit (SMAX's default is 100);
- actions and masks use SMAC's layout, so the learner sees the same convention on both families:
  0 no-op (dead agents only), 1 stop, 2 north, 3 south, 4 east, 5 west, 6 + j attack enemy j.
  SMAX's own layout is 0 north, 1 east, 2 south, 3 west, 4 stop, 5 + j attack, and its dead
  units may only stop.
`battle_won` is read from which units survive: every enemy dead and at least one ally alive.

Two more bring SMAX's numbers to SMACv2's scale, where the value learners' settings were tuned:
- the reward is multiplied by `reward_scale` (10: SMAX's damage reward sums to 1 and its win bonus is 1,
  so a won battle is worth 20, SMACv2's normalised maximum); logged returns are on this scale;
- `state_features=normalised` (default) gives the mixer SMACv2-style state features: positions relative
  to the map centre divided by half the map size, weapon cooldowns divided by the unit type's cooldown
  and clipped to [0, 1] as SMAX's observations have them, and no raw unit-type ids (the one-hot bits
  stay). SMAX's raw world state carries positions in map units (0..32), type ids up to 5 and cooldowns
  that run unbounded below zero, which make a hypernetwork mixer start with |Q_tot| in the tens on
  returns below 1 (docs/results.md §10). `raw` keeps jaxmarl's vector.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
from omegaconf import MISSING

from softqmix.envs.base import EnvConfig, EnvInfo, Observation, Observations, StepResult, VectorStep
from softqmix.envs.registry import EnvFamily, register_env_family
from softqmix.errors import ConfigError

INSTALL_HINT = "env family 'smax' needs jaxmarl: pip install -e '.[smax]' (jaxmarl 0.2.0 and jax, CPU is enough)"
N_SMAC_MOVES = 6  # no-op, stop, north, south, east, west
SMAX_STOP = 4
# our action -> SMAX action, for the first six; attacks shift by one (6 + j -> 5 + j)
SMAC_TO_SMAX_MOVES = (SMAX_STOP, SMAX_STOP, 0, 2, 1, 3)
SMAX_MOVE_OF_OURS = {2: 0, 3: 2, 4: 1, 5: 3}  # where each of our moves sits in SMAX's mask


class StateFeatures(str, Enum):
    normalised = "normalised"  # SMACv2-style: centred, scaled positions and cooldowns; no raw type ids
    raw = "raw"  # jaxmarl's world state as it is


@dataclass
class SMAXEnvConfig(EnvConfig):
    """jaxmarl's SMAX with SMACv2-style scenarios; runs without StarCraft II (docs/smacv2.md, "SMAX")."""

    family: str = "smax"
    scenario: str = "smacv2_5_units"  # jaxmarl scenario: smacv2_5_units | smacv2_10_units | smacv2_20_units
    unit_types: list[str] = MISSING  # drawn from SMAX's marine, marauder, stalker, zealot, zergling, hydralisk
    unit_type_weights: list[float] = MISSING
    episode_limit: int = 200  # SMAX max_steps; SMACv2's limit
    time_limit_is_termination: bool = True  # as on SMACv2 (the paper's code)
    enemy_shoots: bool = True  # jaxmarl's heuristic enemy
    attack_mode: str = "closest"  # closest | random
    won_battle_bonus: float = 1.0  # SMAX's win reward (its damage reward sums to 1 over a full kill)
    reward_scale: float = 10.0  # every reward times this: 20 for a won battle, SMACv2's normalised scale
    state_features: StateFeatures = StateFeatures.normalised
    walls_cause_death: bool = True
    world_steps_per_env_step: int = 8  # SMAX's counterpart of step_mul
    obs_last_action: bool = True
    # JAX's persistent compilation cache: the first run on a machine compiles SMAX's reset and step (10-15 s on a
    # CPU), later runs and every other run of a sweep load them from here. null: compile in every process.
    jax_cache_dir: str | None = "~/.cache/softqmix/jax"


def _import_jaxmarl() -> tuple[Any, Any, Any]:
    """jaxmarl's make, scenario lookup and Distribution base (its import prints two lines about optional
    submodules; they are harmless)."""
    try:
        from jaxmarl import make
        from jaxmarl.environments.smax import map_name_to_scenario
        from jaxmarl.environments.smax.distributions import Distribution
    except ImportError as exc:
        raise ConfigError(INSTALL_HINT) from exc
    return make, map_name_to_scenario, Distribution


def require_jaxmarl() -> None:
    _import_jaxmarl()


def use_jax_compilation_cache(directory: str | None) -> None:
    """Point JAX's persistent compilation cache at `directory` (None: leave JAX's setting alone). SMAX's jitted
    step takes seconds to compile, and JAX caches only compilations that take at least a second by default."""
    if directory is None:
        return
    import jax

    path = os.path.expanduser(directory)
    if jax.config.jax_compilation_cache_dir != path:
        os.makedirs(path, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", path)


def race_unit_type_distribution(
    n_allies: int, n_enemies: int, map_size: int, type_ids: list[int], weights: list[float]
) -> Any:
    """A jaxmarl unit-type `Distribution` that draws the allies from `type_ids` with `weights`
    and gives the enemies the same team (extra enemies, as in 10v11, drawn the same way)."""
    import jax
    import jax.numpy as jnp

    _, _, distribution_base = _import_jaxmarl()

    class RaceUnitTypes(distribution_base):  # type: ignore[misc, valid-type]
        def generate(self, key: Any) -> Any:
            ally_key, extra_key = jax.random.split(key)
            ids, p = jnp.asarray(type_ids, dtype=jnp.uint8), jnp.asarray(weights)
            allies = jax.random.choice(ally_key, ids, shape=(n_allies,), p=p)
            extra = jax.random.choice(extra_key, ids, shape=(max(n_enemies - n_allies, 0),), p=p)
            enemies = jnp.concatenate([allies, extra])[:n_enemies]
            return jnp.concatenate([allies, enemies]).astype(jnp.uint8)

    return RaceUnitTypes(n_allies, n_enemies, map_size, map_size)


@dataclass(frozen=True)
class SMAXSettings:
    scenario: str
    unit_types: tuple[str, ...]
    unit_type_weights: tuple[float, ...]
    max_steps: int
    enemy_shoots: bool
    attack_mode: str
    won_battle_bonus: float
    walls_cause_death: bool
    world_steps_per_env_step: int
    reward_scale: float = 10.0
    state_features: str = StateFeatures.normalised.value


@dataclass(frozen=True)
class CompiledSMAX:
    """A jaxmarl SMAX game and its jitted reset/step; stateless, so every env of one config shares it."""

    n_agents: int
    n_enemies: int
    reset: Callable[..., tuple[Any, ...]]
    step: Callable[..., tuple[Any, ...]]
    split: Callable[[Any], tuple[Any, Any]]
    # over a leading axis of envs, each one jitted vmapped call (SMAXVectorEnv); step_many splits each battle's
    # key as `split` does and steps with the new subkey, in the same call: (keys, state, ...) from (keys, state,
    # actions)
    reset_many: Callable[..., tuple[Any, ...]]
    step_many: Callable[..., tuple[Any, ...]]
    split_many: Callable[[Any], tuple[Any, Any]]


@functools.lru_cache(maxsize=8)
def compile_smax(settings: SMAXSettings) -> CompiledSMAX:
    """Build the game once per process and config: tracing and compiling take seconds per function."""
    make, map_name_to_scenario, _ = _import_jaxmarl()
    import jax
    import jax.numpy as jnp

    if len(settings.unit_types) != len(settings.unit_type_weights) or not np.isclose(
        sum(settings.unit_type_weights), 1.0
    ):
        raise ConfigError(
            f"env.unit_types {list(settings.unit_types)} need one weight each summing to 1, "
            f"got {list(settings.unit_type_weights)}"
        )
    try:
        smax_scenario = map_name_to_scenario(settings.scenario)
    except KeyError as exc:
        raise ConfigError(f"env.scenario '{settings.scenario}' is not a jaxmarl SMAX scenario") from exc
    env = make(
        "HeuristicEnemySMAX",
        scenario=smax_scenario,
        max_steps=settings.max_steps,
        enemy_shoots=settings.enemy_shoots,
        attack_mode=settings.attack_mode,
        won_battle_bonus=settings.won_battle_bonus,
        walls_cause_death=settings.walls_cause_death,
        world_steps_per_env_step=settings.world_steps_per_env_step,
    )
    smax = env._env  # the SMAX game under the heuristic-enemy wrapper
    unknown = sorted(set(settings.unit_types) - set(smax.unit_type_names))
    if unknown:
        raise ConfigError(f"env.unit_types {unknown} are not SMAX unit types; valid: {smax.unit_type_names}")
    smax.unit_type_generator = race_unit_type_distribution(
        smax.num_allies,
        smax.num_enemies,
        smax.map_width,
        [smax.unit_type_names.index(name) for name in settings.unit_types],
        list(settings.unit_type_weights),
    )
    n_agents, n_enemies = smax.num_allies, smax.num_enemies
    agents = list(env.agents)
    to_smax = jnp.asarray([*SMAC_TO_SMAX_MOVES, *range(5, 5 + n_enemies)], dtype=jnp.int32)

    n_units = smax.num_agents
    n_unit_features = len(smax.own_features)  # health, x, y, weapon cooldown, one bit per unit type
    half_size = jnp.asarray([smax.map_width / 2, smax.map_height / 2], dtype=jnp.float32)
    normalise = StateFeatures(settings.state_features) is StateFeatures.normalised

    def world_state(state: Any, raw: Any) -> Any:
        """The mixer's state: jaxmarl's vector, or its SMACv2-style normalised form (module docstring)."""
        if not normalise:
            return raw
        inner = state.state
        units = raw[: n_units * n_unit_features].reshape(n_units, n_unit_features)
        alive = inner.unit_alive[:, None].astype(jnp.float32)
        positions = (units[:, 1:3] - half_size) / half_size
        # SMAX's world state keeps counting a unit's cooldown down while it does not fire (to -10 and below in
        # one battle); its observations clip the same ratio to [0, 1], and so does this
        cooldown = jnp.clip(units[:, 3:4] / smax.unit_type_weapon_cooldowns[inner.unit_types][:, None], 0.0, 1.0)
        units = jnp.concatenate([units[:, :1], positions, cooldown, units[:, 4:]], axis=-1) * alive
        teams = raw[n_units * n_unit_features : n_units * (n_unit_features + 1)]
        return jnp.concatenate([units.reshape(-1), teams])

    def arrays(state: Any, obs: dict[str, Any]) -> tuple[Any, ...]:
        smax_avail = env.get_avail_actions(state)
        smax_avail = jnp.stack([smax_avail[a] for a in agents]).astype(jnp.float32)
        alive = state.state.unit_alive
        ours = jnp.zeros((n_agents, N_SMAC_MOVES + n_enemies), dtype=jnp.float32)
        ours = ours.at[:, 0].set(~alive[:n_agents])
        ours = ours.at[:, 1].set(alive[:n_agents])
        for mine, theirs in SMAX_MOVE_OF_OURS.items():
            ours = ours.at[:, mine].set(smax_avail[:, theirs])
        ours = ours.at[:, N_SMAC_MOVES:].set(smax_avail[:, 5:])
        return jnp.stack([obs[a] for a in agents]), world_state(state, obs["world_state"]), ours, alive

    def reset(key: Any) -> tuple[Any, ...]:
        obs, state = env.reset(key)
        # SMAX's reset leaves a weakly typed leaf that its step returns strongly typed; without the cast the
        # jitted step would compile twice (tens of seconds) for what is one signature.
        state = jax.tree_util.tree_map(lambda x: jax.lax.convert_element_type(x, x.dtype), state)
        return (state, *arrays(state, obs))

    def step(key: Any, state: Any, actions: Any) -> tuple[Any, ...]:
        smax_actions = to_smax[actions]
        obs, state, rewards, dones, _ = env.step_env(key, state, {a: smax_actions[i] for i, a in enumerate(agents)})
        return (state, *arrays(state, obs), settings.reward_scale * rewards[agents[0]], dones["__all__"])

    split = lambda key: tuple(jax.random.split(key))  # noqa: E731

    def split_and_step(key: Any, state: Any, actions: Any) -> tuple[Any, ...]:
        key, sub = split(key)
        return (key, *step(sub, state, actions))

    return CompiledSMAX(
        n_agents=n_agents,
        n_enemies=n_enemies,
        reset=jax.jit(reset),
        step=jax.jit(step),
        split=jax.jit(split),
        reset_many=jax.jit(jax.vmap(reset)),
        step_many=jax.jit(jax.vmap(split_and_step)),
        split_many=jax.jit(jax.vmap(split)),
    )


def _settings(
    scenario: str,
    unit_types: list[str],
    unit_type_weights: list[float],
    episode_limit: int,
    enemy_shoots: bool,
    attack_mode: str,
    won_battle_bonus: float,
    walls_cause_death: bool,
    world_steps_per_env_step: int,
    reward_scale: float,
    state_features: StateFeatures | str,
) -> SMAXSettings:
    return SMAXSettings(
        scenario=scenario,
        unit_types=tuple(unit_types),
        unit_type_weights=tuple(float(w) for w in unit_type_weights),
        max_steps=episode_limit,
        enemy_shoots=enemy_shoots,
        attack_mode=attack_mode,
        won_battle_bonus=won_battle_bonus,
        walls_cause_death=walls_cause_death,
        world_steps_per_env_step=world_steps_per_env_step,
        reward_scale=float(reward_scale),
        state_features=StateFeatures(state_features).value,
    )


def outcomes(
    done: np.ndarray, t: np.ndarray, max_steps: int, alive: np.ndarray, n_agents: int, time_limit_is_termination: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(terminated, truncated, battle_won, timed_out) of SMAX steps, over a leading axis of battles, read from
    which units survive (alive: [battles, allies + enemies]).

    SMAX checks its limit before counting the step, so its episodes last max_steps + 1 steps; episodes end
    here at max_steps, the length the buffer and SMACv2 have.
    """
    allies_alive, enemies_alive = alive[:, :n_agents].any(1), alive[:, n_agents:].any(1)
    ended = done.astype(bool) | (t >= max_steps)
    won = ended & allies_alive & ~enemies_alive
    timed_out = ended & allies_alive & enemies_alive  # only the step limit ends a battle undecided
    truncated = timed_out & (not time_limit_is_termination)
    return ended & ~truncated, truncated, won, timed_out


def outcome(
    done: bool, t: int, max_steps: int, alive: np.ndarray, n_agents: int, time_limit_is_termination: bool
) -> tuple[bool, bool, dict[str, float]]:
    """(terminated, truncated, info) of one SMAX step (`outcomes` for one battle, with the info dict)."""
    alive = np.asarray(alive)[None]
    terminated, truncated, won, timed_out = outcomes(
        np.asarray([done]), np.asarray([t]), max_steps, alive, n_agents, time_limit_is_termination
    )
    info = {
        "battle_won": float(won[0]),
        "timeout": float(timed_out[0]),
        "dead_allies": float((~alive[0, :n_agents]).sum()),
        "dead_enemies": float((~alive[0, n_agents:]).sum()),
    }
    return bool(terminated[0]), bool(truncated[0]), info


class SMAXEnv:
    """One SMAX scenario behind the MultiAgentEnv protocol; a single jitted call per step."""

    def __init__(
        self,
        scenario: str,
        unit_types: list[str],
        unit_type_weights: list[float],
        episode_limit: int = 200,
        time_limit_is_termination: bool = True,
        enemy_shoots: bool = True,
        attack_mode: str = "closest",
        won_battle_bonus: float = 1.0,
        walls_cause_death: bool = True,
        world_steps_per_env_step: int = 8,
        reward_scale: float = 10.0,
        state_features: StateFeatures | str = StateFeatures.normalised,
        jax_cache_dir: str | None = None,
    ) -> None:
        import jax

        use_jax_compilation_cache(jax_cache_dir)
        self._game = compile_smax(
            _settings(
                scenario,
                unit_types,
                unit_type_weights,
                episode_limit,
                enemy_shoots,
                attack_mode,
                won_battle_bonus,
                walls_cause_death,
                world_steps_per_env_step,
                reward_scale,
                state_features,
            )
        )
        self.n_agents, self.n_enemies = self._game.n_agents, self._game.n_enemies
        self.max_steps, self.time_limit_is_termination = episode_limit, time_limit_is_termination
        self._key = jax.random.PRNGKey(0)
        self._state: Any = None
        self._t = 0
        # the sizes from a trace of reset, which compiles nothing: a vector env never runs the single-env
        # functions, and compiling this reset alone took 3-4 s of every SMAX run's start-up
        _, obs, world_state, _, _ = jax.eval_shape(self._game.reset, self._key)
        self._info = EnvInfo(
            n_agents=self.n_agents,
            n_actions=N_SMAC_MOVES + self.n_enemies,
            obs_dim=int(obs.shape[1]),
            state_dim=int(world_state.shape[0]),
            episode_limit=episode_limit,
            reports_wins=True,
        )

    def info(self) -> EnvInfo:
        return self._info

    def _observation(self, obs: Any, world_state: Any, avail: Any) -> Observation:
        # np.array copies: views of jax buffers are read-only, and torch refuses to wrap those
        return Observation(obs=np.array(obs), state=np.array(world_state), avail=np.array(avail))

    def reset(self, seed: int | None = None) -> Observation:
        import jax

        if seed is not None:
            self._key = jax.random.PRNGKey(seed)
        self._key, key = self._game.split(self._key)
        self._state, obs, world_state, avail, _ = self._game.reset(key)
        self._t = 0
        return self._observation(obs, world_state, avail)

    def step(self, actions: np.ndarray) -> StepResult:
        flat = np.asarray(actions, dtype=np.int32).reshape(-1)
        if flat.shape != (self.n_agents,) or flat.min() < 0 or flat.max() >= N_SMAC_MOVES + self.n_enemies:
            raise ValueError(
                f"SMAX expects {self.n_agents} actions in [0, {N_SMAC_MOVES + self.n_enemies}), got {flat}"
            )
        if self._state is None:
            raise RuntimeError("SMAX env: call reset() before step()")
        self._key, key = self._game.split(self._key)
        self._state, obs, world_state, avail, alive, reward, done = self._game.step(key, self._state, flat)
        self._t += 1
        terminated, truncated, info = outcome(
            bool(done), self._t, self.max_steps, np.asarray(alive), self.n_agents, self.time_limit_is_termination
        )
        return StepResult(
            reward=float(reward),
            terminated=terminated,
            truncated=truncated,
            next=self._observation(obs, world_state, avail),
            info=info,
        )

    def get_rng_state(self) -> list[int]:
        return np.asarray(self._key).tolist()

    def set_rng_state(self, state: list[int]) -> None:
        import jax.numpy as jnp

        self._key = jnp.asarray(state, dtype=jnp.uint32)

    def close(self) -> None:
        self._state = None


class SMAXVectorEnv:
    """`n_envs` SMAX battles of one scenario, reset and stepped as one jitted, vmapped jaxmarl call each.

    Each battle keeps its own key, split exactly as SMAXEnv splits it, so battle i of a vector seeded with
    s_i plays out as SMAXEnv seeded with s_i. Every battle is stepped at every call (shapes stay fixed, so
    nothing recompiles); a finished battle's results are not used, and its agents then hold still.
    """

    def __init__(self, n_envs: int, time_limit_is_termination: bool = True, **settings: Any) -> None:
        import jax

        if n_envs < 1:
            raise ValueError("batch_size_run must be >= 1")
        self.n_envs = n_envs
        self._single = SMAXEnv(time_limit_is_termination=time_limit_is_termination, **settings)
        self._game = self._single._game
        self.n_agents, self.n_enemies = self._single.n_agents, self._single.n_enemies
        self.max_steps, self.time_limit_is_termination = self._single.max_steps, time_limit_is_termination
        self._keys = jax.numpy.stack([jax.random.PRNGKey(i) for i in range(n_envs)])
        self._state: Any = None
        self._t = np.zeros(n_envs, dtype=np.int64)
        self._avail = np.zeros((n_envs, self.n_agents, N_SMAC_MOVES + self.n_enemies), dtype=np.float32)

    def info(self) -> EnvInfo:
        return self._single.info()

    def reset_all(self, seeds: list[int | None]) -> Observations:
        """Reset every battle; a seed restarts that battle's key, None continues its stream."""
        import jax
        import jax.numpy as jnp

        if len(seeds) != self.n_envs:
            raise ValueError(f"expected {self.n_envs} seeds, got {len(seeds)}")
        keys = [jax.random.PRNGKey(seed) if seed is not None else self._keys[i] for i, seed in enumerate(seeds)]
        self._keys, sub = self._game.split_many(jnp.stack(keys))
        self._state, obs, world_state, avail, _ = self._game.reset_many(sub)
        self._t[:] = 0
        # read-only views of JAX's host buffers, not copies: the collector copies each step into its episode
        # batch anyway, and nothing downstream writes into an observation
        self._avail = np.asarray(avail)
        return Observations(np.asarray(obs), np.asarray(world_state), self._avail)

    def step_all(self, actions: np.ndarray, active: np.ndarray) -> VectorStep:
        """Step every battle: `actions` [n_envs, n_agents] for the `active` ones ([n_envs] bool), while the others
        hold still (the first legal action of each agent: stop for a living unit, no-op for a dead one)."""
        return self._step(actions, active)[0]

    def _step(self, actions: np.ndarray, active: np.ndarray) -> tuple[VectorStep, np.ndarray, np.ndarray]:
        """`step_all`'s result, and which units are alive and which battles SMAX ended, for `step`'s info."""
        active = np.asarray(active, dtype=bool)
        joint = np.asarray(actions).reshape(self.n_envs, self.n_agents)
        full = np.where(active[:, None], joint, self._avail.argmax(-1)).astype(np.int32)
        if full.min() < 0 or full.max() >= N_SMAC_MOVES + self.n_enemies:
            raise ValueError(f"SMAX expects actions in [0, {N_SMAC_MOVES + self.n_enemies}), got {full[active]}")
        self._keys, self._state, obs, world_state, avail, alive, reward, done = self._game.step_many(
            self._keys, self._state, full
        )
        self._t += 1
        self._avail, alive, done = np.asarray(avail), np.asarray(alive), np.asarray(done)
        terminated, truncated, won, _ = outcomes(
            done, self._t, self.max_steps, alive, self.n_agents, self.time_limit_is_termination
        )
        next_obs = Observations(np.asarray(obs), np.asarray(world_state), self._avail)
        return VectorStep(np.asarray(reward), terminated, truncated, won.astype(np.float64), next_obs), alive, done

    def reset(self, seeds: list[int | None]) -> list[Observation]:
        """`reset_all` as one Observation per battle."""
        obs = self.reset_all(seeds)
        return [Observation(obs.obs[i], obs.state[i], obs.avail[i]) for i in range(self.n_envs)]

    def step(self, indices: list[int], actions: np.ndarray) -> list[StepResult]:
        """`step_all` with `actions[k]` the joint action of battle indices[k], as one StepResult per stepped battle,
        whose info has `outcome`'s counts too."""
        joint = np.zeros((self.n_envs, self.n_agents), dtype=np.int32)
        joint[indices] = np.asarray(actions, dtype=np.int32).reshape(len(indices), self.n_agents)
        active = np.zeros(self.n_envs, dtype=bool)
        active[indices] = True
        step, alive, done = self._step(joint, active)
        results = []
        for i in indices:
            terminated, truncated, info = outcome(
                bool(done[i]), int(self._t[i]), self.max_steps, alive[i], self.n_agents, self.time_limit_is_termination
            )
            nxt = Observation(step.next.obs[i], step.next.state[i], step.next.avail[i])
            results.append(StepResult(float(step.reward[i]), terminated, truncated, nxt, info))
        return results

    def warm_up(self) -> None:
        """Trace and compile (or load from JAX's persistent cache) the three jitted calls a round makes, on
        throwaway battles: a collection process does this while it waits for its actor, so its first round does
        not spend a second or two in JAX before the first step. The calls are pure; the env's own keys, battles
        and step counts are not touched."""
        import jax
        import jax.numpy as jnp

        keys, sub = self._game.split_many(jnp.stack([jax.random.PRNGKey(i) for i in range(self.n_envs)]))
        state, _, _, avail, _ = self._game.reset_many(sub)
        actions = np.asarray(avail).argmax(-1).astype(np.int32)  # host actions, as `_step` passes them
        jax.block_until_ready(self._game.step_many(keys, state, actions))

    def get_rng_state(self) -> list[list[int]]:
        return np.asarray(self._keys).tolist()

    def set_rng_state(self, state: list[list[int]]) -> None:
        import jax.numpy as jnp

        self._keys = jnp.asarray(state, dtype=jnp.uint32)

    def close(self) -> None:
        self._state = None


register_env_family(
    EnvFamily(
        name="smax",
        schema=SMAXEnvConfig,
        build=SMAXEnv,
        build_vector=SMAXVectorEnv,
        requirement=require_jaxmarl,
        fork_safe=False,
    )
)
