"""What every learner shares: the common config block and one gradient step.

A learner holds nets, losses and target copies and knows how to take one update on a batch.
It knows nothing of envs, replay, test schedules or checkpoints: the training loop
(softqmix.loop) owns those and hands the learner batches. Every learner updates through
`Learner.update`, so the divergence check (NaN, inf, trainer.divergence_bound), gradient clipping,
optimizer steps, update counter and target copies are written once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from omegaconf import MISSING, DictConfig, OmegaConf
from torch import nn

from softqmix.algos.rewards import RewardTransform
from softqmix.envs.base import EnvInfo
from softqmix.errors import ConfigError
from softqmix.progress import TrainingProgress

if TYPE_CHECKING:
    from softqmix.data.buffer import EpisodeBuffer


class Optimizer(str, Enum):
    adam = "adam"
    rmsprop = "rmsprop"


class AgentNet(str, Enum):
    rnn = "rnn"  # Linear -> GRU -> Linear over the episode (pymarl2's n_rnn, the paper's agent)
    mlp = "mlp"  # three linear layers on the current input only (EPyMARL's QMIX on MPE: use_rnn False)


class ReplayFloat(str, Enum):
    float32 = "float32"  # exact
    float16 = "float16"  # observations and states in half precision: half their memory, ~1e-3 relative error


# How the gradient norm is clipped at `grad_norm_clip` (the functional form: `global` is a Python keyword):
#   per_optimizer  each optimizer clips the norm over its own parameters (logged as train/grad_norm_<group>)
#   global         one clip over the norm of every gradient of the learner together, as a single optimizer
#                  over all parameters does (pymarl2 and the authors' Soft-QMIX code; logged as train/grad_norm)
GradClipMode = Enum("GradClipMode", {"per_optimizer": "per_optimizer", "global": "global"}, type=str)


class TargetUnit(str, Enum):
    episodes = "episodes"  # pymarl2 and the authors' code: a copy every N collected episodes
    updates = "updates"  # EPyMARL: a copy every N gradient steps


@dataclass
class LearnerConfig:
    """Knobs every learner has. Each algorithm's schema extends this block (or ReplayLearnerConfig)."""

    name: str = MISSING  # the algorithm, a name in softqmix.algos.registry
    variant: str = "default"  # set by an ablation bundle; names the run and its results row
    gamma: float = 0.99
    critic_lr: float = 1e-3
    optimizer: Optimizer = Optimizer.adam  # for every optimizer of the learner
    adam_eps: float = 1e-8
    rmsprop_alpha: float = 0.99
    rmsprop_eps: float = 1e-5
    grad_norm_clip: float = 10.0  # the largest gradient norm, per optimizer or over all (grad_clip_mode)
    grad_clip_mode: GradClipMode = GradClipMode["per_optimizer"]
    agent: AgentNet = AgentNet.rnn  # the (shared) agent or actor network
    rnn_hidden_dim: int = 64  # hidden width of the agent net (rnn or mlp)
    obs_agent_id: bool = True  # one-hot agent index in the agent net's input


@dataclass
class ReplayLearnerConfig(LearnerConfig):
    """Off-policy learners: replay of whole episodes, target copies, an epsilon schedule."""

    buffer_size: int = 5000  # episodes
    replay_float: ReplayFloat = ReplayFloat.float32  # how the buffer stores observations and states
    batch_size: int = 128  # episodes per update
    updates_per_collect: int = 1  # gradient steps per collection of batch_size_run episodes
    # null: `updates_per_collect` per collection (pymarl). N: one gradient step per N env steps collected, the
    # remainder carried to the next collection (JaxMARL's and HARL's pacing; episode lengths then do not change
    # how often the learner updates). Set one of the two.
    env_steps_per_update: int | None = None
    burn_in_episodes: int = 0  # no update before the buffer holds this many episodes (and batch_size)
    target_update_interval: int = 200  # hard target copies every this many `target_update_unit`
    target_update_unit: TargetUnit = TargetUnit.episodes
    reward_scale: float = 1.0  # rewards are multiplied by this before the targets (logged returns are not)
    standardise_rewards: bool = False  # EPyMARL's: (r - running mean) / running std over the sampled batches
    epsilon_start: float = 1.0
    epsilon_finish: float = 0.05
    epsilon_anneal_time: int = 100_000  # env steps


def check_update_pacing(cfg: ReplayLearnerConfig) -> None:
    """Updates are paced per collection or per env step, not both: a run given both would silently drop one."""
    if cfg.env_steps_per_update is not None and cfg.updates_per_collect != 1:
        raise ConfigError(
            f"algo.env_steps_per_update={cfg.env_steps_per_update} paces updates by env steps, and "
            f"algo.updates_per_collect={cfg.updates_per_collect} paces them per collection; set one of the two "
            "(algo.updates_per_collect=1 or algo.env_steps_per_update=null)"
        )


def updates_earned(cfg: ReplayLearnerConfig, progress: TrainingProgress, env_steps: int) -> int:
    """Gradient steps that a collection of `env_steps` env steps earns; per env step, the remainder is carried
    in `progress.steps_toward_update` (checkpointed, so a resumed run updates at the same steps)."""
    if cfg.env_steps_per_update is None:
        return cfg.updates_per_collect
    progress.steps_toward_update += env_steps
    earned, progress.steps_toward_update = divmod(progress.steps_toward_update, cfg.env_steps_per_update)
    return earned


def typed_config(schema: type, algo: Any) -> Any:
    """Validate an algo mapping (or dataclass) against its schema and return the typed dataclass."""
    if isinstance(algo, schema):
        return algo
    source = algo if isinstance(algo, DictConfig | dict) else OmegaConf.structured(algo)
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), source))


@dataclass(frozen=True)
class OptimizerGroup:
    """Parameters stepped by one optimizer; `name` also names its grad-norm metric."""

    name: str
    parameters: list[nn.Parameter]
    lr: float


class DivergedUpdate(ArithmeticError):
    """The summed loss or a checked diagnostic is NaN, infinite or past the divergence bound; the loop adds
    where and what to do.

    `values` holds every checked quantity of the update (the objective's terms, their sum as `loss/total`, the
    `finite_checks` diagnostics) as Python floats, `keys` those that offended, `bound` the bound (None: only
    NaN and inf were checked).
    """

    def __init__(self, keys: list[str], values: dict[str, float], bound: float | None) -> None:
        super().__init__(", ".join(keys))
        self.keys, self.values, self.bound = keys, values, bound


TOTAL_LOSS = "loss/total"  # the summed objective, as DivergedUpdate names it


class Learner(nn.Module):
    """Nets, losses and the update rule of one algorithm.

    Subclasses give `optimizer_groups`, `compute_losses` and the `actor` that collectors act
    with, and, when they keep target nets, `sync_targets`. The keys of `objective` are summed
    into the loss that is back-propagated; every other entry of `compute_losses` is logged.
    """

    objective: ClassVar[tuple[str, ...]] = ()
    # Diagnostics that must stay finite, and below the divergence bound, too (a diverging Q shows there before
    # the loss does).
    finite_checks: ClassVar[tuple[str, ...]] = ()
    # What to change when a loss turns non-finite, in the words of the learner's own knobs.
    divergence_hint: ClassVar[str] = "lower the learning rates, or check the env's rewards"

    def __init__(
        self,
        cfg: LearnerConfig,
        env_info: EnvInfo,
        obs_last_action: bool,
        progress: TrainingProgress,
        t_max: int = 0,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.env_info = env_info
        self.obs_last_action = obs_last_action
        self.progress = progress  # shared with the loop: schedules (epsilon, alpha, lr) read t_env from it
        self.t_max = t_max  # the run's length in env steps, for schedules that end with the run
        # |summed loss| and |each finite_checks diagnostic| must stay below this (trainer.divergence_bound, set by
        # the training loop); None: only NaN and inf stop an update
        self.divergence_bound: float | None = None
        if isinstance(cfg, ReplayLearnerConfig):  # a module without parameters: the nets' initialisation is unchanged
            self.rewards = RewardTransform(cfg.reward_scale, cfg.standardise_rewards)

    # ------------------------------------------------------------------ subclass interface
    @property
    def actor(self) -> Any:
        """What the collectors act with: sampling when exploring, greedy in tests."""
        raise NotImplementedError

    def optimizer_groups(self) -> list[OptimizerGroup]:
        raise NotImplementedError

    def compute_losses(self, batch: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def sync_targets(self) -> None:
        """Copy the online nets into the target nets (learners with targets override this)."""

    def before_step(self, optimizers: list[Any]) -> None:
        """Called after the gradients are clipped, before the optimizers step (e.g. lr schedules)."""

    def train_metrics(self) -> dict[str, float]:
        """Algorithm-specific values for each training log row (epsilon, temperature, ...)."""
        return {}

    # ------------------------------------------------------------------ replay (off-policy learners)
    def replay_ready(self, buffer: EpisodeBuffer) -> bool:
        """Whether updates may start: the buffer holds a batch and the burn-in. Learners that sample
        transitions instead of episodes (HASAC) count their own way."""
        cfg: Any = self.cfg
        return buffer.can_sample(max(cfg.batch_size, cfg.burn_in_episodes))

    def sample_replay(self, buffer: EpisodeBuffer) -> Any:
        """One update's batch from the replay buffer: `batch_size` whole episodes, or what the learner's
        `update` takes instead (HASAC: transitions with their n-step windows)."""
        cfg: Any = self.cfg
        return buffer.sample(cfg.batch_size)

    # ------------------------------------------------------------------ shared
    def compile_hot_paths(self) -> None:
        """trainer.compile: hand the parts that torch.compile measurably speeds up to it (g over every
        action; the GRU is faster as nn.GRU, benchmarks/compile_probe.py)."""
        for module in self.modules():
            if hasattr(module, "compile_no_grad_path"):
                module.compile_no_grad_path()

    def make_optimizers(self) -> list[torch.optim.Optimizer]:
        """One optimizer per group, of the kind `cfg.optimizer` names."""
        cfg = self.cfg
        groups = self.optimizer_groups()
        self._group_names = [group.name for group in groups]
        optimizers: list[torch.optim.Optimizer] = []
        for group in groups:
            # fused Adam (one kernel for all parameters) is the same update as the per-tensor loop within float
            # tolerance, and 3x cheaper here; torch has no fused RMSprop, so that one takes the foreach path
            if Optimizer(cfg.optimizer) is Optimizer.adam:
                optimizers.append(torch.optim.Adam(group.parameters, lr=group.lr, eps=cfg.adam_eps, fused=True))
            else:
                optimizers.append(
                    torch.optim.RMSprop(
                        group.parameters, lr=group.lr, alpha=cfg.rmsprop_alpha, eps=cfg.rmsprop_eps, foreach=True
                    )
                )
        return optimizers

    def targets_due(self) -> bool:
        interval = getattr(self.cfg, "target_update_interval", None)
        if interval is None:
            return False
        if TargetUnit(self.cfg.target_update_unit) is TargetUnit.updates:
            return self.progress.updates - self.progress.last_target_sync_update >= interval
        return self.progress.episodes - self.progress.last_target_sync_episode >= interval

    def prepare_batch(self, batch: Any) -> Any:
        """Learners with reward scaling or standardisation see the transformed rewards (ReplayLearnerConfig)."""
        rewards = getattr(self, "rewards", None)
        return rewards(batch) if rewards is not None else batch

    def check_divergence(self, total: torch.Tensor, losses: dict[str, torch.Tensor]) -> None:
        """Raise DivergedUpdate when the summed loss or a `finite_checks` diagnostic is NaN, infinite or, with a
        divergence bound, not below it in absolute value.

        One host sync per update, as the finite check alone needed: the bound is folded into the same test
        (`|x| < bound` is False for NaN and for inf). The values are read back only when the test fails.
        """
        checks = [key for key in self.finite_checks if key in losses]
        values = torch.stack([total.detach(), *(losses[key].detach().to(total.dtype) for key in checks)])
        bound = self.divergence_bound
        healthy = values.abs() < bound if bound is not None else torch.isfinite(values)
        if bool(healthy.all()):
            return
        named = {TOTAL_LOSS: total, **{k: losses[k] for k in self.objective if k in losses}}
        named.update({key: losses[key] for key in checks})
        read = {key: float(value.detach().float().mean()) for key, value in named.items()}
        offending = [
            key
            for key, value in read.items()
            if not math.isfinite(value) or (bound is not None and abs(value) >= bound)
        ]
        raise DivergedUpdate(offending or list(read), read, bound)

    def update(self, batch: Any, optimizers: list[Any], backward: Any = None) -> dict[str, torch.Tensor]:
        """One gradient step on `batch`; returns the losses and diagnostics to log.

        `backward` is the loop's (Lightning's `manual_backward`); plain `Tensor.backward` without
        one. Each optimizer clips the gradient norm over its own parameters, or with `grad_clip_mode=global` one
        clip scales every gradient by the same factor when their joint norm exceeds `grad_norm_clip`.
        """
        losses = self.compute_losses(self.prepare_batch(batch))
        terms = [losses[key] for key in self.objective if key in losses]
        total = torch.stack(terms).sum()
        self.check_divergence(total, losses)
        for opt in optimizers:
            opt.zero_grad()
        (backward or torch.Tensor.backward)(total)
        if GradClipMode(self.cfg.grad_clip_mode) is GradClipMode["global"]:
            params = [p for opt in optimizers for param_group in opt.param_groups for p in param_group["params"]]
            losses["train/grad_norm"] = nn.utils.clip_grad_norm_(params, self.cfg.grad_norm_clip, foreach=True)
        else:
            names = getattr(self, "_group_names", None) or [group.name for group in self.optimizer_groups()]
            for name, opt in zip(names, optimizers, strict=True):
                params = [p for param_group in opt.param_groups for p in param_group["params"]]
                losses[f"train/grad_norm_{name}"] = nn.utils.clip_grad_norm_(
                    params, self.cfg.grad_norm_clip, foreach=True
                )
        self.before_step(optimizers)
        for opt in optimizers:
            opt.step()
        self.progress.updates += 1
        if self.targets_due():
            self.sync_targets()
            self.progress.last_target_sync_episode = self.progress.episodes
            self.progress.last_target_sync_update = self.progress.updates
        return losses
