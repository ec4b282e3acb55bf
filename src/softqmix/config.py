"""Typed schemas of the run-level config groups, their registration in Hydra's ConfigStore, validation.

Every group has a dataclass schema that sits first in its YAML's defaults list, so OmegaConf rejects an
unknown key or a value of the wrong type at start-up with a message that names the key, instead of the
run silently ignoring a typo. Algorithm and env-family schemas live with their code (softqmix.algos,
softqmix.envs) and reach the ConfigStore through their registries: `schema/algo/<name>` and
`schema/env/<family>`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from fnmatch import fnmatchcase
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from softqmix.algos.learner import LearnerConfig
from softqmix.cpu_placement import CpuPlacement
from softqmix.envs.base import EnvConfig
from softqmix.errors import ConfigError


class Collection(str, Enum):
    """Where training episodes are collected, relative to the learner (docs/mpe.md, "Speed")."""

    serial = "serial"  # collect, then learn, in turn (pymarl's order; exact and reproducible)
    thread = "thread"  # the next round in a thread while the learner trains (one-update policy lag)
    process = "process"  # the next round in a child process, forked (spawned for SMAX); one-update lag, 2 cores


@dataclass
class PoolConfig:
    """How the `batch_size_run` envs are stepped."""

    mode: str = "inprocess"  # inprocess | workers (one process per env)
    start_method: str = "fork"  # multiprocessing start method for workers
    max_restarts: int = 3  # dead workers restarted per run before giving up
    collection: Collection = Collection.serial  # serial | thread | process (overlap collection with learning)
    # with collection=process: auto | pinned (the learner's main thread on a core of its own) | shared
    # (softqmix.cpu_placement); collector_nice: the collection process's niceness when pinned (null: 5)
    cpu_placement: CpuPlacement = CpuPlacement.auto
    collector_nice: int | None = None


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
    torch_threads: int = 1  # one intra-op thread per process: see docs/architecture.md, "Collection and threads"
    # act (collect, test) with a CPU copy of the nets refreshed after each update; null: when the learner is on a GPU
    separate_actor: bool | None = None
    compile: bool = False  # torch.compile the update's hot spots where it pays (docs/results.md: speed)
    enable_progress_bar: bool = True  # env steps, episodes/s and the latest test return
    deterministic: bool = False
    # stop the run (failed.json, exit 1) when |summed loss| or |Q| (the learner's checked diagnostics) reaches
    # this; null: only NaN/inf stop it. Healthy runs on the shipped envs stay below ~1e3 (docs/reliability.md)
    divergence_bound: float | None = 1e6


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


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: an interval, plus single values with a meaning of their own."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself excluded
    also: tuple[float, ...] = ()  # allowed outside the interval (e.g. devices=-1: all devices)

    def allows(self, value: float) -> bool:
        if value in self.also:
            return True
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self, integer: bool) -> str:
        """'> 0', '>= 1' (whole numbers above 0), 'in [0, 1]', ... as the error message says it."""
        if self.low is not None and self.high is not None:
            text = f"in [{_number(self.low)}, {_number(self.high)}]"
        elif self.low is not None and self.low_open:
            text = f">= {_number(self.low + 1)}" if integer and self.low == int(self.low) else f"> {_number(self.low)}"
        elif self.low is not None:
            text = f">= {_number(self.low)}"
        else:
            text = f"<= {_number(self.high)}"
        return text + "".join(f" or {_number(v)}" for v in self.also)


def _number(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else f"{value:g}"


POSITIVE = Range(low=0, low_open=True)  # > 0 (>= 1 for whole numbers)
NON_NEGATIVE = Range(low=0)
UNIT = Range(low=0, high=1)  # probabilities, discounts, lambdas, mixing ratios
ANY = None  # deliberately unconstrained (e.g. rewards, which may be negative)

# The valid range of every numeric setting, keyed by its dotted path (fnmatch patterns, first match wins).
# validate_config checks a composed config against this one table; tests/test_config.py walks every schema
# (TrainConfig, each algorithm's, each env family's) and fails when a numeric field has no entry, so a new
# field gets a range (or an explicit ANY) when it is added.
VALUE_RULES: tuple[tuple[str, Range | None], ...] = (
    # the run
    ("t_max", POSITIVE),
    ("batch_size_run", POSITIVE),
    ("test_nepisode", POSITIVE),  # the final test always runs, whatever test_interval
    ("test_interval", NON_NEGATIVE),  # 0: no periodic tests, only the final one
    ("log_interval", NON_NEGATIVE),  # 0: a row after every update
    ("checkpoint.interval", NON_NEGATIVE),  # 0: only at the end and on preemption
    ("pool.max_restarts", NON_NEGATIVE),
    ("pool.collector_nice", Range(low=0, high=19)),  # null: the default when pinned
    ("seed", Range(low=0, high=2**31 - 1)),  # numpy seeds (seed + 100000 + env index for the test envs)
    ("trainer.devices", Range(low=0, low_open=True, also=(-1,))),  # Lightning's -1: all devices
    ("trainer.torch_threads", POSITIVE),
    ("trainer.divergence_bound", POSITIVE),  # null: no bound, only NaN/inf stop a run
    # every learner
    ("algo.*_lr", POSITIVE),
    ("algo.*_eps", POSITIVE),
    ("algo.gamma", UNIT),
    ("algo.*_lambda", UNIT),
    ("algo.rmsprop_alpha", UNIT),
    ("algo.grad_norm_clip", POSITIVE),
    ("algo.*_dim", POSITIVE),
    ("algo.*_embed", POSITIVE),
    ("algo.g_hidden", POSITIVE),
    ("algo.*heads", POSITIVE),
    ("algo.qplex_attention_layers", Range(low=1, high=3)),
    # replay learners
    ("algo.buffer_size", POSITIVE),
    ("algo.batch_size", POSITIVE),
    ("algo.updates_per_collect", POSITIVE),
    ("algo.env_steps_per_update", POSITIVE),  # null: updates_per_collect per collection
    ("algo.burn_in_episodes", NON_NEGATIVE),
    ("algo.target_update_interval", POSITIVE),
    ("algo.reward_scale", POSITIVE),
    ("algo.epsilon_start", UNIT),
    ("algo.epsilon_finish", UNIT),
    ("algo.*_anneal_time", NON_NEGATIVE),  # 0: the final value from the start
    ("algo.packed_unroll_max_live", UNIT),
    ("algo.alpha", NON_NEGATIVE),  # 0 only with hard targets and epsilon-greedy (checked by the learner)
    ("algo.behaviour_alpha", POSITIVE),
    ("algo.alpha_start", POSITIVE),
    ("algo.alpha_finish", POSITIVE),
    # MAPPO
    ("algo.clip", POSITIVE),
    ("algo.ppo_epochs", POSITIVE),
    ("algo.num_mini_batch", POSITIVE),
    ("algo.chunk_length", POSITIVE),
    ("algo.rollout_episodes", POSITIVE),
    ("algo.entropy_coef", NON_NEGATIVE),
    ("algo.value_loss_coef", NON_NEGATIVE),
    ("algo.huber_delta", POSITIVE),
    # HASAC
    ("algo.warmup_steps", NON_NEGATIVE),  # 0: the policies act from the first step
    ("algo.n_step", POSITIVE),
    ("algo.polyak", UNIT),  # 0 is refused by the learner: the target would never move
    ("algo.alpha_init", POSITIVE),
    ("algo.target_entropy_scale", UNIT),  # a fraction of the largest entropy, log(n_actions)
    ("algo.output_gain", POSITIVE),
    ("algo.gumbel_temperature", POSITIVE),
    ("algo.value_norm_beta", UNIT),  # 0 and 1 are refused by the learner
    ("algo.value_norm_min_var", POSITIVE),
    # envs
    ("env.n_agents", POSITIVE),
    ("env.episode_limit", POSITIVE),
    ("env.scale", POSITIVE),
    ("env.landmark_scale", POSITIVE),
    ("env.local_ratio", UNIT),
    ("env.reward_scale", POSITIVE),
    ("env.won_battle_bonus", NON_NEGATIVE),
    ("env.world_steps_per_env_step", POSITIVE),
    ("env.env_args.capability_config.n_units", POSITIVE),
    ("env.env_args.capability_config.n_enemies", POSITIVE),
    ("env.env_args.capability_config.start_positions.p", UNIT),
    ("env.env_args.capability_config.start_positions.map_?", POSITIVE),
    ("env.env_args.step_mul", POSITIVE),
    ("env.env_args.move_amount", POSITIVE),
    ("env.env_args.num_fov_actions", POSITIVE),
    ("env.env_args.min_attack_range", NON_NEGATIVE),
    ("env.env_args.prob_obs_enemy", UNIT),
    ("env.env_args.reward_scale_rate", POSITIVE),
    ("env.env_args.reward_negative_scale", NON_NEGATIVE),
    ("env.env_args.reward_death_value", ANY),
    ("env.env_args.reward_win", ANY),
    ("env.env_args.reward_defeat", ANY),
    ("env.env_args.seed", ANY),
)


def value_rule(path: str) -> tuple[str, Range | None] | None:
    """The first (pattern, range) of VALUE_RULES that matches a dotted path; None when none does."""
    for pattern, rule in VALUE_RULES:
        if fnmatchcase(path, pattern):
            return pattern, rule
    return None


def _numeric_leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, int | float]]:
    if isinstance(node, DictConfig | dict):
        for key, value in node.items():
            yield from _numeric_leaves(value, f"{prefix}{key}.")
    elif isinstance(node, int | float) and not isinstance(node, bool):
        yield prefix[:-1], node


def check_value_ranges(cfg: DictConfig | dict, prefix: str = "") -> None:
    """Every numeric setting against VALUE_RULES; one ConfigError naming each bad key and its valid range."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    problems = []
    for path, value in _numeric_leaves(plain, prefix):
        found = value_rule(path)
        if found is not None and found[1] is not None and not found[1].allows(value):
            problems.append(f"{path}={value!r} is out of range: it must be {found[1].describe(isinstance(value, int))}")
    if problems:
        raise ConfigError("; ".join(problems))


def check_learner_ranges(cfg: object) -> None:
    """A typed algorithm config (a dataclass) against VALUE_RULES, for learners built without validate_config."""
    check_value_ranges({"algo": dataclasses.asdict(cfg)})  # type: ignore[call-overload]


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _check_against(schema: object, node: object, where: str) -> None:
    try:
        OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]
    except OmegaConfBaseException as exc:
        raise ConfigError(f"in {where}: {_one_line(exc)}") from exc


def validate_config(cfg: DictConfig) -> None:
    """Check a composed config against the schemas once more, and the choices against each other.

    Composition already rejects typos in YAML files and plain overrides; this also catches keys
    forced in with `+key=value`, configs built in code, unknown names (algorithm, env family,
    mixer: the message lists the valid ones) and combinations that cannot run.
    """
    from softqmix.algos.learner import typed_config
    from softqmix.algos.registry import algorithm
    from softqmix.envs.registry import env_family

    family = env_family(str(cfg.env.get("family")))
    spec = algorithm(str(cfg.algo.get("name")))
    top = {k: v for k, v in cfg.items() if k not in ("algo", "env", "logger", "trainer")}
    _check_against(TrainConfig, OmegaConf.create(top), "the top-level config")
    for key, schema in (
        ("algo", spec.config),
        ("env", family.schema),
        ("logger", LoggerConfig),
        ("trainer", TrainerConfig),
    ):
        _check_against(schema, cfg[key], f"config group '{key}'")
    check_value_ranges(cfg)
    spec.validate(typed_config(spec.config, cfg.algo))
    variant = str(cfg.algo.get("variant", "default"))
    if variant != "default" and not spec.accepts_ablations:
        owners = ", ".join(s.name for s in _algorithms_with_ablations())
        raise ConfigError(
            f"ablation={variant} is a variant of {owners}, not of algo={spec.name} (it would turn {spec.name} into "
            f"another algorithm under the wrong name); use algo={owners.split(', ')[0]} ablation={variant}, or set "
            f"the switches on algo={spec.name} directly"
        )
    collection = Collection(cfg.pool.collection)
    if collection is not Collection.serial and not spec.overlapped_collection:
        raise ConfigError(
            f"pool.collection={collection.value} is implemented for the value-factorisation learners, "
            f"not for algo={spec.name}; set pool.collection=serial"
        )
    placement = CpuPlacement(cfg.pool.cpu_placement)
    if collection is not Collection.process and (
        placement is CpuPlacement.pinned or cfg.pool.collector_nice is not None
    ):
        key = "pool.cpu_placement=pinned" if placement is CpuPlacement.pinned else "pool.collector_nice"
        raise ConfigError(
            f"{key} places the collection process, and pool.collection={collection.value} has none; "
            "use pool.collection=process or drop the override"
        )
    if collection is Collection.process and cfg.pool.mode == "workers":
        raise ConfigError(
            "pool.collection=process steps the envs in its own process and cannot restart env workers "
            "started by the learner's; use pool.mode=inprocess with it (or pool.collection=thread with workers)"
        )


def _algorithms_with_ablations() -> list:
    from softqmix.algos.registry import ALGORITHMS

    return [spec for spec in ALGORITHMS if spec.accepts_ablations]


def register_configs() -> None:
    """Put every schema in Hydra's ConfigStore; YAML files name them in their defaults lists."""
    from softqmix.algos.registry import ALGORITHMS
    from softqmix.envs.registry import ENV_FAMILIES

    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for spec in ALGORITHMS:
        node = OmegaConf.structured(spec.config)
        node.name = spec.name
        cs.store(group="schema/algo", name=spec.name, node=node)
    for family in ENV_FAMILIES:
        cs.store(group="schema/env", name=family.name, node=family.schema)
    cs.store(group="schema", name="logger", node=LoggerConfig)
    cs.store(group="schema", name="trainer", node=TrainerConfig)
