"""One LightningModule for every value-factorisation learner (IQL, VDN, QMIX, Soft-QMIX and ablations).

The variant is chosen by the switches of AlgoConfig (ALGORITHM.md §8), never by editing
this file. Two optimizers with manual optimization: the critic (agent net, g, mixer) on
the TD loss, the policy transform f on the MSE policy loss whose inputs are detached.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from softqmix.algos.action_selection import (
    LinearSchedule,
    greedy_actions,
    sample_softmax,
)
from softqmix.algos.behaviour import BehaviourPolicy
from softqmix.algos.learner_base import EnvLearner, RunSchedule, typed_config
from softqmix.algos.targets import soft_td_lambda_targets, td_lambda_targets
from softqmix.config import AlgoConfig, Behaviour, Collection, Mixer
from softqmix.data.buffer import EpisodeBatch
from softqmix.data.collector import EpisodeCollector
from softqmix.data.collector_process import CollectorProcess
from softqmix.envs.base import EnvInfo
from softqmix.errors import ConfigError
from softqmix.nets.agent import RNNAgent, agent_input_dim
from softqmix.nets.mixers import make_mixer
from softqmix.nets.transforms import AffineF, IdentityTransform, MonotoneG


def validate_algo(cfg: AlgoConfig, env_info: EnvInfo | None = None) -> None:
    """Reject switch combinations that have no meaning, with the fix in the message."""
    if cfg.mixer is Mixer.none and (cfg.use_f or cfg.weighted_td or cfg.use_g):
        raise ConfigError(
            "algo.mixer=none (independent learners) cannot use use_f, use_g or weighted_td: "
            "they act on a joint value; choose algo.mixer=sum or qmix"
        )
    if cfg.alpha <= 0 and (cfg.soft_target or cfg.behaviour is Behaviour.softmax):
        raise ConfigError(f"algo.alpha must be > 0 for a soft target or a softmax behaviour, got {cfg.alpha}")
    if cfg.behaviour_alpha is not None and cfg.behaviour_alpha <= 0:
        raise ConfigError(f"algo.behaviour_alpha must be > 0 or null, got {cfg.behaviour_alpha}")
    if not 0.0 <= cfg.td_lambda <= 1.0 or not 0.0 <= cfg.gamma <= 1.0:
        raise ConfigError(f"algo.td_lambda and algo.gamma must lie in [0, 1], got {cfg.td_lambda}, {cfg.gamma}")
    if cfg.batch_size > cfg.buffer_size:
        raise ConfigError(f"algo.batch_size ({cfg.batch_size}) exceeds algo.buffer_size ({cfg.buffer_size})")
    needs_state = [
        name for name, on in (("mixer=qmix", cfg.mixer is Mixer.qmix), ("use_g", cfg.use_g), ("use_f", cfg.use_f)) if on
    ]
    if env_info is not None and env_info.state_dim == 0 and needs_state:
        raise ConfigError(
            f"algo {', '.join(needs_state)} needs a global state but this env has none (state_dim=0); "
            "use algo=vdn or algo=iql, or an env that provides a state"
        )


def _per_agent_time_major(x: torch.Tensor, n: int) -> torch.Tensor:
    """[B, T] -> [B*n, T] repeating each episode for each agent (independent learners)."""
    return x.unsqueeze(1).expand(-1, n, -1).reshape(-1, x.shape[-1])


class ValueFactorisation(EnvLearner):
    """Learner + actor for one value-factorisation algorithm."""

    divergence_hint = "lower algo.critic_lr / algo.policy_lr or algo.alpha, or check the env's rewards"

    def __init__(
        self,
        algo: AlgoConfig | DictConfig | dict[str, Any],
        env_info: EnvInfo | dict[str, int],
        obs_last_action: bool,
        schedule: RunSchedule | dict[str, int],
    ) -> None:
        super().__init__(env_info, schedule)
        self.cfg = typed_config(AlgoConfig, algo)
        validate_algo(self.cfg, self.env_info)
        self.obs_last_action = obs_last_action
        self.save_run_hyperparameters(self.cfg, obs_last_action)
        self.automatic_optimization = False

        cfg, info = self.cfg, self.env_info
        n, s = info.n_agents, info.state_dim
        in_dim = agent_input_dim(info.obs_dim, n, info.n_actions, obs_last_action, cfg.obs_agent_id)
        self.agent = RNNAgent(in_dim, cfg.rnn_hidden_dim, info.n_actions)
        self.g: nn.Module = (
            MonotoneG(n, s, cfg.g_hidden, cfg.hypernet_embed, cfg.g_residual, cfg.nonneg)
            if cfg.use_g
            else IdentityTransform()
        )
        self.f: nn.Module = AffineF(n, s, cfg.hypernet_embed, cfg.nonneg) if cfg.use_f else IdentityTransform()
        self.mixer = make_mixer(cfg.mixer, n, s, cfg.mixing_embed_dim, cfg.hypernet_embed, cfg.nonneg)
        self.target_agent = copy.deepcopy(self.agent).requires_grad_(False)
        self.target_g = copy.deepcopy(self.g).requires_grad_(False)
        self.target_mixer = copy.deepcopy(self.mixer).requires_grad_(False)

        self.behaviour = BehaviourPolicy(
            self.agent,
            self.g,
            self.f,
            cfg,
            obs_last_action,
            info.n_actions,
            n,
            lambda: self.epsilon(self.progress.t_env),
        )
        self._collection_actor: BehaviourPolicy | None = None  # set when collection overlaps learning
        self.epsilon = LinearSchedule(cfg.epsilon_start, cfg.epsilon_finish, cfg.epsilon_anneal_time)

    # ------------------------------------------------------------------ acting
    def _inputs(self, obs: torch.Tensor, last_actions: torch.Tensor) -> torch.Tensor:
        return self.behaviour.inputs(obs, last_actions)

    def policy_logits(self, q: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Training-policy logits f(g(Q_i; s); s) / alpha for each agent and action."""
        return self.behaviour.logits(q, state)

    # ------------------------------------------------------------------ data
    def attach_envs(
        self,
        train: EpisodeCollector,
        test: EpisodeCollector | None = None,
        collection: Collection = Collection.serial,
        collection_seed: int = 0,
    ) -> None:
        """Give the module its envs; kept out of __init__ so checkpoints load without envs.

        With collection `thread` or `process`, training episodes are collected while the learner
        trains, by a copy of the acting nets with its own RNG (seeded with `collection_seed`);
        `test` must then be a separate collector. The process is forked here, before the replay
        buffer is allocated, so the child does not share (and later duplicate) its pages.
        """
        collection = Collection(collection)
        if collection is not Collection.serial:
            if test is None or test is train:
                raise ValueError("overlapping collection needs a separate test collector")
            actor = self.behaviour.detached_copy(collection_seed)
            if collection is Collection.process:
                actor.share_memory()
                train = CollectorProcess(train, actor, self.progress)  # type: ignore[assignment]
            self._collection_actor = actor
        super().attach_envs(train, test)  # allocates the replay buffer, after the fork

    @property
    def replay_capacity(self) -> int:
        return self.cfg.buffer_size

    def _sync_collection_actor(self) -> None:
        if self._collection_actor is not None:
            self._collection_actor.refresh_from(self.behaviour)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self.replay_stream(
            self.behaviour,
            self.cfg.batch_size,
            self.cfg.updates_per_collect,
            collection_actor=self._collection_actor,
            sync_collection_actor=self._sync_collection_actor,
        )

    # ------------------------------------------------------------------ learning
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        critic_params = [*self.agent.parameters(), *self.g.parameters(), *self.mixer.parameters()]
        opts = [torch.optim.Adam(critic_params, lr=self.cfg.critic_lr, eps=self.cfg.adam_eps)]
        if self.cfg.use_f:
            opts.append(torch.optim.Adam(self.f.parameters(), lr=self.cfg.policy_lr, eps=self.cfg.adam_eps))
        return opts

    def _agent_inputs(self, batch: EpisodeBatch) -> torch.Tensor:
        """Agent-net inputs for every step of the batch, shared by the online and target unrolls."""
        first = torch.full_like(batch.actions[:, :1], -1)
        last_actions = torch.cat([first, batch.actions], dim=1)
        return self._inputs(batch.obs, last_actions)

    def compute_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        """All losses and diagnostics of one update; pure given the batch and the RNG."""
        cfg = self.cfg
        mask = batch.filled.clone()
        mask[:, 1:] = mask[:, 1:] * (1 - batch.terminated[:, :-1])
        state, avail = batch.state, batch.avail

        inputs = self._agent_inputs(batch)
        q = self.agent.unroll(inputs)  # [B, T+1, n, A]
        g_all = self.g(q, state)
        g_taken = g_all[:, :-1].gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)  # [B, T, n]
        q_tot = self.mixer(g_taken, state[:, :-1])  # [B, T] or [B, T, n]

        with torch.no_grad():
            target_g = self.target_g(self.target_agent.unroll(inputs), state)
            if cfg.soft_target:
                logits = self.f(g_all.detach(), state) / cfg.alpha
                next_actions, log_probs = sample_softmax(logits, avail)
                neg_logp = -log_probs.gather(-1, next_actions.unsqueeze(-1)).squeeze(-1)  # [B, T+1, n]
            else:
                chooser = g_all.detach() if cfg.double_q else target_g
                next_actions = greedy_actions(chooser, avail)
                neg_logp = torch.zeros_like(next_actions, dtype=q.dtype)
            target_tot = self.target_mixer(target_g.gather(-1, next_actions.unsqueeze(-1)).squeeze(-1), state)
            targets, entropy = self._targets(batch, mask, target_tot, neg_logp)

        td_error = q_tot - targets
        loss_mask = mask if cfg.mixer is not Mixer.none else mask.unsqueeze(-1).expand_as(td_error)
        out: dict[str, torch.Tensor] = {}
        weights = loss_mask
        if cfg.use_f or cfg.weighted_td:
            f_sum = self.f(g_taken.detach().unsqueeze(-1), state[:, :-1]).squeeze(-1).sum(-1)
            policy_error = q_tot.detach() - f_sum
            if cfg.use_f:
                out["loss/policy"] = (0.5 * policy_error.pow(2) * mask).sum() / mask.sum()
            if cfg.weighted_td:
                disagree = (policy_error > 0) == (td_error.detach() < 0)
                weights = loss_mask * torch.where(disagree, 0.5, 1.0)
                out["train/td_weight_mean"] = (weights.sum() / loss_mask.sum()).detach()
        out["loss/td"] = (0.5 * td_error.pow(2) * weights).sum() / weights.sum()
        out["loss/td_unweighted"] = ((0.5 * td_error.pow(2) * loss_mask).sum() / loss_mask.sum()).detach()
        valid = loss_mask.sum()
        out["train/q_taken_mean"] = ((q_tot * loss_mask).sum() / valid).detach()
        out["train/target_mean"] = ((targets * loss_mask).sum() / valid).detach()
        out["train/entropy"] = ((entropy[:, :-1] * mask).sum() / mask.sum()).detach()
        return out

    def _targets(
        self, batch: EpisodeBatch, mask: torch.Tensor, target_tot: torch.Tensor, neg_logp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """TD(lambda) targets for a joint value [B, T] or for each agent [B, T, n]."""
        cfg, n = self.cfg, self.env_info.n_agents
        reward, terminated = batch.reward, batch.terminated
        if cfg.mixer is Mixer.none:
            b = reward.shape[0]
            flat = lambda x: x.permute(0, 2, 1).reshape(b * n, -1)  # noqa: E731
            reward, terminated, mask = (_per_agent_time_major(x, n) for x in (reward, terminated, mask))
            target_tot, entropy = flat(target_tot), flat(neg_logp)
        else:
            entropy = neg_logp.sum(-1)  # single-sample joint entropy estimate
        if cfg.soft_target:
            y = soft_td_lambda_targets(
                reward,
                terminated,
                mask,
                target_tot,
                entropy,
                cfg.gamma,
                cfg.td_lambda,
                cfg.alpha,
                cfg.mask_entropy_after_termination,
            )
        else:
            y = td_lambda_targets(reward, terminated, mask, target_tot, cfg.gamma, cfg.td_lambda)
        if cfg.mixer is Mixer.none:
            y = y.reshape(batch.reward.shape[0], n, -1).permute(0, 2, 1)
            entropy = entropy.reshape(batch.reward.shape[0], n, -1).permute(0, 2, 1).sum(-1)
        return y, entropy

    def training_step(self, dataloader_iter: Iterator[tuple[EpisodeBatch, int, int]]) -> None:
        # Taking the iterator (Lightning's documented pattern) turns off its one-batch prefetch:
        # each update runs right after the collection that produced its batch, as in pymarl, and a
        # checkpoint taken after an update holds no half-consumed collection.
        batch, _, _ = next(dataloader_iter)  # StopIteration at t_max ends the epoch
        started = time.perf_counter()
        batch = batch.to(self.device)
        losses = self.compute_losses(batch)
        total = losses["loss/td"] + losses.get("loss/policy", torch.zeros((), device=self.device))
        if not torch.isfinite(total + losses["train/q_taken_mean"]):
            self.raise_diverged(losses)
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        for opt in optimizers:
            opt.zero_grad()
        # The two losses touch disjoint parameters (f's inputs are detached), so one backward
        # pass serves both optimizers.
        self.manual_backward(total)
        critic_params = [p for group in optimizers[0].param_groups for p in group["params"]]
        losses["train/grad_norm_critic"] = torch.nn.utils.clip_grad_norm_(critic_params, self.cfg.grad_norm_clip)
        if len(optimizers) > 1:
            policy_params = [p for group in optimizers[1].param_groups for p in group["params"]]
            losses["train/grad_norm_policy"] = torch.nn.utils.clip_grad_norm_(policy_params, self.cfg.grad_norm_clip)
        for opt in optimizers:
            opt.step()
        self.progress.updates += 1
        self.timing.update_seconds += time.perf_counter() - started
        self.timing.updates += 1
        if self.progress.episodes - self.progress.last_target_sync_episode >= self.cfg.target_update_interval:
            self.sync_targets()
            self.progress.last_target_sync_episode = self.progress.episodes
        self.record_update(losses)

    def sync_targets(self) -> None:
        """Hard copy, every target_update_interval episodes (ALGORITHM.md §2.5)."""
        self.target_agent.load_state_dict(self.agent.state_dict())
        self.target_g.load_state_dict(self.g.state_dict())
        self.target_mixer.load_state_dict(self.mixer.state_dict())

    # ------------------------------------------------------------------ metrics
    @property
    def actor(self) -> BehaviourPolicy:
        return self.behaviour

    def extra_train_metrics(self) -> dict[str, float]:
        row = {"train/alpha": float(self.cfg.alpha) if self.cfg.soft_target else 0.0}
        if self.cfg.behaviour is Behaviour.eps_greedy:
            row["train/epsilon"] = self.epsilon(self.progress.t_env)
        return row
