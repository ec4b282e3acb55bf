"""One run's Lightning side: the TrainingLoop module, the Trainer with our callbacks and loggers, fit, and the
run's summary. `train.py` imports this only after it has started a spawned collection process, so that the
child's start-up overlaps the seconds that importing Lightning takes."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from softqmix.checkpoint_io import AtomicCheckpointIO
from softqmix.checkpointing import checkpoint_env_step, checkpoint_path
from softqmix.config import Collection
from softqmix.console import active_console, describe_wandb_run, say
from softqmix.cpu_placement import CpuSplit, learner_pinned
from softqmix.data.collector import EpisodeCollector
from softqmix.data.collector_process import SpawnedChild
from softqmix.envs import make_env
from softqmix.eval.matrix_report import (
    format_matrix_report,
    matrix_game_report,
    matrix_policy_report,
    matrix_verdict,
    studied_rate,
)
from softqmix.loop import RunSchedule, TrainingLoop
from softqmix.loop.progress_bar import EnvStepProgressBar
from softqmix.loop.schedule import GreedyEvaluation
from softqmix.outputs import build_loggers, finish_loggers, git_commit, package_versions, write_json
from softqmix.preemption import PeriodicCheckpoint, PreemptionCheckpoint

PACKAGE_DIR = Path(__file__).resolve().parent  # the code's own dir: its git commit goes into summary.json


class RecordRunConfig(L.Callback):
    """Writes the run's config into every checkpoint (`run_config`), for _check_checkpoint_config."""

    def __init__(self, cfg: DictConfig) -> None:
        self.config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["run_config"] = self.config


def fit_run(
    cfg: DictConfig,
    run_dir: Path,
    ckpt: Path | None,
    collector: EpisodeCollector,
    test_collector: EpisodeCollector | None,
    extra_callbacks: list[L.Callback],
    cleanup: contextlib.ExitStack,
    spawned_child: SpawnedChild | None = None,
    cpu_split: CpuSplit | None = None,
) -> dict[str, Any]:
    info = collector.info
    schedule = RunSchedule(
        t_max=cfg.t_max,
        batch_size_run=cfg.batch_size_run,
        test_interval=cfg.test_interval,
        test_nepisode=cfg.test_nepisode,
        log_interval=cfg.log_interval,
    )
    module = TrainingLoop(cfg.algo, info, cfg.env.obs_last_action, schedule, cfg.trainer.divergence_bound)
    if cfg.trainer.compile:
        module.learner.compile_hot_paths()
    module.attach_envs(
        collector,
        test_collector,
        Collection(cfg.pool.collection),
        collection_seed=cfg.seed + 1,
        separate_actor=cfg.trainer.separate_actor,
        process_start="fork" if spawned_child is None else "spawn",
        spawned_child=spawned_child,
        cpu_split=cpu_split,
    )
    cleanup.callback(module.close_envs)
    module.configure_checkpointing(checkpoint_path(run_dir).parent, cfg.checkpoint.save_buffer)
    resume_step = None
    if ckpt is not None:
        resume_step = checkpoint_env_step(ckpt)

    last = checkpoint_path(run_dir)
    loggers = build_loggers(cfg, run_dir, resume_step)
    _announce_run(run_dir, loggers)
    if cpu_split is not None:
        say(cpu_split.describe())
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        max_epochs=1,
        logger=loggers,
        callbacks=[
            GreedyEvaluation(cfg.test_interval),
            PeriodicCheckpoint(last, cfg.checkpoint.interval),
            PreemptionCheckpoint(last),
            RecordRunConfig(cfg),
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
        with learner_pinned(cpu_split):
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
        # returns are the env's reward times this (SMAX: 10, SMACv2's scale); null where the env has no such knob
        "env_reward_scale": cfg.env.get("reward_scale"),
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
            payoff = [list(r) for r in cfg.env.payoff]
            print(format_matrix_report(report, payoff, cfg.env.action_names))
            print(matrix_verdict(report, payoff, cfg.env.action_names, studied_rate(cfg)))
    write_json(run_dir / "summary.json", summary)
    say(_final_line(summary, run_dir))
    return summary


def _announce_run(run_dir: Path, loggers: list[Logger]) -> None:
    """Under the CLI: where the run lives, before it starts (the run dir; the wandb run's URL or local dir)."""
    console = active_console()
    if console is None:
        return
    console.say(f"run dir: {run_dir}")
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            console.route_wandb()  # wandb.init's banner goes to the log file
            line = describe_wandb_run(logger.experiment)
            if line is not None:
                console.say(line)


def _final_line(summary: dict[str, Any], run_dir: Path) -> str:
    final, best = summary["final_test_return"], summary["best_test_return"]
    result = f"final test return {final:.2f} (best {best:.2f})" if final is not None else "no test"
    scale = summary.get("env_reward_scale")
    if final is not None and scale is not None and scale != 1:
        result += f" on the env's reward x{scale:g}"
    if summary.get("final_test_battle_won") is not None:
        result += f", win rate {summary['final_test_battle_won']:.2f}"
    return f"done: {summary['env_steps']} env steps, {result}; summary in {run_dir / 'summary.json'}"
