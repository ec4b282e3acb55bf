"""`python train.py`: build env, learner and Lightning Trainer from the Hydra config and run."""

from __future__ import annotations

import contextlib
import errno
import sys
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from softqmix import CONF_DIR
from softqmix.checkpointing import checkpoint_path, read_checkpoint
from softqmix.config import Collection, register_configs, validate_config
from softqmix.console import active_console, run_console, third_party_output
from softqmix.cpu_placement import CpuSplit, resolve_cpu_split, usable_cpus
from softqmix.data.collector import EpisodeCollector
from softqmix.data.collector_process import PoolRecipe, SpawnedChild
from softqmix.envs import env_factory
from softqmix.envs.pool import EnvPool
from softqmix.envs.registry import check_env_requirements, env_family, vector_env_factory
from softqmix.errors import (
    DISK_ERRNOS,
    ConfigError,
    EnvContractError,
    OutputWriteError,
    ResumeRefused,
    RunDirBusy,
    RunDirNotWritable,
    TrainingDiverged,
    UserError,
)
from softqmix.hydra_callbacks import restore_hydra_record, run_dir_is_new
from softqmix.rundir import locked_run_dir, remove_unused_run_dir

if TYPE_CHECKING:
    import lightning as L

# Lightning (seconds to import) is imported after a spawned collection process has started (softqmix.fit):
# keep it out of this module's imports.

# Known-harmless messages: Hydra creates the run dir before the CSV logger writes into it,
# the data loader is an in-process stream by design (collection shares the actor's weights),
# and the learner pulls batches itself (Lightning's `dataloader_iter` step flavour).
for _pattern in (
    r".*exists and is not empty.*",
    r".*does not have many workers.*",
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*`weights_only` was not set.*",
    r".*dataloader_iter.*",
):
    warnings.filterwarnings("ignore", message=_pattern)

# Keys a resumed run may take from the new command line; everything else comes from the run dir.
RESUME_OVERRIDABLE = ("t_max", "debug", "trainer", "print_report")
# Set by the run itself, not by the user: never a reason to refuse a resume.
_NOT_USER_KEYS = ("resume", "logger.group")
_ABSENT = object()


def _overridable(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in RESUME_OVERRIDABLE)


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def _given_keys(overrides: list[str]) -> list[str]:
    """The config keys (or group names: `algo=qmix` gives 'algo') that these command-line overrides set."""
    keys = [o.key_or_group for o in OverridesParser.create().parse_overrides(overrides)]
    return [k for k in dict.fromkeys(keys) if k not in _NOT_USER_KEYS]


def _resume_config(
    cfg: DictConfig, saved: DictConfig, resume_dir: Path, overrides: list[str] | None, explicit: bool
) -> DictConfig:
    """The saved config with the keys of RESUME_OVERRIDABLE that the user set; a refusal for any other change.

    With the command line known (`overrides`), only what it set counts: a bare `resume=<dir>` keeps the
    saved t_max instead of the schema's default. An explicit `resume=` refuses every other override; an
    automatic resume (same run dir, e.g. a requeued Slurm job repeating its command line) refuses those that
    change a saved value. Without a command line (a config built in code) the whole config counts as given.
    """
    if overrides is None:
        taken = [k for k in RESUME_OVERRIDABLE if k in cfg]
        new, old = _leaves(_plain(cfg)), _leaves(_plain(saved))
        ignored = [
            k for k, v in new.items() if not _overridable(k) and k not in _NOT_USER_KEYS and k in old and old[k] != v
        ]
    else:
        keys = _given_keys(overrides)
        taken = [k for k in keys if _overridable(k)]
        others = [k for k in keys if not _overridable(k)]
        # a group choice that is no key of its own (ablation=, experiment=) cannot be compared: an automatic
        # resume takes it as the original command line's
        ignored = others if explicit else [k for k in others if _changes(cfg, saved, k)]
    if ignored:
        how = (
            f"resume={resume_dir} continues that run with its saved config"
            if explicit
            else f"the run dir {resume_dir} holds a checkpoint, so this run resumes it with its saved config"
        )
        raise ResumeRefused(
            f"{how}; these overrides would be ignored: {', '.join(ignored)} (a resume may change only "
            f"{', '.join(RESUME_OVERRIDABLE)}; start a new run in another dir to change the rest)"
        )
    for key in taken:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT:
            OmegaConf.update(saved, key, _plain(value), merge=False, force_add=True)
    return saved


def _changes(cfg: DictConfig, saved: DictConfig, key: str) -> bool:
    new, old = OmegaConf.select(cfg, key, default=_ABSENT), OmegaConf.select(saved, key, default=_ABSENT)
    if new is _ABSENT and old is _ABSENT:
        return False
    return _plain(new) != _plain(old)


def _explicit_resume_dir(cfg: DictConfig) -> Path | None:
    """The run dir named by `resume=`, which must hold a checkpoint; None without `resume=`."""
    if not cfg.get("resume"):
        return None
    resume_dir = Path(cfg.resume).expanduser().resolve()
    if not checkpoint_path(resume_dir).exists():
        raise ResumeRefused(
            f"resume={cfg.resume}: no checkpoint at {checkpoint_path(resume_dir)}; "
            "give the run dir of a run that saved one"
        )
    return resume_dir


def _resolve_resume(
    cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None
) -> tuple[DictConfig, Path, Path | None]:
    """Decide whether this is a fresh run or a resume, and of which run dir."""
    explicit = _explicit_resume_dir(cfg)
    if explicit is not None:
        resume_dir = explicit
    elif checkpoint_path(run_dir).exists():
        resume_dir = run_dir  # e.g. a requeued Slurm job in the same dir
    else:
        return cfg, run_dir, None
    ckpt = checkpoint_path(resume_dir)
    state = read_checkpoint(ckpt)  # one line for a truncated or foreign file
    t_env = int(state["progress"]["t_env"])
    if not (resume_dir / "config.yaml").is_file():
        raise ConfigError(f"{resume_dir} has a checkpoint but no config.yaml to resume it with; remove the checkpoint")
    try:
        saved = OmegaConf.load(resume_dir / "config.yaml")
    except Exception as exc:  # an edit that broke the YAML
        reason = " ".join(str(exc).split())  # the YAML parser's message spans lines
        raise ResumeRefused(f"{resume_dir / 'config.yaml'} cannot be read ({type(exc).__name__}: {reason})") from None
    _check_checkpoint_config(state, saved, ckpt, resume_dir)
    saved = _resume_config(cfg, saved, resume_dir, overrides, explicit is not None)
    saved.resume = str(resume_dir)
    # a checkpoint at t_max without summary.json: the run died after its last checkpoint (a full disk, a kill);
    # resuming it runs no step, only the final test and the summary
    if t_env >= saved.t_max and (resume_dir / "summary.json").exists():
        raise ResumeRefused(
            f"the run in {resume_dir} already reached t_max={saved.t_max} (env step {t_env}); "
            "pass a larger t_max to continue it, or start a new run"
        )
    return saved, resume_dir, ckpt


def _check_checkpoint_config(state: dict[str, Any], saved: DictConfig, ckpt: Path, resume_dir: Path) -> None:
    """Refuse a checkpoint that another config wrote: one copied from another run (a qmix checkpoint in a mappo
    run dir) or a config.yaml edited since, which would fail in the weights' load or, worse, train on silently.

    Checkpoints record the run's config (`run_config`, softqmix.fit.RecordRunConfig); older ones only the
    learner's, whose algorithm name is compared. Keys a resume may change (RESUME_OVERRIDABLE) do not count.
    """
    if "run_config" in state:
        recorded, current = _leaves(state["run_config"]), _leaves(_plain(saved))
    else:
        recorded = {"algo.name": state.get("hyper_parameters", {}).get("algo", {}).get("name")}
        current = {"algo.name": OmegaConf.select(saved, "algo.name")}
    first = ("algo.name", "env.family", "env.name")  # the differences that say "another run" come first
    differ = [
        key
        for key in sorted(recorded.keys() | current.keys(), key=lambda k: (k not in first, k))
        if not _overridable(key)
        and key not in _NOT_USER_KEYS
        and recorded.get(key, _ABSENT) != current.get(key, _ABSENT)
    ]
    if not differ:
        return

    def shown(values: dict[str, Any], key: str) -> str:
        return repr(values[key]) if key in values else "absent"

    listed = "; ".join(
        f"{key}: {shown(recorded, key)} in the checkpoint, {shown(current, key)} in config.yaml" for key in differ[:3]
    )
    more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
    raise ResumeRefused(
        f"the checkpoint {ckpt} was written with another config than {resume_dir / 'config.yaml'} ({listed}{more}): "
        "it comes from another run, or config.yaml was edited; put back the run's own config.yaml or checkpoint, "
        "or start a new run"
    )


def train(
    cfg: DictConfig,
    run_dir: Path,
    extra_callbacks: list[L.Callback] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """One run from a composed config; returns what it writes to summary.json.

    `summary["status"]` is "completed", or "preempted" when a signal stopped the run after
    a checkpoint (the caller turns that into the exit code). `overrides` is the command line the config
    came from (`main` passes Hydra's task overrides): a resume takes from it only what it sets; without it
    (a config built in code) the whole config counts as given. The run dir is locked for the whole run
    (softqmix.rundir): a second process on it fails. A full disk (or a quota, or a mount gone read-only)
    stops the run with OutputWriteError, one line naming the file, the problem and how to go on.
    """
    validate_config(cfg)
    # before this process spends seconds importing the env's library: the child imports its own meanwhile
    spawned_child = _spawn_collection_process(cfg)
    try:
        with third_party_output():  # jaxmarl prints two lines on import; under the CLI they go to the log file
            check_env_requirements(cfg.env)
        target = _explicit_resume_dir(cfg) or run_dir  # the dir this run writes into
        with locked_run_dir(target):
            return _train_in_locked_dir(cfg, run_dir, target, extra_callbacks, overrides, spawned_child)
    finally:
        if spawned_child is not None:  # a child that a collection process took is closed with the run's envs
            spawned_child.close()


def _train_in_locked_dir(
    cfg: DictConfig,
    run_dir: Path,
    target: Path,
    extra_callbacks: list[L.Callback] | None,
    overrides: list[str] | None,
    spawned_child: SpawnedChild | None,
) -> dict[str, Any]:
    """Disk errors become one line that says how to go on."""
    try:
        return _train_locked(cfg, run_dir, extra_callbacks, overrides, spawned_child)
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        how = (
            f"continue it from its last checkpoint with: python train.py resume={target.resolve()}"
            if checkpoint_path(target).exists()
            else "start it again"
        )
        problem = OutputWriteError.writing(exc.filename or target, exc)
        fix = "make it writable again" if exc.errno == errno.EROFS else "free space there"
        raise OutputWriteError(f"{problem}; the run stopped: {fix}, then {how}", exc.errno) from exc


def _train_locked(
    cfg: DictConfig,
    run_dir: Path,
    extra_callbacks: list[L.Callback] | None,
    overrides: list[str] | None,
    spawned_child: SpawnedChild | None = None,
) -> dict[str, Any]:
    cfg, run_dir, ckpt = _resolve_resume(cfg, run_dir, overrides)
    from softqmix.outputs import check_logger_ready  # the first import of Lightning: after the spawn

    console = active_console()
    if console is not None:  # Lightning gives its loggers console handlers of their own as it is imported
        console.route_own_console_loggers()
    check_logger_ready(cfg.logger)
    run_dir.mkdir(parents=True, exist_ok=True)
    if console is not None:  # a resume writes into another dir than the one Hydra made: log there too
        console.log_to(run_dir)
    # the run starts or goes on: an earlier end (a failure, or a finished 700k run resumed to 1.4M) no longer
    # describes it
    for stale in ("summary.json", "preempted.json", "failed.json"):
        (run_dir / stale).unlink(missing_ok=True)
    if ckpt is None:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    torch.set_num_threads(cfg.trainer.torch_threads)
    from lightning import seed_everything

    seed_everything(cfg.seed, workers=True, verbose=False)

    name = f"{cfg.env.family}/{cfg.env.name}"
    # also on errors and signals: env processes (e.g. StarCraft II) must not outlive us
    with contextlib.ExitStack() as cleanup:
        return _build_collectors_and_fit(cfg, run_dir, ckpt, extra_callbacks, cleanup, name, spawned_child)


def _spawns_its_collector(cfg: DictConfig) -> bool:
    return Collection(cfg.pool.collection) is Collection.process and not env_family(cfg.env.family).fork_safe


def _cpu_split(cfg: DictConfig) -> CpuSplit | None:
    """Where the learner and its collection process run (softqmix.cpu_placement); None: the OS decides."""
    return resolve_cpu_split(
        cfg.pool.cpu_placement,
        process_collection=Collection(cfg.pool.collection) is Collection.process,
        accelerator=str(cfg.trainer.accelerator),
        torch_threads=int(cfg.trainer.torch_threads),
        collector_nice=cfg.pool.collector_nice,
        cpus=usable_cpus(),
        side_by_side_launcher=_launcher_running_runs_side_by_side(),
    )


# Sweep launchers under which each run has the CPUs it sees to itself: one run at a time, or a Slurm job's own cgroup.
_LAUNCHERS_WITH_CPUS_PER_RUN = ("BasicLauncher", "SlurmLauncher")


def _launcher_running_runs_side_by_side() -> str | None:
    """The launcher's class name when this run is one of a multirun's runs that run at once on this machine
    (hydra/launcher=joblib, submitit_local); None for a single run, a sequential sweep or a Slurm job."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    name = str(hydra_cfg.launcher.get("_target_", "")).rsplit(".", 1)[-1]
    return None if name in _LAUNCHERS_WITH_CPUS_PER_RUN else name


def _spawn_collection_process(cfg: DictConfig) -> SpawnedChild | None:
    """With pool.collection=process for envs that do not survive a fork (SMAX), the collection process is a fresh
    interpreter: start it first, so that its imports and env build (seconds) overlap the learner's."""
    if not _spawns_its_collector(cfg):
        return None
    name = f"{cfg.env.family}/{cfg.env.name}"
    recipe = PoolRecipe(env_factory(cfg.env), vector_env_factory(cfg.env), cfg.batch_size_run, name)
    return SpawnedChild(recipe, _third_party_log(), _cpu_split(cfg))


def _build_collectors_and_fit(
    cfg: DictConfig,
    run_dir: Path,
    ckpt: Path | None,
    extra_callbacks: list[L.Callback] | None,
    cleanup: contextlib.ExitStack,
    name: str,
    spawned_child: SpawnedChild | None,
) -> dict[str, Any]:
    pool = EnvPool(
        env_factory(cfg.env),
        cfg.batch_size_run,
        mode=cfg.pool.mode,
        start_method=cfg.pool.start_method,
        max_restarts=cfg.pool.max_restarts,
        name=name,
        vector_factory=vector_env_factory(cfg.env),
    )
    collector = EpisodeCollector(pool, seed=cfg.seed, name=name)
    cleanup.callback(collector.close)
    # The child was started from the command line's config; a resume runs the config saved with the run, which
    # may collect otherwise or build other envs.
    wanted, split = _spawns_its_collector(cfg), _cpu_split(cfg)
    if spawned_child is not None and not (
        wanted and spawned_child.recipe.builds_the_same_envs_as(PoolRecipe.of(pool)) and spawned_child.split == split
    ):
        spawned_child.close()
        spawned_child = None
    if wanted and spawned_child is None:
        spawned_child = SpawnedChild(PoolRecipe.of(pool), _third_party_log(), split)
        cleanup.callback(spawned_child.close)
    test_collector = None
    if Collection(cfg.pool.collection) is not Collection.serial:  # collection owns the training envs
        test_pool = EnvPool(
            env_factory(cfg.env), cfg.batch_size_run, name=name, vector_factory=vector_env_factory(cfg.env)
        )
        test_collector = EpisodeCollector(test_pool, seed=cfg.seed + 100_000, name=name)
        cleanup.callback(test_collector.close)
    from softqmix.fit import fit_run

    return fit_run(cfg, run_dir, ckpt, collector, test_collector, extra_callbacks or [], cleanup, spawned_child, split)


def _third_party_log() -> Path | None:
    """Where output that is not ours goes (a spawned collection process's): the run's log file under the quiet
    console, else the terminal (None)."""
    console = active_console()
    return console.latest_log_file if console is not None and console.quiet else None


def _leave_no_trace(run_dir: Path, job_name: str, resume: bool) -> None:
    """After a refused run: the fresh dir Hydra made for a refused `resume=` goes; a refused run dir (a finished
    run, or a run resumed with changed overrides) gets back its own `.hydra/` record of how it was started."""
    if not (resume and run_dir_is_new() and remove_unused_run_dir(run_dir, job_name, stop_at=Path.cwd())):
        restore_hydra_record()


register_configs()

KNOWN_FAILURES = (UserError, EnvContractError, TrainingDiverged, OutputWriteError)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the final test return so sweepers can optimise it.

    A single run ends with a one-line message and a non-zero exit code on a known failure
    (exit 2 for user errors), 128+signal when preempted after checkpointing. Inside a
    multirun a failure is written to the run's failed.json and the sweep goes on; at its end
    softqmix.hydra_callbacks.SweepOutcome lists the failed runs and exits 1.
    """
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if multirun and cfg.logger.group is None:  # one wandb group per sweep; saved with the run's config
        cfg.logger.group = str(hydra_cfg.sweep.dir)
    try:
        # third-party console output (Lightning, wandb, jaxmarl) goes to <run dir>/train.log; debug=true keeps it
        with run_console(run_dir / f"{hydra_cfg.job.name}.log", quiet=not cfg.get("debug", False)):
            summary = train(cfg, run_dir, overrides=list(hydra_cfg.overrides.task))
    except Exception as exc:
        refused = isinstance(exc, ResumeRefused | RunDirBusy | RunDirNotWritable)
        if refused and not multirun:
            _leave_no_trace(run_dir, hydra_cfg.job.name, resume=bool(cfg.get("resume")))
        if cfg.get("debug", False) and not multirun:
            raise
        # A refusal writes nothing into the dir it refused (another run's, or a finished one), except a sweep's own
        # job dir that cannot go ahead (e.g. it holds an unreadable checkpoint): the sweep's tables list it as failed
        # with its reason. A busy dir belongs to another process and is never written.
        if not refused or (multirun and not isinstance(exc, RunDirBusy | RunDirNotWritable)):
            failure = {"error": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
            if isinstance(exc, TrainingDiverged):  # reason, env step, update, the offending values
                failure.update(exc.details())
            from softqmix.outputs import write_json

            with contextlib.suppress(OSError):  # a full disk may have no room for it either
                write_json(run_dir / "failed.json", failure)
        if multirun:
            print(f"[run {hydra_cfg.job.num} failed] {type(exc).__name__}: {exc}", file=sys.stderr)
            return None
        if isinstance(exc, KNOWN_FAILURES):
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2 if isinstance(exc, UserError) else 1)
        raise
    if summary["status"] == "preempted":
        print(
            f"preempted by signal {summary['stop_signal']} at env step {summary['env_steps']}; "
            f"checkpoint saved, resume with: python train.py resume={run_dir}",
            file=sys.stderr,
        )
        try:
            from softqmix.preemption import redeliver

            redeliver(summary["stop_signal"])
        except Exception as exc:  # the launcher's handler would not requeue (submitit: max_num_timeout reached)
            if not multirun:
                raise
            # as any failed run of a sweep: recorded (preempted.json), and SweepOutcome's line and exit code say so
            print(f"[run {hydra_cfg.job.num} not requeued] {type(exc).__name__}: {exc}", file=sys.stderr)
            return None
    return summary["final_test_return"]


if __name__ == "__main__":  # python -m softqmix.train
    from softqmix.cli_checks import run_train_cli

    run_train_cli()
