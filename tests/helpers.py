"""Tiny envs for tests: exact, fast and with known episode structure."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from softqmix.data.buffer import EpisodeBatch
from softqmix.envs.base import EnvInfo, Observation, StepResult

REPO_ROOT = Path(__file__).resolve().parents[1]  # where train.py and evaluate.py are

# env=mpe/spread_simple as a plain mapping, for building pools without Hydra
MPE_SIMPLE = {
    "family": "mpe",
    "name": "spread_simple",
    "n_agents": 3,
    "scale": 1.0,
    "landmark_scale": 0.8,
    "episode_limit": 25,
    "reward": "paper",
    "local_ratio": 0.5,
    "time_limit_is_termination": False,
    "obs_last_action": False,
}


def _train_one(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from softqmix.train import train

    return train(cfg, run_dir)


def train_runs_in_parallel(runs: list[tuple[DictConfig, Path]]) -> list[dict[str, Any]]:
    """Each (config, run dir) trained in its own spawned process, as many at once as there are cores.

    Multi-seed learning checks are most of CI's time; one run uses one torch thread, so on a 2-core machine two
    seeds at once take the time of one. Spawned (not forked) processes, because JAX threads may already exist.
    Results come back in the order of `runs`.
    """
    workers = max(1, min(len(runs), os.cpu_count() or 1))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return pool.starmap(_train_one, runs)


class SeededRandomActor:
    """Uniform actions over all actions from its own generator, so two collectors see the same stream."""

    def __init__(self, n_actions: int, seed: int) -> None:
        self.n_actions, self.gen = n_actions, torch.Generator().manual_seed(seed)

    def initial_hidden(self, n_envs: int) -> torch.Tensor:
        return torch.zeros(n_envs)

    def act(self, obs, state, avail, last, hidden, explore):  # type: ignore[no-untyped-def]
        return torch.randint(0, self.n_actions, obs.shape[:2], generator=self.gen), hidden


class CorridorEnv:
    """Two agents; the episode terminates when both pick action 1, else is truncated at `limit` steps.

    obs = [t, agent index], state = [t]; the team reward is the step index, so every
    stored tensor can be checked against the step it came from.
    """

    def __init__(self, limit: int = 4, n_actions: int = 3) -> None:
        self.limit, self.n_actions, self.t = limit, n_actions, 0

    def info(self) -> EnvInfo:
        return EnvInfo(n_agents=2, n_actions=self.n_actions, obs_dim=2, state_dim=1, episode_limit=self.limit)

    def _obs(self) -> Observation:
        obs = np.array([[self.t, 0.0], [self.t, 1.0]], dtype=np.float32)
        return Observation(obs=obs, state=np.array([self.t], dtype=np.float32), avail=np.ones((2, self.n_actions)))

    def reset(self, seed: int | None = None) -> Observation:
        self.t = 0
        return self._obs()

    def step(self, actions: np.ndarray) -> StepResult:
        reward = float(self.t)
        self.t += 1
        terminated = bool((np.asarray(actions) == 1).all())
        truncated = not terminated and self.t >= self.limit
        return StepResult(reward=reward, terminated=terminated, truncated=truncated, next=self._obs())

    def close(self) -> None:
        pass


class MaskedRandomActor(SeededRandomActor):
    """Uniform over each agent's available actions (SMACv2 forbids the rest with an AssertionError)."""

    def act(self, obs, state, avail, last, hidden, explore):  # type: ignore[no-untyped-def]
        probs = torch.as_tensor(avail, dtype=torch.float32).reshape(-1, self.n_actions)
        actions = torch.multinomial(probs, 1, generator=self.gen).reshape(obs.shape[:2])
        return actions, hidden


def random_replay_batch(info: EnvInfo, n_episodes: int, seed: int = 0) -> EpisodeBatch:
    """Random observations, states, rewards and legal actions (action 0 always legal) for every step of
    `n_episodes` episodes; `filled` and `terminated` are left at 0 for the caller to shape the episodes."""
    gen = torch.Generator().manual_seed(seed)
    b = EpisodeBatch.zeros(n_episodes, info)
    b.obs.copy_(torch.randn(b.obs.shape, generator=gen))
    b.state.copy_(torch.randn(b.state.shape, generator=gen))
    b.avail.copy_((torch.rand(b.avail.shape, generator=gen) > 0.4).float())
    b.avail[..., 0] = 1.0
    legal = b.avail[:, :-1].reshape(-1, info.n_actions)
    b.actions.copy_(torch.multinomial(legal, 1, generator=gen).view(b.actions.shape))
    b.reward.copy_(torch.randn(b.reward.shape, generator=gen))
    return b


_HOLD_LOCK = (
    "import sys, time; from pathlib import Path; from softqmix.rundir import acquire_run_dir; "
    "acquire_run_dir(Path(sys.argv[1])); print('locked', flush=True); time.sleep(600)"
)


def hold_run_dir_lock(run_dir: Path) -> subprocess.Popen[str]:
    """Another process that holds `run_dir`'s lock until killed (a second writer on a run dir)."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def load_script(relative_path: str) -> Any:
    """A script of the repository that is not a package module (e.g. under benchmarks/), imported for its functions."""
    path = REPO_ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
