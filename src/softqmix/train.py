"""`python train.py`: build env, learner and Lightning Trainer from the Hydra config and run."""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from softqmix import CONF_DIR
from softqmix.checkpointing import AtomicCheckpointIO, checkpoint_env_step, checkpoint_path
from softqmix.config import Collection, register_configs, validate_config
from softqmix.data.collector import EpisodeCollector
from softqmix.envs import env_factory, make_env
from softqmix.envs.pool import EnvPool
from softqmix.envs.registry import check_env_requirements, vector_env_factory
from softqmix.errors import ConfigError, EnvContractError, TrainingDiverged, UserError
from softqmix.eval.matrix_report import format_matrix_report, matrix_game_report, matrix_policy_report
from softqmix.loop import RunSchedule, TrainingLoop
from softqmix.loop.progress_bar import EnvStepProgressBar
from softqmix.loop.schedule import GreedyEvaluation
from softqmix.outputs import build_loggers, finish_loggers, git_commit, package_versions, write_json
from softqmix.preemption import PeriodicCheckpoint, PreemptionCheckpoint, redeliver

PACKAGE_DIR = Path(__file__).resolve().parent  # the code's own dir: its git commit goes into summary.json

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


def _resolve_resume(cfg: DictConfig, run_dir: Path) -> tuple[DictConfig, Path, Path | None]:
    """Decide whether this is a fresh run or a resume, and of which run dir."""
    if cfg.get("resume"):
        resume_dir = Path(cfg.resume).expanduser().resolve()
        ckpt = checkpoint_path(resume_dir)
        if not ckpt.exists():
            raise ConfigError(f"resume={cfg.resume}: no checkpoint at {ckpt}; give the run dir of a run that saved one")
    elif checkpoint_path(run_dir).exists():
        resume_dir, ckpt = run_dir, checkpoint_path(run_dir)  # e.g. a requeued Slurm job in the same dir
    else:
        return cfg, run_dir, None
    t_env = checkpoint_env_step(ckpt)
    if not (resume_dir / "config.yaml").is_file():
        raise ConfigError(f"{resume_dir} has a checkpoint but no config.yaml to resume it with; remove the checkpoint")
    saved = OmegaConf.load(resume_dir / "config.yaml")
    for key in RESUME_OVERRIDABLE:
        if key in cfg:
            saved[key] = cfg[key]
    saved.resume = str(resume_dir)
    if t_env >= saved.t_max:
        raise ConfigError(
            f"the run in {resume_dir} already reached t_max={saved.t_max} (env step {t_env}); "
            "pass a larger t_max to continue it, or start a new run"
        )
    return saved, resume_dir, ckpt


def train(cfg: DictConfig, run_dir: Path, extra_callbacks: list[L.Callback] | None = None) -> dict[str, Any]:
    """One run from a composed config; returns what it writes to summary.json.

    `summary["status"]` is "completed", or "preempted" when a signal stopped the run after
    a checkpoint (the caller turns that into the exit code).
    """
    validate_config(cfg)
    check_env_requirements(cfg.env)
    cfg, run_dir, ckpt = _resolve_resume(cfg, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if ckpt is None:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    else:  # the run goes on: an earlier end (e.g. a finished 700k run resumed to 1.4M) no longer describes it
        for stale in ("summary.json", "preempted.json", "failed.json"):
            (run_dir / stale).unlink(missing_ok=True)
    torch.set_num_threads(cfg.trainer.torch_threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    name = f"{cfg.env.family}/{cfg.env.name}"
    pool = EnvPool(
        env_factory(cfg.env),
        cfg.batch_size_run,
        mode=cfg.pool.mode,
        start_method=cfg.pool.start_method,
        max_restarts=cfg.pool.max_restarts,
        name=name,
        vector_factory=vector_env_factory(cfg.env),
    )
    # also on errors and signals: env processes (e.g. StarCraft II) must not outlive us
    with contextlib.ExitStack() as cleanup:
        collector = EpisodeCollector(pool, seed=cfg.seed, name=name)
        cleanup.callback(collector.close)
        test_collector = None
        if Collection(cfg.pool.collection) is not Collection.serial:  # collection owns the training envs
            test_pool = EnvPool(
                env_factory(cfg.env), cfg.batch_size_run, name=name, vector_factory=vector_env_factory(cfg.env)
            )
            test_collector = EpisodeCollector(test_pool, seed=cfg.seed + 100_000, name=name)
            cleanup.callback(test_collector.close)
        return _fit(cfg, run_dir, ckpt, collector, test_collector, extra_callbacks or [], cleanup)


def _fit(
    cfg: DictConfig,
    run_dir: Path,
    ckpt: Path | None,
    collector: EpisodeCollector,
    test_collector: EpisodeCollector | None,
    extra_callbacks: list[L.Callback],
    cleanup: contextlib.ExitStack,
) -> dict[str, Any]:
    info = collector.info
    schedule = RunSchedule(
        t_max=cfg.t_max,
        batch_size_run=cfg.batch_size_run,
        test_interval=cfg.test_interval,
        test_nepisode=cfg.test_nepisode,
        log_interval=cfg.log_interval,
    )
    module = TrainingLoop(cfg.algo, info, cfg.env.obs_last_action, schedule)
    if cfg.trainer.compile:
        module.learner.compile_hot_paths()
    module.attach_envs(
        collector,
        test_collector,
        Collection(cfg.pool.collection),
        collection_seed=cfg.seed + 1,
        separate_actor=cfg.trainer.separate_actor,
    )
    cleanup.callback(module.close_envs)
    module.configure_checkpointing(checkpoint_path(run_dir).parent, cfg.checkpoint.save_buffer)
    resume_step = None
    if ckpt is not None:
        resume_step = checkpoint_env_step(ckpt)

    last = checkpoint_path(run_dir)
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        max_epochs=1,
        logger=build_loggers(cfg, run_dir, resume_step),
        callbacks=[
            GreedyEvaluation(cfg.test_interval),
            PeriodicCheckpoint(last, cfg.checkpoint.interval),
            PreemptionCheckpoint(last),
            *([EnvStepProgressBar()] if cfg.trainer.enable_progress_bar else []),
            *extra_callbacks,
        ],
        # Under Slurm, Lightning's own SIGUSR1 auto-requeue is off: preemption is handled here
        # (checkpoint at a consistent point, then the launcher requeues; docs/reliability.md).
        plugins=[AtomicCheckpointIO(), *([SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else [])],
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=cfg.trainer.enable_progress_bar,
        deterministic=cfg.trainer.deterministic,
        num_sanity_val_steps=0,
        default_root_dir=str(run_dir),
    )
    started = time.perf_counter()
    status = "completed"
    try:
        trainer.fit(module, ckpt_path=str(ckpt) if ckpt is not None else None)
    except SystemExit:  # Lightning's SIGTERMException, raised after PreemptionCheckpoint saved
        if module.stop_signal is None:
            finish_loggers(trainer.loggers, failed=True)
            raise
    except BaseException:
        finish_loggers(trainer.loggers, failed=True)
        raise
    finish_loggers(trainer.loggers, failed=False)
    wall = time.perf_counter() - started
    if module.stop_signal is not None:
        status = "preempted"
        if not last.exists() or checkpoint_env_step(last) != module.progress.t_env:
            trainer.save_checkpoint(last, weights_only=False)
    else:
        trainer.save_checkpoint(last, weights_only=False)

    tests = module.test_history
    summary: dict[str, Any] = {
        "status": status,
        "algo": cfg.algo.name,
        "variant": cfg.algo.variant,
        "env": f"{cfg.env.family}/{cfg.env.name}",
        "seed": cfg.seed,
        "env_steps": module.progress.t_env,
        "episodes": module.progress.episodes,
        "updates": module.progress.updates,
        "wall_seconds": round(wall, 3),
        "resumed_from_step": resume_step,
        "final_test_return": tests[-1]["test/return_mean"] if tests else None,
        "best_test_return": max(t["test/return_mean"] for t in tests) if tests else None,
        "reports_wins": info.reports_wins,
        "final_test_battle_won": tests[-1]["test/battle_won_mean"] if tests and info.reports_wins else None,
        "stop_signal": module.stop_signal,
        "versions": package_versions(),
        "git": git_commit(PACKAGE_DIR),
        "tests": tests,  # every greedy evaluation with its per-episode returns and outcomes
    }
    # Trainer, module, stream and callbacks reference each other, so the replay buffer (12 GB for SMAX
    # 10v10) would live until a garbage collection; the next job of a sweep runs in this process and
    # allocates its own on top. The checkpoint is written: free it now.
    if module.buffer is not None:
        module.buffer.release()
    if status == "preempted":
        write_json(run_dir / "preempted.json", summary)
        return summary
    if cfg.env.family == "matrix":
        # value learners report their joint value; policy-gradient learners only their policies
        reporter = matrix_game_report if module.spec.joint_value else matrix_policy_report
        report = reporter(module.learner, make_env(cfg.env))
        summary["matrix_game"] = report
        if cfg.print_report:
            print(format_matrix_report(report, [list(r) for r in cfg.env.payoff], cfg.env.action_names))
    write_json(run_dir / "summary.json", summary)
    return summary


register_configs()

KNOWN_FAILURES = (UserError, EnvContractError, TrainingDiverged)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the final test return so sweepers can optimise it.

    A single run ends with a one-line message and a non-zero exit code on a known failure
    (exit 2 for user errors), 128+signal when preempted after checkpointing. Inside a
    multirun a failure is written to the run's failed.json and the sweep goes on.
    """
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if multirun and cfg.logger.group is None:  # one wandb group per sweep; saved with the run's config
        cfg.logger.group = str(hydra_cfg.sweep.dir)
    try:
        summary = train(cfg, run_dir)
    except Exception as exc:
        if cfg.get("debug", False) and not multirun:
            raise
        failure = {"error": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
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
        redeliver(summary["stop_signal"])
    return summary["final_test_return"]


if __name__ == "__main__":  # python -m softqmix.train
    from softqmix.cli_checks import run_train_cli

    run_train_cli()
