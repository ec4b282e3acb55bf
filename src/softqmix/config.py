"""Typed schemas of the run-level config groups, their registration in Hydra's ConfigStore, validation.

Every group has a dataclass schema that sits first in its YAML's defaults list, so OmegaConf rejects an
unknown key or a value of the wrong type at start-up with a message that names the key, instead of the
run silently ignoring a typo. Algorithm and env-family schemas live with their code (softqmix.algos,
softqmix.envs) and reach the ConfigStore through their registries: `schema/algo/<name>` and
`schema/env/<family>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from softqmix.algos.learner import LearnerConfig
from softqmix.envs.base import EnvConfig
from softqmix.errors import ConfigError


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
    torch_threads: int = 1  # one intra-op thread per process: see docs/architecture.md, "Collection and threads"
    # act (collect, test) with a CPU copy of the nets refreshed after each update; null: when the learner is on a GPU
    separate_actor: bool | None = None
    compile: bool = False  # torch.compile the update's hot spots where it pays (docs/results.md: speed)
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
    if collection is Collection.process:
        if cfg.pool.mode == "workers":
            raise ConfigError(
                "pool.collection=process steps the envs in its own process and cannot restart env workers "
                "started by the learner's; use pool.mode=inprocess with it (or pool.collection=thread with workers)"
            )
        if family.name == "smax":
            raise ConfigError(
                "pool.collection=process forks the learner, and JAX (SMAX) deadlocks in a forked process; "
                "use pool.collection=serial or thread for env=smax/*"
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
