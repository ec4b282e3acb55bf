"""The training loop as one LightningModule: envs, replay, the batch stream, tests, metrics, resume state.

It holds a learner (softqmix.algos: nets, losses, `update`) and everything around it, the same for every
algorithm:

    collect a round (softqmix.loop.rounds) -> replay buffer, or an on-policy rollout -> batches
    -> Lightning's training_step -> learner.update(batch) -> log rows, greedy tests, checkpoints

Training, tests and logs are scheduled by env steps (`progress.t_env`), never by Lightning's own step
counter, so that runs of different algorithms line up on one x-axis.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, IterableDataset

from softqmix import checkpointing
from softqmix.algos.learner import DivergedUpdate, Learner, updates_earned
from softqmix.algos.registry import AlgorithmSpec, algorithm, build_learner
from softqmix.config import Collection
from softqmix.cpu_placement import CpuSplit
from softqmix.data.buffer import EpisodeBatch, EpisodeBuffer
from softqmix.data.collector import CollectStats, EpisodeCollector
from softqmix.data.collector_process import CollectorProcess, SpawnedChild
from softqmix.envs.base import EnvInfo
from softqmix.errors import ConfigError, TrainingDiverged
from softqmix.loop.rounds import ProcessRounds, Round, SerialRounds, ThreadRounds
from softqmix.progress import Timing, TrainingProgress


@dataclass
class RunSchedule:
    """How long to train and how often to test and log, all in env steps."""

    t_max: int
    batch_size_run: int = 4
    test_interval: int = 1000
    test_nepisode: int = 32
    log_interval: int = 1000


def _as_floats(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()}


def greedy_action_counts(episodes: EpisodeBatch, n_actions: int) -> torch.Tensor:
    """How often each agent took each action in these episodes' real steps: [n_agents, n_actions]."""
    onehot = torch.nn.functional.one_hot(episodes.actions, n_actions).to(torch.float32)  # [E, T, n, A]
    return (onehot * episodes.filled[..., None, None]).sum(dim=(0, 1))


class BatchStream(IterableDataset):
    """Lightning wants a DataLoader; this one iterates the loop's own batch generator."""

    def __init__(self, loop: TrainingLoop) -> None:
        super().__init__()
        self.loop = loop

    def __iter__(self) -> Iterator[Any]:
        return self.loop.batches()


class TrainingLoop(L.LightningModule):
    """One run of one learner: collection, replay or rollouts, updates, greedy tests, logs, resumable state."""

    def __init__(
        self,
        algo: DictConfig | dict[str, Any],
        env_info: EnvInfo | dict[str, Any],
        obs_last_action: bool,
        schedule: RunSchedule | dict[str, int],
        divergence_bound: float | None = None,
    ) -> None:
        super().__init__()
        self.env_info = env_info if isinstance(env_info, EnvInfo) else EnvInfo(**env_info)
        self.schedule = schedule if isinstance(schedule, RunSchedule) else RunSchedule(**schedule)
        self.progress = TrainingProgress()
        self.timing = Timing()
        algo_name = str(algo["name"])
        self.spec: AlgorithmSpec = algorithm(algo_name)
        self.learner: Learner = build_learner(
            algo, self.env_info, obs_last_action, self.progress, t_max=self.schedule.t_max
        )
        self.learner.divergence_bound = divergence_bound  # trainer.divergence_bound; None: NaN and inf only
        self.save_hyperparameters(
            {
                "algo": OmegaConf.to_container(OmegaConf.structured(self.learner.cfg), enum_to_str=True),
                "env_info": asdict(self.env_info),
                "obs_last_action": obs_last_action,
                "schedule": asdict(self.schedule),
            }
        )
        self.automatic_optimization = False
        self.train_collector: EpisodeCollector | CollectorProcess | None = None
        self.test_collector: EpisodeCollector | None = None
        self.rounds: SerialRounds | ThreadRounds | ProcessRounds | None = None
        self._separate_actor: bool | None = None
        self._acting_copy: Any = None
        self.buffer: EpisodeBuffer | None = None  # replay learners only; saved with checkpoint.save_buffer
        self._pending_train_stats: list[CollectStats] = []
        # kept as tensors on the learner's device until a log row needs them: no host sync per update
        self._pending_losses: list[dict[str, Any]] = []
        # One entry per greedy evaluation: the logged means plus every episode's return and
        # outcome, which summary.json keeps for per-episode analyses (e.g. the marl-eval export).
        self.test_history: list[dict[str, Any]] = []
        self.stop_signal: int | None = None  # set by the preemption handler (SIGINT / SIGTERM)
        self.checkpoint_dir: Path | None = None
        self.save_buffer = False
        self._rng_to_restore: dict[str, Any] | None = None
        self._buffer_stamp_to_load: int | None = None

    @property
    def algo_name(self) -> str:
        return self.spec.name

    @property
    def actor(self) -> Any:
        return self.learner.actor

    # ------------------------------------------------------------------ envs
    def attach_envs(
        self,
        train: EpisodeCollector,
        test: EpisodeCollector | None = None,
        collection: Collection = Collection.serial,
        collection_seed: int = 0,
        separate_actor: bool | None = None,
        process_start: str = "fork",
        spawned_child: SpawnedChild | None = None,
        cpu_split: CpuSplit | None = None,
    ) -> None:
        """Give the loop its envs; kept out of __init__ so checkpoints load without envs.

        With collection `thread` or `process`, training episodes are collected while the learner
        trains, by a copy of the acting nets with its own RNG (seeded with `collection_seed`); `test`
        must then be a separate collector. The process is forked here (`process_start`), before the replay buffer
        is allocated, so the child does not share (and later duplicate) its pages; for envs that do not survive a
        fork it is spawned (`process_start="spawn"`), best ahead of time (`spawned_child`, see train.py).
        `cpu_split` pins a forked collection process (softqmix.cpu_placement); a spawned one got it at its start.
        Serial collection acts with a CPU copy of the nets refreshed after every update when
        `separate_actor` is true, or, when it is None, once the learner turns out to be on a GPU.
        """
        collection = Collection(collection)
        self._separate_actor = separate_actor
        if collection is Collection.serial:
            self.rounds = SerialRounds(train, self.actor)
        else:
            if not self.spec.overlapped_collection:
                raise ConfigError(
                    f"pool.collection={collection.value} needs an actor that can act from a copy of the nets, "
                    f"which algo={self.spec.name} does not have; set pool.collection=serial"
                )
            if test is None or test is train:
                raise ValueError("overlapping collection needs a separate test collector")
            copy = self.actor.detached_copy(collection_seed)
            sync = lambda: copy.refresh_from(self.actor)  # noqa: E731
            if collection is Collection.process:
                copy.share_memory()
                train = CollectorProcess(  # type: ignore[assignment]
                    train, copy, self.progress, start_method=process_start, spawned=spawned_child, split=cpu_split
                )
                self.rounds = ProcessRounds(train, sync)  # type: ignore[arg-type]
            else:
                self.rounds = ThreadRounds(train, copy, sync)
        self.train_collector, self.test_collector = train, test or train
        if not self.spec.on_policy:
            cfg = self.learner.cfg
            float_dtype = getattr(torch, getattr(cfg.replay_float, "value", cfg.replay_float))
            self.buffer = EpisodeBuffer(cfg.buffer_size, self.env_info, float_dtype)

    def close_envs(self) -> None:
        """Stop what `attach_envs` started (a collection process); the caller closes the collectors
        it made itself."""
        if isinstance(self.train_collector, CollectorProcess):
            self.train_collector.close()

    # ------------------------------------------------------------------ data
    @property
    def acting_actor(self) -> Any:
        """What collects and tests: the learner's actor, or its CPU copy (see attach_envs)."""
        return self._acting_copy if self._acting_copy is not None else self.actor

    def train_dataloader(self) -> DataLoader:
        """Called once the module is on its device, so a GPU learner can get its CPU acting copy here."""
        if self.rounds is None:
            raise RuntimeError("call attach_envs(...) before fitting")
        separate = self._separate_actor
        if separate is None:
            separate = self.device.type != "cpu"
        if separate and self.spec.overlapped_collection and type(self.rounds) is SerialRounds:
            copy = self.actor.detached_copy(None)  # the global RNG: the same draws as the shared actor
            self._acting_copy = copy
            self.rounds = SerialRounds(self.rounds.collector, copy, lambda: copy.refresh_from(self.actor))
        return DataLoader(BatchStream(self), batch_size=None, num_workers=0)

    def _keep_going(self, t_env: int) -> bool:
        return t_env < self.schedule.t_max and self.stop_signal is None

    def _record(self, round_: Round) -> None:
        self.timing.collect_seconds += round_.seconds
        self.timing.collect_env_steps += round_.stats.env_steps
        self.progress.t_env += round_.stats.env_steps
        self.progress.episodes += len(round_.stats.returns)
        self._pending_train_stats.append(round_.stats)

    def batches(self) -> Iterator[Any]:
        """What training_step consumes: sampled replay batches, or minibatches of fresh rollouts.

        Starts by restoring a resumed run's RNG and buffer: Lightning has built its iterators by
        then (drawing from the torch RNG), so the run continues exactly where it stopped. Ends when
        t_env reaches t_max (or a stop signal arrives), which ends Lightning's single epoch.
        """
        self.restore_resumed_state()
        if self.spec.on_policy:
            yield from self._rollout_minibatches()
        else:
            yield from self._replay_batches()

    def _replay_batches(self) -> Iterator[EpisodeBatch]:
        cfg, buffer, rounds = self.learner.cfg, self.buffer, self.rounds
        assert buffer is not None and rounds is not None
        yield from self._owed_updates()  # a run resumed from a checkpoint taken between one collection's updates
        for round_ in rounds.rounds(self.progress.t_env, self._keep_going):
            buffer.insert(round_.episodes)
            self._record(round_)
            if self.learner.replay_ready(buffer):
                self.progress.updates_owed += updates_earned(cfg, self.progress, round_.stats.env_steps)
                yield from self._owed_updates()

    def _owed_updates(self) -> Iterator[EpisodeBatch]:
        """The updates earned so far; the count drops before each one, so a checkpoint taken after it (in
        on_train_batch_end) records only those still to run."""
        assert self.buffer is not None and self.rounds is not None
        while self.progress.updates_owed > 0:
            self.progress.updates_owed -= 1
            yield self.learner.sample_replay(self.buffer)
            self.rounds.after_update()

    def _rollout_minibatches(self) -> Iterator[Any]:
        assert isinstance(self.rounds, SerialRounds)
        learner: Any = self.learner
        while self._keep_going(self.progress.t_env):
            rounds: list[EpisodeBatch] = []
            while sum(b.batch_size for b in rounds) < learner.rollout_episodes:
                round_ = self.rounds.collect_one()
                self._record(round_)
                rounds.append(round_.episodes)
            for minibatch in learner.minibatches(learner.prepare_rollout(EpisodeBatch.concat(rounds))):
                yield minibatch
                if self.stop_signal is not None:
                    return

    # ------------------------------------------------------------------ learning
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return self.learner.make_optimizers()

    def training_step(self, dataloader_iter: Iterator[tuple[Any, int, int]]) -> None:
        # Taking the iterator (Lightning's documented pattern) turns off its one-batch prefetch:
        # each update runs right after the collection that produced its batch, as in pymarl, and a
        # checkpoint taken after an update holds no half-consumed collection.
        batch, _, _ = next(dataloader_iter)  # StopIteration at t_max ends the epoch
        started = time.perf_counter()
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        try:
            losses = self.learner.update(batch.to(self.device), optimizers, self.manual_backward)
        except DivergedUpdate as bad:
            self.raise_diverged(bad)
        self.timing.update_seconds += time.perf_counter() - started
        self.timing.updates += 1
        self.record_update(losses)

    def raise_diverged(self, bad: DivergedUpdate) -> None:
        """The update that `bad` stopped as a TrainingDiverged naming the quantities, their values, the env step,
        the update and the checkpoint kept (no checkpoint is written after a divergence)."""
        where = self.checkpoint_dir / checkpointing.LAST_CHECKPOINT if self.checkpoint_dir else None
        kept = where if where is not None and where.exists() else None
        what = f"the last good checkpoint is kept at {kept}" if kept else "no checkpoint yet"
        update = self.progress.updates + 1  # the update that diverged; it was not applied
        non_finite = [key for key in bad.keys if not math.isfinite(bad.values[key])]
        large = [key for key in bad.keys if key not in non_finite]
        problems = [f"non-finite {', '.join(non_finite)}"] if non_finite else []
        if large:
            values = ", ".join(f"{key}={bad.values[key]:.3g}" for key in large)
            problems.append(f"{values} reached trainer.divergence_bound={bad.bound:g}")
        hint = self.learner.divergence_hint
        if large:
            hint += " (or raise trainer.divergence_bound; null stops only on NaN/inf)"
        raise TrainingDiverged(
            f"diverged at env step {self.progress.t_env} (update {update}): {'; '.join(problems)}; {what}. "
            f"{hint[0].upper()}{hint[1:]}",
            env_step=self.progress.t_env,
            update=update,
            values=bad.values,
            offending=bad.keys,
            bound=bad.bound,
            checkpoint=str(kept) if kept else None,
        )

    # ------------------------------------------------------------------ metrics
    def log_env_metrics(self, metrics: dict[str, float]) -> None:
        """Send a row to every logger with the env step as its x-axis."""
        row = {"env_step": float(self.progress.t_env), **metrics}
        if self._trainer is not None:
            for logger in self.trainer.loggers:
                logger.log_metrics(row, step=self.progress.t_env)

    def record_update(self, losses: dict[str, torch.Tensor]) -> None:
        """Keep one update's losses for the next log row, and log when log_interval has passed."""
        self._pending_losses.append({k: v.detach() for k, v in losses.items()})
        if self.progress.t_env - self.progress.last_log_t >= self.schedule.log_interval:
            self.flush_train_metrics()

    def flush_train_metrics(self) -> None:
        stats, losses = self._pending_train_stats, self._pending_losses
        if not stats and not losses and self.progress.last_log_t == self.progress.t_env:
            return
        row: dict[str, float] = {
            "train/episodes": float(self.progress.episodes),
            "train/updates": float(self.progress.updates),
            **self.learner.train_metrics(),
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
                values = [torch.as_tensor(d[key], dtype=torch.float32, device=self.device) for d in losses if key in d]
                row[key] = float(torch.stack(values).mean())  # one host sync per logged key
        self.log_env_metrics(row)
        stats.clear()
        losses.clear()
        self.progress.last_log_t = self.progress.t_env

    # ------------------------------------------------------------------ evaluation
    def start_collecting(self) -> None:
        """With a collection process, have it collect the first round now, while this process does something else
        before training (its first greedy test); the other ways of collecting start with the first batch."""
        if isinstance(self.rounds, ProcessRounds) and not self.spec.on_policy:
            self.rounds.start(self.progress.t_env, self._keep_going)

    @torch.no_grad()
    def run_test(self, actor: Any = None) -> dict[str, float]:
        """Greedy episodes with the actor (explore=False), or with `actor` (e.g. an epsilon-greedy wrapper);
        they do not advance t_env."""
        if self.test_collector is None:
            raise RuntimeError("call attach_envs(...) before testing")
        started = time.perf_counter()
        rounds = max(1, math.ceil(self.schedule.test_nepisode / self.test_collector.n_envs))
        returns, won = [], []
        counts = torch.zeros(self.env_info.n_agents, self.env_info.n_actions)
        for _ in range(rounds):
            episodes, stats = self.test_collector.collect(actor or self.acting_actor, explore=False)
            returns += stats.returns
            won += stats.battle_won
            counts += greedy_action_counts(episodes, self.env_info.n_actions)
        shares = counts / counts.sum(-1, keepdim=True).clamp(min=1.0)
        result = {
            "test/return_mean": float(np.mean(returns)),
            "test/return_std": float(np.std(returns)),
            "test/battle_won_mean": float(np.mean(won)),
            "test/episodes": float(len(returns)),
            # how often, on average over agents, each agent's most frequent greedy action was taken
            "test/top_action_share": float(shares.max(-1).values.mean()),
        }
        self.progress.last_test_t = self.progress.t_env
        self.timing.test_seconds += time.perf_counter() - started
        self.test_history.append(
            {
                "env_step": float(self.progress.t_env),
                **result,
                "returns": returns,
                "battle_won": won,
                "greedy_action_counts": counts.long().tolist(),  # [agent][action], over every test step
            }
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
            "losses": [_as_floats(losses) for losses in self._pending_losses],
        }
        checkpoint["rng"] = checkpointing.capture_rng_state()
        if self.train_collector is not None:
            checkpoint["collector"] = self.train_collector.state_dict()
        checkpoint["buffer_stamp"] = None
        if self.save_buffer and self.buffer is not None and self.checkpoint_dir is not None:
            path = checkpointing.buffer_path(self.checkpoint_dir, self.progress.t_env)
            checkpointing.save_buffer(self.buffer, path, self.progress.t_env)
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
            path = checkpointing.saved_buffer_path(self.checkpoint_dir, self._buffer_stamp_to_load)
            checkpointing.load_buffer(self.buffer, path, self._buffer_stamp_to_load)
            self._buffer_stamp_to_load = None
        if self._rng_to_restore is not None:
            checkpointing.restore_rng_state(self._rng_to_restore)
            self._rng_to_restore = None
