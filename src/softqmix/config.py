"""Typed schemas for every Hydra config group.

The schemas are registered in Hydra's ConfigStore and sit first in each defaults
list, so OmegaConf rejects an unknown key or a value of the wrong type at start-up
with a message that names the key, instead of the run silently ignoring a typo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from softqmix.errors import ConfigError


class Mixer(str, Enum):
    """How the per-agent utilities are combined into Q_tot."""

    none = "none"  # independent learners (IQL): one TD loss per agent
    sum = "sum"  # VDN, and the released Soft-QMIX code (ALGORITHM.md §1.5)
    qmix = "qmix"  # monotonic hypernetwork mixer (ALGORITHM.md §1.2)


class Behaviour(str, Enum):
    """Exploration policy used while collecting training episodes."""

    eps_greedy = "eps_greedy"
    softmax = "softmax"  # softmax(f(g(Q))/alpha) over available actions


@dataclass
class LearnerConfig:
    """Fields every learner has; each algorithm family extends it (softqmix.algos.registry)."""

    name: str = MISSING
    variant: str = "default"  # set by an ablation bundle; names the run and its results row


@dataclass
class AlgoConfig(LearnerConfig):
    """One value-factorisation learner; the switches of ALGORITHM.md §8 select the variant."""

    mixer: Mixer = Mixer.qmix
    behaviour: Behaviour = Behaviour.eps_greedy
    soft_target: bool = False  # soft TD(lambda) with next actions sampled from the policy
    double_q: bool = True  # hard targets only: argmax of the online net picks the next action
    use_f: bool = False  # learned affine f (policy logits) trained by the MSE policy loss
    use_g: bool = False  # learned order-preserving g inside the critic
    g_residual: bool = False  # g(x) = x + ... (released code); strictly increasing
    nonneg: bool = True  # abs() on the weights of g, f and the QMIX mixer
    weighted_td: bool = False  # released code's sign-agreement weighting of the TD loss
    alpha: float = 0.03  # temperature of the soft target
    behaviour_alpha: float | None = None  # temperature of the behaviour policy; None = alpha
    mask_entropy_after_termination: bool = True  # False reproduces the released code's leak

    gamma: float = 0.99
    td_lambda: float = 0.4
    critic_lr: float = 1e-3  # agent net + g + mixer
    policy_lr: float = 1e-3  # f
    adam_eps: float = 1e-8
    grad_norm_clip: float = 10.0

    buffer_size: int = 5000  # episodes
    batch_size: int = 128  # episodes per update
    updates_per_collect: int = 1  # gradient steps per call of the collector
    target_update_interval: int = 200  # episodes between hard target copies

    epsilon_start: float = 1.0
    epsilon_finish: float = 0.05
    epsilon_anneal_time: int = 100_000  # env steps

    rnn_hidden_dim: int = 64
    obs_agent_id: bool = True
    mixing_embed_dim: int = 32
    hypernet_embed: int = 64
    g_hidden: int = 16  # ALGORITHM.md §9.4: mixing_embed_dim // 2 in the released code


@dataclass
class MAPPOConfig(LearnerConfig):
    """MAPPO (Yu et al., 2022) with the settings of PAPER.txt Appendix J and the MAPPO code's defaults."""

    name: str = "mappo"
    actor_lr: float = 5e-4
    critic_lr: float = 1e-3
    adam_eps: float = 1e-5
    linear_lr_decay: bool = True  # both learning rates fall linearly to 0 at t_max
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2  # PPO ratio clip, also the value clip
    ppo_epochs: int = 5
    num_mini_batch: int = 1
    chunk_length: int = 8  # recurrent policy trained on chunks of this many steps
    rollout_episodes: int = 8  # episodes per on-policy rollout (the paper's 8 envs)
    entropy_coef: float = 0.01
    value_loss_coef: float = 1.0
    huber_delta: float | None = 10.0  # null: squared error
    use_valuenorm: bool = True
    use_adv_norm: bool = True
    grad_norm_clip: float = 10.0
    rnn_hidden_dim: int = 64
    critic_hidden_dim: int = 64
    obs_agent_id: bool = True


class FOPTarget(str, Enum):
    code = "code"  # the authors' code: hard TD(lambda) on Q_tot, then - alpha * mean_i log pi_i(a'_{t+1}) once
    soft_td_lambda = "soft_td_lambda"  # the soft target of the maths: entropy of the joint policy inside TD(lambda)


@dataclass
class FOPConfig(LearnerConfig):
    """FOP (Zhang et al., 2021) as in the authors' code, docs/algorithms/fop.md; PAPER.txt Appendix J settings."""

    name: str = "fop"
    actor_lr: float = 5e-4
    critic_lr: float = 5e-4
    rmsprop_alpha: float = 0.99
    rmsprop_eps: float = 1e-5
    grad_norm_clip: float = 10.0
    gamma: float = 0.99
    td_lambda: float = 0.4  # PAPER.txt Appendix J; the authors' FOP code uses 0.8
    target: FOPTarget = FOPTarget.code
    alpha_start: float = 0.5  # temperature, annealed linearly (the code: max(0.05, 0.5 - t/2e5))
    alpha_finish: float = 0.05
    alpha_anneal_time: int = 90_000  # env steps from alpha_start to alpha_finish
    epsilon_start: float = 1.0  # exploration floor mixed into the sampled policy (multinomial selector)
    epsilon_finish: float = 0.05
    epsilon_anneal_time: int = 50_000
    buffer_size: int = 5000  # episodes
    batch_size: int = 32
    burn_in_episodes: int = 100  # no update before the buffer holds this many episodes
    updates_per_collect: int = 4  # the code updates once per episode; 4 envs give 4 episodes per collection
    target_update_interval: int = 200  # episodes between hard target copies
    n_heads: int = 4  # lambda heads of the mixer
    mixing_embed_dim: int = 32  # hidden width of the mixer's V(s)
    rnn_hidden_dim: int = 64  # actor
    critic_hidden_dim: int = 64
    twin_critics: bool = True  # two critics and mixers, the minimum in targets and the policy loss
    obs_agent_id: bool = True


@dataclass
class EnvConfig:
    """Fields every env family has; each family extends it."""

    family: str = MISSING
    name: str = MISSING
    obs_last_action: bool = True  # append the previous action (one-hot) to the agent input


@dataclass
class MatrixEnvConfig(EnvConfig):
    """A one-step cooperative game of two agents with an n x n payoff table."""

    family: str = "matrix"
    # list[Any] so that `env.payoff=[[1,0],[0,2]]` (ints) is accepted; MatrixGameEnv checks it is square and numeric
    payoff: list[Any] = field(default_factory=lambda: [[8.0, -12.0, -12.0], [-12.0, 0.0, 0.0], [-12.0, 0.0, 0.0]])
    action_names: list[str] | None = None
    obs_last_action: bool = False


@dataclass
class MPEEnvConfig(EnvConfig):
    """mpe2 simple_spread_v3 with the paper's difficulty scaling and reward (softqmix.envs.mpe)."""

    family: str = "mpe"
    n_agents: int = 3  # N agents and N landmarks
    scale: float = 1.0  # initial positions x1 / x1.5 / x2 for Simple / Medium / Hard
    landmark_scale: float = 0.8  # landmarks at 0.8 U(-1,1) * scale as in the paper's MPE copy
    episode_limit: int = 25
    reward: str = "paper"  # paper | mpe2
    local_ratio: float = 0.5  # mpe2's mix of global and collision reward (reward=mpe2 only)
    time_limit_is_termination: bool = False  # True reproduces the paper's code (no bootstrap at step 25)
    obs_last_action: bool = False


@dataclass
class SMACv2TeamGenConfig:
    """How smacv2 draws each episode's unit types (the enemy team copies the ally team)."""

    dist_type: str = "weighted_teams"
    unit_types: list[str] = MISSING
    weights: list[float] = MISSING
    exception_unit_types: list[str] = field(default_factory=list)  # types that may not make up a whole team
    observe: bool = True  # unit types are part of obs and state


@dataclass
class SMACv2StartPositionsConfig:
    dist_type: str = "surrounded_and_reflect"
    p: float = 0.5  # probability of the surrounded layout
    map_x: int = 32
    map_y: int = 32


@dataclass
class SMACv2CapabilityConfig:
    n_units: int = 5
    n_enemies: int = 5
    team_gen: SMACv2TeamGenConfig = field(default_factory=SMACv2TeamGenConfig)
    start_positions: SMACv2StartPositionsConfig = field(default_factory=SMACv2StartPositionsConfig)


@dataclass
class SMACv2Args:
    """StarCraft2Env's keyword arguments (SMACV2_API.md), passed to the wrapper unchanged."""

    map_name: str = MISSING  # 10gen_protoss | 10gen_terran | 10gen_zerg
    capability_config: SMACv2CapabilityConfig = field(default_factory=SMACv2CapabilityConfig)
    step_mul: int = 8
    move_amount: int = 2
    difficulty: str = "7"
    game_version: str | None = None
    seed: int | None = None  # the SC2 game seed only
    continuing_episode: bool = False
    obs_all_health: bool = True
    obs_own_health: bool = True
    obs_last_action: bool = False  # SC2's own obs flag; the agent input is env.obs_last_action
    obs_pathing_grid: bool = False
    obs_terrain_height: bool = False
    obs_timestep_number: bool = False
    obs_instead_of_state: bool = False
    obs_own_pos: bool = True
    state_last_action: bool = True
    state_timestep_number: bool = False
    reward_sparse: bool = False
    reward_only_positive: bool = True
    reward_death_value: float = 10.0
    reward_win: float = 200.0
    reward_defeat: float = 0.0
    reward_negative_scale: float = 0.5
    reward_scale: bool = True
    reward_scale_rate: float = 20.0
    conic_fov: bool = False
    num_fov_actions: int = 12
    use_unit_ranges: bool = True
    min_attack_range: int = 2
    fully_observable: bool = False
    heuristic_ai: bool = False
    debug: bool = False
    prob_obs_enemy: float = 1.0
    action_mask: bool = True
    replay_dir: str = ""


@dataclass
class SMACv2EnvConfig(EnvConfig):
    """smacv2's StarCraftCapabilityEnvWrapper (softqmix.envs.smacv2); needs StarCraft II 4.10."""

    family: str = "smacv2"
    env_args: SMACv2Args = field(default_factory=SMACv2Args)
    episode_limit: int = 200  # the 10gen maps' limit; checked against the env at start-up
    time_limit_is_termination: bool = True  # as the paper's code (no bootstrap at the limit)
    obs_last_action: bool = True  # pymarl's agent input for SMAC (ALGORITHM.md §4.1)


@dataclass
class SMAXEnvConfig(EnvConfig):
    """jaxmarl's SMAX with SMACv2-style scenarios (softqmix.envs.smax); runs without StarCraft II."""

    family: str = "smax"
    scenario: str = "smacv2_5_units"  # jaxmarl scenario: smacv2_5_units | smacv2_10_units | smacv2_20_units
    unit_types: list[str] = MISSING  # drawn from SMAX's marine, marauder, stalker, zealot, zergling, hydralisk
    unit_type_weights: list[float] = MISSING
    episode_limit: int = 200  # SMAX max_steps; SMACv2's limit
    time_limit_is_termination: bool = True  # as on SMACv2 (the paper's code)
    enemy_shoots: bool = True  # jaxmarl's heuristic enemy
    attack_mode: str = "closest"  # closest | random
    won_battle_bonus: float = 1.0  # SMAX's win reward (its damage reward sums to 1 over a full kill)
    walls_cause_death: bool = True
    world_steps_per_env_step: int = 8  # SMAX's counterpart of step_mul
    obs_last_action: bool = True


class Collection(str, Enum):
    """Where training episodes are collected, relative to the learner (docs/mpe.md, "Speed")."""

    serial = "serial"  # collect, then learn, in turn (pymarl's order; exact and reproducible)
    thread = "thread"  # the next round in a thread while the learner trains (one-update policy lag)
    process = "process"  # the next round in a forked child process (one-update lag; uses a second core)


@dataclass
class PoolConfig:
    """How the `batch_size_run` envs are stepped."""

    mode: str = "inprocess"  # inprocess | workers (one process per env)
    start_method: str = "fork"  # multiprocessing start method for workers
    max_restarts: int = 3  # dead workers restarted per run before giving up
    collection: Collection = Collection.serial  # serial | thread | process (overlap collection with learning)


class LoggerKind(str, Enum):
    csv = "csv"
    wandb = "wandb"
    tensorboard = "tensorboard"


class WandbMode(str, Enum):
    auto = "auto"  # WANDB_MODE if set, else online when an API key is configured, else offline
    online = "online"
    offline = "offline"  # logs under the run dir; upload later with `wandb sync <run dir>/wandb/offline-run-*`
    disabled = "disabled"


@dataclass
class LoggerConfig:
    """metrics.csv is always written; `kind` adds one more backend."""

    kind: LoggerKind = LoggerKind.wandb
    project: str = "softqmix"
    entity: str | None = None
    mode: WandbMode = WandbMode.auto
    group: str | None = None  # null: the sweep dir inside a multirun, so a sweep's runs share one group
    tags: list[str] = field(default_factory=list)  # added to algo=, ablation=, env=, seed= tags


@dataclass
class TrainerConfig:
    """Lightning Trainer settings; the learner runs where `accelerator` says."""

    accelerator: str = "cpu"
    devices: int = 1
    torch_threads: int = 1  # one intra-op thread per process: see DESIGN.md §2
    enable_progress_bar: bool = True  # env steps, episodes/s and the latest test return
    deterministic: bool = False


@dataclass
class CheckpointConfig:
    """When to checkpoint; what a resume can restore depends on `save_buffer` (docs/reliability.md)."""

    interval: int = 100_000  # env steps between checkpoints; 0 = only at the end (and on preemption)
    save_buffer: bool = False  # also write the replay buffer (gzip-compressed) so a resume is exact


@dataclass
class TrainConfig:
    """A whole run: which learner on which env for how long, and where it reports."""

    algo: LearnerConfig = MISSING
    env: EnvConfig = MISSING
    logger: LoggerConfig = MISSING
    trainer: TrainerConfig = MISSING
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    resume: str | None = None  # a run dir to continue; automatic when the run dir holds a checkpoint
    seed: int = 0
    t_max: int = 10_000  # env steps of training
    batch_size_run: int = 4  # envs stepped together by the collector
    test_interval: int = 1_000  # env steps between greedy evaluations
    test_nepisode: int = 32
    log_interval: int = 1_000  # env steps between training-metric rows
    print_report: bool = True  # print the matrix-game table at the end
    debug: bool = False  # full tracebacks for user errors


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


# Learners whose config is not the value-factorisation AlgoConfig, by algo.name.
ALGO_SCHEMAS: dict[str, type[LearnerConfig]] = {"mappo": MAPPOConfig, "fop": FOPConfig}

ENV_SCHEMAS: dict[str, type[EnvConfig]] = {
    "matrix": MatrixEnvConfig,
    "mpe": MPEEnvConfig,
    "smacv2": SMACv2EnvConfig,
    "smax": SMAXEnvConfig,
}


def validate_config(cfg: DictConfig) -> None:
    """Check a composed config against the schemas once more.

    Composition already rejects typos in YAML files and plain overrides; this also
    catches keys forced in with `+key=value` and configs built in code.
    """
    family = cfg.env.get("family")
    if family not in ENV_SCHEMAS:
        raise ConfigError(f"unknown env family '{family}'; valid families: {sorted(ENV_SCHEMAS)}")
    top = {k: v for k, v in cfg.items() if k not in ("algo", "env", "logger", "trainer")}
    try:
        OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.to_container(OmegaConf.create(top)))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"in the top-level config: {_one_line(exc)}") from exc
    for key, schema in (
        ("algo", ALGO_SCHEMAS.get(str(cfg.algo.get("name")), AlgoConfig)),
        ("env", ENV_SCHEMAS[family]),
        ("logger", LoggerConfig),
        ("trainer", TrainerConfig),
    ):
        try:
            OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.to_container(cfg[key], resolve=True))
        except OmegaConfBaseException as exc:
            raise ConfigError(f"in config group '{key}': {_one_line(exc)}") from exc
    if str(cfg.pool.collection) in ("process", "Collection.process"):
        if cfg.pool.mode == "workers":
            raise ConfigError(
                "pool.collection=process steps the envs in its own process and cannot restart env workers "
                "started by the learner's; use pool.mode=inprocess with it (or pool.collection=thread with workers)"
            )
        if family == "smax":
            raise ConfigError(
                "pool.collection=process forks the learner, and JAX (SMAX) deadlocks in a forked process; "
                "use pool.collection=serial or thread for env=smax/*"
            )


def register_configs() -> None:
    """Put every schema in Hydra's ConfigStore; YAML files name them in their defaults lists."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="schema", name="algo", node=AlgoConfig)
    cs.store(group="schema", name="algo_mappo", node=MAPPOConfig)
    cs.store(group="schema", name="algo_fop", node=FOPConfig)
    cs.store(group="schema", name="env_matrix", node=MatrixEnvConfig)
    cs.store(group="schema", name="env_mpe", node=MPEEnvConfig)
    cs.store(group="schema", name="env_smacv2", node=SMACv2EnvConfig)
    cs.store(group="schema", name="env_smax", node=SMAXEnvConfig)
    cs.store(group="schema", name="logger", node=LoggerConfig)
    cs.store(group="schema", name="trainer", node=TrainerConfig)
