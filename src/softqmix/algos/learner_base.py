"""What every learner shares, whatever its update rule: envs, greedy tests, metrics, checkpoints.

A learner (value factorisation, MAPPO, ...) subclasses `EnvLearner` and provides its nets, its
optimizers, `train_dataloader`, `training_step`, and the `actor` that collectors act with.
Training, tests and logs are scheduled by env steps (`progress.t_env`), never by Lightning's
own step counter, so that runs of different algorithms line up on the same x-axis.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from softqmix import checkpointing
from softqmix.config import Collection
from softqmix.data.buffer import EpisodeBuffer
from softqmix.data.collector import Actor, CollectStats, EpisodeCollector
from softqmix.data.collector_process import CollectorProcess
from softqmix.data.stream import ReplayStream, Timing, TrainingProgress
from softqmix.envs.base import EnvInfo
from softqmix.errors import ConfigError, TrainingDiverged

ConfigT = TypeVar("ConfigT")


def typed_config(schema: type[ConfigT], algo: Any) -> ConfigT:
    """Validate any algo mapping against its dataclass schema and return the typed object."""
    if isinstance(algo, schema):
        return algo
    source = algo if isinstance(algo, DictConfig | dict) else OmegaConf.structured(algo)
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), source))  # type: ignore[return-value]


@dataclass
class RunSchedule:
    """How long to train and how often to test and log, all in env steps."""

    t_max: int
    batch_size_run: int = 4
    test_interval: int = 1000
    test_nepisode: int = 32
    log_interval: int = 1000


class EnvLearner(L.LightningModule):
    """Env plumbing, greedy evaluation, env-step logging and resumable state for any learner."""

    # What to change when a loss turns non-finite; each learner names its own knobs.
    divergence_hint = "lower the learning rates, or check the env's rewards"

    def __init__(self, env_info: EnvInfo | dict[str, Any], schedule: RunSchedule | dict[str, int]) -> None:
        super().__init__()
        self.env_info = env_info if isinstance(env_info, EnvInfo) else EnvInfo(**env_info)
        self.schedule = schedule if isinstance(schedule, RunSchedule) else RunSchedule(**schedule)
        self.progress = TrainingProgress()
        self.timing = Timing()
        self.train_collector: EpisodeCollector | CollectorProcess | None = None
        self.test_collector: EpisodeCollector | None = None
        self.buffer: EpisodeBuffer | None = None  # replay learners only; saved with checkpoint.save_buffer
        self._pending_train_stats: list[CollectStats] = []
        self._pending_losses: list[dict[str, float]] = []
        # One entry per greedy evaluation: the logged means plus every episode's return and
        # outcome, which summary.json keeps for per-episode analyses (e.g. the marl-eval export).
        self.test_history: list[dict[str, Any]] = []
        self.stop_signal: int | None = None  # set by the preemption handler (SIGINT / SIGTERM)
        self.checkpoint_dir: Path | None = None
        self.save_buffer = False
        self._rng_to_restore: dict[str, Any] | None = None
        self._buffer_stamp_to_load: int | None = None

    def save_run_hyperparameters(self, cfg: Any, obs_last_action: bool) -> None:
        """What `load_from_checkpoint` needs to rebuild the module: algo, env sizes, inputs, schedule."""
        self.save_hyperparameters(
            {
                "algo": OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True),
                "env_info": asdict(self.env_info),
                "obs_last_action": obs_last_action,
                "schedule": asdict(self.schedule),
            }
        )

    def replay_stream(
        self, actor: Actor, batch_size: int, updates_per_collect: int, **options: Any
    ) -> torch.utils.data.DataLoader:
        """The replay learners' data: collect with `actor`, store, yield sampled batches (ReplayStream)."""
        if self.train_collector is None or self.buffer is None:
            raise RuntimeError("call attach_envs(...) before fitting")
        stream = ReplayStream(
            collector=self.train_collector,
            buffer=self.buffer,
            actor=actor,
            progress=self.progress,
            batch_size=batch_size,
            updates_per_collect=updates_per_collect,
            t_max=self.schedule.t_max,
            on_collect=self._pending_train_stats.append,
            on_start=self.restore_resumed_state,
            should_stop=lambda: self.stop_signal is not None,
            timing=self.timing,
            **options,
        )
        return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=0)

    # ------------------------------------------------------------------ subclass interface
    @property
    def actor(self) -> Actor:
        """What the collectors act with: sampling when exploring, greedy in tests."""
        raise NotImplementedError

    @property
    def replay_capacity(self) -> int | None:
        """Episodes the replay buffer holds; None for on-policy learners (no buffer)."""
        return None

    def extra_train_metrics(self) -> dict[str, float]:
        """Algorithm-specific values for each training log row (e.g. epsilon, temperature)."""
        return {}

    def attach_envs(
        self,
        train: EpisodeCollector,
        test: EpisodeCollector | None = None,
        collection: Collection = Collection.serial,
        collection_seed: int = 0,
    ) -> None:
        """Give the module its envs; kept out of __init__ so checkpoints load without envs.

        `collection` other than serial overlaps collection with learning (pool.collection), with
        an actor of its own seeded by `collection_seed`; only learners that override this method
        to set it up accept it.
        """
        if Collection(collection) is not Collection.serial:
            raise ConfigError(
                f"pool.collection={Collection(collection).value} is implemented for the value-factorisation "
                f"learners only, not for algo={self.hparams.get('algo', {}).get('name', type(self).__name__)}; "
                "set pool.collection=serial"
            )
        self.train_collector, self.test_collector = train, test or train
        if self.replay_capacity is not None:
            self.buffer = EpisodeBuffer(self.replay_capacity, self.env_info)

    def close_envs(self) -> None:
        """Stop what `attach_envs` started (a collection process); the caller closes the collectors
        it made itself."""
        if isinstance(self.train_collector, CollectorProcess):
            self.train_collector.close()

    # ------------------------------------------------------------------ metrics
    def log_env_metrics(self, metrics: dict[str, float]) -> None:
        """Send a row to every logger with the env step as its x-axis."""
        row = {"env_step": float(self.progress.t_env), **metrics}
        if self._trainer is not None:
            for logger in self.trainer.loggers:
                logger.log_metrics(row, step=self.progress.t_env)

    def record_update(self, losses: dict[str, torch.Tensor]) -> None:
        """Keep one update's losses for the next log row, and log when log_interval has passed."""
        self._pending_losses.append({k: float(v.detach()) for k, v in losses.items()})
        if self.progress.t_env - self.progress.last_log_t >= self.schedule.log_interval:
            self.flush_train_metrics()

    def flush_train_metrics(self) -> None:
        stats, losses = self._pending_train_stats, self._pending_losses
        if not stats and not losses and self.progress.last_log_t == self.progress.t_env:
            return
        row: dict[str, float] = {
            "train/episodes": float(self.progress.episodes),
            "train/updates": float(self.progress.updates),
            **self.extra_train_metrics(),
        }
        timing = self.timing
        if timing.collect_env_steps:
            row["perf/collect_seconds_per_100_steps"] = 100 * timing.collect_seconds / timing.collect_env_steps
        if timing.updates:
            row["perf/seconds_per_update"] = timing.update_seconds / timing.updates
        returns = [r for s in stats for r in s.returns]
        if returns:
            row["train/return_mean"] = float(np.mean(returns))
            row["train/ep_length_mean"] = float(np.mean([x for s in stats for x in s.lengths]))
            row["train/battle_won_mean"] = float(np.mean([x for s in stats for x in s.battle_won]))
        if losses:
            for key in losses[-1]:
                row[key] = float(np.mean([d[key] for d in losses if key in d]))
        self.log_env_metrics(row)
        stats.clear()
        losses.clear()
        self.progress.last_log_t = self.progress.t_env

    def raise_diverged(self, losses: dict[str, torch.Tensor]) -> None:
        bad = [k for k, v in losses.items() if not torch.isfinite(v)]
        where = self.checkpoint_dir / checkpointing.LAST_CHECKPOINT if self.checkpoint_dir else None
        kept = f"the last good checkpoint is kept at {where}" if where and where.exists() else "no checkpoint yet"
        raise TrainingDiverged(
            f"non-finite {', '.join(bad)} at env step {self.progress.t_env} (update {self.progress.updates}); "
            f"{kept}. {self.divergence_hint[0].upper()}{self.divergence_hint[1:]}"
        )

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def run_test(self) -> dict[str, float]:
        """Greedy episodes with the actor (explore=False); they do not advance t_env."""
        if self.test_collector is None:
            raise RuntimeError("call attach_envs(...) before testing")
        started = time.perf_counter()
        rounds = max(1, math.ceil(self.schedule.test_nepisode / self.test_collector.n_envs))
        returns, won = [], []
        for _ in range(rounds):
            _, stats = self.test_collector.collect(self.actor, explore=False)
            returns += stats.returns
            won += stats.battle_won
        result = {
            "test/return_mean": float(np.mean(returns)),
            "test/return_std": float(np.std(returns)),
            "test/battle_won_mean": float(np.mean(won)),
            "test/episodes": float(len(returns)),
        }
        self.progress.last_test_t = self.progress.t_env
        self.timing.test_seconds += time.perf_counter() - started
        self.test_history.append(
            {"env_step": float(self.progress.t_env), **result, "returns": returns, "battle_won": won}
        )
        self.log_env_metrics(result)
        return result

    # ------------------------------------------------------------------ checkpoints
    def configure_checkpointing(self, checkpoint_dir: Path, save_buffer: bool) -> None:
        self.checkpoint_dir, self.save_buffer = checkpoint_dir, save_buffer

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Everything beyond weights and optimizers that a resume needs to continue the same run.

        Lightning's loop counters are dropped: the run's position is `progress` (env steps), the
        whole run is one epoch over an endless stream, and a restored mid-epoch loop state would
        end the resumed epoch at once.
        """
        checkpoint.pop("loops", None)
        checkpoint["progress"] = self.progress.state_dict()
        checkpoint["test_history"] = list(self.test_history)
        checkpoint["pending"] = {
            "stats": [asdict(stats) for stats in self._pending_train_stats],
            "losses": list(self._pending_losses),
        }
        checkpoint["rng"] = checkpointing.capture_rng_state()
        if self.train_collector is not None:
            checkpoint["collector"] = self.train_collector.state_dict()
        checkpoint["buffer_stamp"] = None
        if self.save_buffer and self.buffer is not None and self.checkpoint_dir is not None:
            checkpointing.save_buffer(self.buffer, self.checkpoint_dir / checkpointing.BUFFER_FILE, self.progress.t_env)
            checkpoint["buffer_stamp"] = self.progress.t_env

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.progress.load_state_dict(checkpoint.get("progress", {}))
        self.test_history = list(checkpoint.get("test_history", []))
        pending = checkpoint.get("pending", {"stats": [], "losses": []})
        self._pending_train_stats[:] = [CollectStats(**stats) for stats in pending["stats"]]
        self._pending_losses[:] = pending["losses"]
        self._rng_to_restore = checkpoint.get("rng")
        if self.train_collector is not None and "collector" in checkpoint:
            self.train_collector.load_state_dict(checkpoint["collector"])
        self._buffer_stamp_to_load = checkpoint.get("buffer_stamp")

    def restore_resumed_state(self) -> None:
        """Called when the stream starts: after Lightning has built its iterators (which draw from
        the torch RNG), so the restored RNG continues exactly where the checkpointed run stopped."""
        if self._buffer_stamp_to_load is not None and self.buffer is not None and self.checkpoint_dir is not None:
            checkpointing.load_buffer(
                self.buffer, self.checkpoint_dir / checkpointing.BUFFER_FILE, self._buffer_stamp_to_load
            )
            self._buffer_stamp_to_load = None
        if self._rng_to_restore is not None:
            checkpointing.restore_rng_state(self._rng_to_restore)
            self._rng_to_restore = None
