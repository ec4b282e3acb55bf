"""`python evaluate.py run=<run dir>`: greedy episodes from a run's checkpoint -> eval.json (+ GIF)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from softqmix import CONF_DIR
from softqmix.checkpointing import checkpoint_env_step, checkpoint_path
from softqmix.config import register_configs
from softqmix.data.collector import EpisodeCollector
from softqmix.envs import env_factory, make_env
from softqmix.envs.base import StepResult
from softqmix.envs.pool import EnvPool
from softqmix.envs.registry import vector_env_factory
from softqmix.errors import ConfigError, UserError
from softqmix.eval.epsilon_actor import EpsilonGreedyActor
from softqmix.loop import TrainingLoop
from softqmix.outputs import write_json


def load_run(run_dir: Path) -> tuple[DictConfig, TrainingLoop, int]:
    """The run's config and its learner restored from checkpoints/last.ckpt."""
    ckpt = checkpoint_path(run_dir)
    if not (run_dir / "config.yaml").exists() or not ckpt.exists():
        raise ConfigError(f"run={run_dir}: expected config.yaml and {ckpt}; give a run dir written by train.py")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    module = TrainingLoop.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    module.eval()
    step = checkpoint_env_step(ckpt)
    return cfg, module, step


@torch.no_grad()
def greedy_episode(module: TrainingLoop, env: Any, seed: int) -> Iterator[StepResult | None]:
    """One greedy episode (argmax of the raw Q_i) from `env.reset(seed=seed)`, played one env step at a time.

    Yields None once the env is reset, then each step's result, so a caller sees the env in every state of the
    episode (to render it, or to sum its rewards) without its own copy of the acting loop.
    """
    current = env.reset(seed=seed)
    yield None
    hidden = module.actor.initial_hidden(1)
    last = torch.full((1, env.info().n_agents), -1, dtype=torch.long)
    for _ in range(env.info().episode_limit):
        actions, hidden = module.actor.act(
            torch.as_tensor(current.obs[None], dtype=torch.float32),
            torch.as_tensor(current.state[None], dtype=torch.float32),
            torch.as_tensor(current.avail[None], dtype=torch.float32),
            last,
            hidden,
            explore=False,
        )
        result = env.step(actions[0].numpy())
        yield result
        if result.terminated or result.truncated:
            return
        last, current = actions, result.next


def render_episode(module: TrainingLoop, env: Any, seed: int) -> list[np.ndarray]:
    """Frames of one greedy episode, rendered by the env in rgb_array mode: the start, then after each step."""
    return [env.render() for _ in greedy_episode(module, env, seed)]


def write_gif(frames: list[np.ndarray], path: Path, fps: int) -> None:
    from PIL import Image

    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)


def evaluate(eval_cfg: DictConfig) -> dict[str, Any]:
    run_dir = Path(eval_cfg.run).expanduser().resolve()
    cfg, module, step = load_run(run_dir)
    if eval_cfg.test_nepisode is not None:
        module.schedule.test_nepisode = int(eval_cfg.test_nepisode)
    name = f"{cfg.env.family}/{cfg.env.name}"
    pool = EnvPool(env_factory(cfg.env), cfg.batch_size_run, name=name, vector_factory=vector_env_factory(cfg.env))
    collector = EpisodeCollector(pool, seed=int(eval_cfg.seed), name=name)
    actor = EpsilonGreedyActor(module.actor, float(eval_cfg.epsilon), int(eval_cfg.seed))
    try:
        module.attach_envs(collector)
        result = module.run_test(actor)
    finally:
        collector.close()
    report: dict[str, Any] = {
        "run": str(run_dir),
        "checkpoint_env_step": step,
        "seed": int(eval_cfg.seed),
        "epsilon": float(eval_cfg.epsilon),
        **result,
    }
    if eval_cfg.render:
        if cfg.env.family != "mpe":
            raise ConfigError(f"render=true needs an MPE run; this run's env is {name}")
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless pygame
        env = make_env(cfg.env, render_mode="rgb_array")
        try:
            frames = render_episode(module, env, int(eval_cfg.seed))
        finally:
            env.close()
        gif = run_dir / "episode.gif"
        write_gif(frames, gif, int(eval_cfg.gif_fps))
        report["gif"] = str(gif)
        report["gif_frames"] = len(frames)
    name = "eval.json" if report["epsilon"] == 0.0 else f"eval_epsilon{report['epsilon']:g}.json"  # both can stay
    write_json(run_dir / name, report)
    report["written_to"] = str(run_dir / name)
    return report


register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def main(eval_cfg: DictConfig) -> None:
    try:
        report = evaluate(eval_cfg)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(
        f"{report['test/episodes']:.0f} episodes at epsilon {report['epsilon']:g}: "
        f"return {report['test/return_mean']:.3f} ± {report['test/return_std']:.3f}, "
        f"win rate {report['test/battle_won_mean']:.3f} -> {report['written_to']}"
    )


if __name__ == "__main__":  # python -m softqmix.evaluate
    main()
