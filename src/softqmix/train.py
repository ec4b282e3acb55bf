"""`python train.py`: build env, learner and Lightning Trainer from the Hydra config and run."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from softqmix.algos.value_factorisation import RunSchedule, ValueFactorisation
from softqmix.config import register_configs, validate_config
from softqmix.data.collector import EpisodeCollector
from softqmix.envs import make_env
from softqmix.eval.matrix_report import format_matrix_report, matrix_game_report
from softqmix.eval.schedule import GreedyEvaluation
from softqmix.outputs import build_loggers, git_commit, package_versions, write_json

REPO_ROOT = Path(__file__).resolve().parents[2]

# Known-harmless messages: Hydra creates the run dir before the CSV logger writes into it,
# and the data loader is an in-process stream by design (collection shares the actor's weights).
for _pattern in (
    r".*exists and is not empty.*",
    r".*does not have many workers.*",
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*`weights_only` was not set.*",
):
    warnings.filterwarnings("ignore", message=_pattern)
CONF_DIR = REPO_ROOT / "conf"


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """One run from a composed config; returns what it writes to summary.json."""
    validate_config(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    torch.set_num_threads(cfg.trainer.torch_threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    envs = [make_env(cfg.env) for _ in range(cfg.batch_size_run)]
    info = envs[0].info()
    schedule = RunSchedule(
        t_max=cfg.t_max,
        batch_size_run=cfg.batch_size_run,
        test_interval=cfg.test_interval,
        test_nepisode=cfg.test_nepisode,
        log_interval=cfg.log_interval,
    )
    module = ValueFactorisation(cfg.algo, info, cfg.env.obs_last_action, schedule)
    module.attach_envs(EpisodeCollector(envs, seed=cfg.seed))

    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        max_epochs=1,
        logger=build_loggers(cfg, run_dir),
        callbacks=[GreedyEvaluation(cfg.test_interval)],
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=cfg.trainer.enable_progress_bar,
        deterministic=cfg.trainer.deterministic,
        num_sanity_val_steps=0,
        default_root_dir=str(run_dir),
    )
    started = time.perf_counter()
    try:
        trainer.fit(module)
        wall = time.perf_counter() - started
        trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    finally:
        module.train_collector.close()

    tests = module.test_history
    summary: dict[str, Any] = {
        "algo": cfg.algo.name,
        "variant": cfg.algo.variant,
        "env": f"{cfg.env.family}/{cfg.env.name}",
        "seed": cfg.seed,
        "env_steps": module.progress.t_env,
        "episodes": module.progress.episodes,
        "updates": module.progress.updates,
        "wall_seconds": round(wall, 3),
        "final_test_return": tests[-1]["test/return_mean"] if tests else None,
        "best_test_return": max(t["test/return_mean"] for t in tests) if tests else None,
        "final_test_battle_won": tests[-1]["test/battle_won_mean"] if tests else None,
        "versions": package_versions(),
        "git": git_commit(REPO_ROOT),
    }
    if cfg.env.family == "matrix":
        report = matrix_game_report(module, envs[0])
        summary["matrix_game"] = report
        if cfg.print_report:
            print(format_matrix_report(report, [list(r) for r in cfg.env.payoff], cfg.env.action_names))
    write_json(run_dir / "summary.json", summary)
    return summary


register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the final test return so sweepers can optimise it."""
    summary = train(cfg, Path(HydraConfig.get().runtime.output_dir))
    return summary["final_test_return"]
