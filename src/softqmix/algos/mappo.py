"""MAPPO (Yu et al., 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games").

A recurrent actor shared by all agents (agent id in the input) and a centralised value V(s) on
the global state, trained with PPO's clipped objective on GAE advantages. As in the MAPPO code:
value normalisation (ValueNorm), advantage normalisation, a clipped Huber value loss, recurrent
data chunks (the actor is trained on `chunk_length`-step pieces started from the hidden states it
had while collecting), linear learning-rate decay, and masks on unavailable actions everywhere.

Differences from the MAPPO code, kept on purpose: rollouts are whole episodes
(`rollout_episodes` of them, not a fixed number of steps per env), the value net is a 2-layer MLP
on the state shared by the agents (the team reward makes one value per step enough), and the
schedule runs in env steps like every other learner here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from softqmix.algos.action_selection import masked_logits
from softqmix.algos.learner_base import EnvLearner, RunSchedule, typed_config
from softqmix.algos.policy_actor import PolicyActor
from softqmix.algos.ppo_math import (
    ValueNorm,
    chunk_starts,
    clipped_policy_loss,
    clipped_value_loss,
    gae_advantages,
)
from softqmix.config import MAPPOConfig
from softqmix.data.buffer import EpisodeBatch
from softqmix.data.rollout import Minibatch, RolloutStream
from softqmix.envs.base import EnvInfo
from softqmix.errors import ConfigError
from softqmix.nets.agent import RNNAgent, agent_input_dim


@dataclass
class PreparedRollout:
    """A rollout with everything the PPO epochs need from the policy that collected it."""

    batch: EpisodeBatch
    inputs: torch.Tensor  # agent inputs [B, T+1, n, d]
    old_log_probs: torch.Tensor  # [B, T, n]
    advantages: torch.Tensor  # [B, T, n], normalised if use_adv_norm
    returns: torch.Tensor  # value targets [B, T], in the normalised space if use_valuenorm
    old_values: torch.Tensor  # the critic's outputs at collection time [B, T]
    chunk_hidden: torch.Tensor  # actor hidden state before each chunk [B, C, n, H]


class MAPPO(EnvLearner):
    """On-policy multi-agent PPO with a centralised value function."""

    divergence_hint = "lower algo.actor_lr / algo.critic_lr, or check the env's rewards"

    def __init__(
        self,
        algo: MAPPOConfig | DictConfig | dict[str, Any],
        env_info: EnvInfo | dict[str, Any],
        obs_last_action: bool,
        schedule: RunSchedule | dict[str, int],
    ) -> None:
        super().__init__(env_info, schedule)
        self.cfg = cfg = typed_config(MAPPOConfig, algo)
        info = self.env_info
        if cfg.ppo_epochs < 1 or cfg.num_mini_batch < 1 or cfg.rollout_episodes < cfg.num_mini_batch:
            raise ConfigError(
                "algo.ppo_epochs and algo.num_mini_batch must be >= 1 and algo.rollout_episodes >= num_mini_batch, "
                f"got {cfg.ppo_epochs}, {cfg.num_mini_batch}, {cfg.rollout_episodes}"
            )
        if info.state_dim == 0:
            raise ConfigError("MAPPO's centralised value needs a global state, and this env has none (state_dim=0)")
        self.obs_last_action = obs_last_action
        self.save_run_hyperparameters(cfg, obs_last_action)
        self.automatic_optimization = False
        in_dim = agent_input_dim(info.obs_dim, info.n_agents, info.n_actions, obs_last_action, cfg.obs_agent_id)
        self.policy = RNNAgent(in_dim, cfg.rnn_hidden_dim, info.n_actions)
        h = cfg.critic_hidden_dim
        self.value = nn.Sequential(nn.Linear(info.state_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1))
        self.value_norm = ValueNorm()
        self._actor = PolicyActor(self.policy, obs_last_action, cfg.obs_agent_id, info.n_actions, info.n_agents)

    @property
    def actor(self) -> PolicyActor:
        return self._actor

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        if self.train_collector is None:
            raise RuntimeError("call attach_envs(...) before fitting")
        stream = RolloutStream(
            collector=self.train_collector,
            actor=self.actor,
            progress=self.progress,
            rollout_episodes=self.cfg.rollout_episodes,
            epochs=self.cfg.ppo_epochs,
            num_mini_batch=self.cfg.num_mini_batch,
            t_max=self.schedule.t_max,
            prepare=self.prepare_rollout,
            on_collect=self._pending_train_stats.append,
            on_start=self.restore_resumed_state,
            should_stop=lambda: self.stop_signal is not None,
            timing=self.timing,
        )
        return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=0)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        cfg = self.cfg
        return [
            torch.optim.Adam(self.policy.parameters(), lr=cfg.actor_lr, eps=cfg.adam_eps),
            torch.optim.Adam(self.value.parameters(), lr=cfg.critic_lr, eps=cfg.adam_eps),
        ]

    # ------------------------------------------------------------------ rollout preparation
    def _inputs(self, batch: EpisodeBatch) -> torch.Tensor:
        first = torch.full_like(batch.actions[:, :1], -1)
        return self.actor.inputs(batch.obs, torch.cat([first, batch.actions], dim=1))

    def _log_probs(self, logits: torch.Tensor, batch: EpisodeBatch, rows: torch.Tensor | None = None):
        avail = batch.avail[:, :-1] if rows is None else batch.avail[rows, :-1]
        actions = batch.actions if rows is None else batch.actions[rows]
        log_probs = torch.log_softmax(masked_logits(logits, avail), dim=-1)
        taken = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs.clamp(min=-1e4)).sum(-1)
        return taken, entropy

    @torch.no_grad()
    def prepare_rollout(self, batch: EpisodeBatch) -> PreparedRollout:
        cfg = self.cfg
        batch = batch.to(self.device)
        inputs = self._inputs(batch)
        logits, hidden = self.policy.unroll_with_hidden(inputs)
        old_log_probs, _ = self._log_probs(logits[:, :-1], batch)
        values = self.value(batch.state).squeeze(-1)  # [B, T+1]
        raw_values = self.value_norm.denormalize(values) if cfg.use_valuenorm else values
        advantages, returns = gae_advantages(
            batch.reward, raw_values, batch.terminated, batch.filled, cfg.gamma, cfg.gae_lambda
        )
        if cfg.use_valuenorm:
            self.value_norm.update(returns, batch.filled)
            returns = self.value_norm.normalize(returns)
        n = self.env_info.n_agents
        advantages = advantages.unsqueeze(-1).expand(-1, -1, n)
        mask = batch.filled.unsqueeze(-1).expand(-1, -1, n)
        if cfg.use_adv_norm:
            count = mask.sum().clamp(min=1.0)
            mean = (advantages * mask).sum() / count
            std = (((advantages - mean) ** 2 * mask).sum() / count).sqrt()
            advantages = (advantages - mean) / (std + 1e-5) * mask
        starts = chunk_starts(batch.max_t, cfg.chunk_length)
        zeros = torch.zeros_like(hidden[:, :1])
        before = torch.cat([zeros, hidden[:, :-1]], dim=1)  # hidden state entering each step
        return PreparedRollout(
            batch=batch,
            inputs=inputs,
            old_log_probs=old_log_probs,
            advantages=advantages,
            returns=returns,
            old_values=values[:, :-1],
            chunk_hidden=before[:, starts],
        )

    def _chunked_logits(self, rollout: PreparedRollout, rows: torch.Tensor) -> torch.Tensor:
        """Policy logits [b, T, n, A] recomputed chunk by chunk from the collection-time hidden states."""
        length = self.cfg.chunk_length
        inputs = rollout.inputs[rows, :-1]  # [b, T, n, d]
        b, t, n, d = inputs.shape
        chunks = rollout.chunk_hidden.shape[1]
        padded = F.pad(inputs, (0, 0, 0, 0, 0, chunks * length - t))
        seqs = padded.view(b, chunks, length, n, d).permute(0, 1, 3, 2, 4).reshape(-1, length, d)
        hidden = rollout.chunk_hidden[rows].reshape(-1, rollout.chunk_hidden.shape[-1])
        out = self.policy.unroll_sequences(seqs, hidden)  # [b*C*n, L, A]
        out = out.view(b, chunks, n, length, -1).permute(0, 1, 3, 2, 4).reshape(b, chunks * length, n, -1)
        return out[:, :t]

    # ------------------------------------------------------------------ learning
    def compute_losses(self, rollout: PreparedRollout, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, batch = self.cfg, rollout.batch
        filled = batch.filled[rows]
        mask = filled.unsqueeze(-1).expand(-1, -1, self.env_info.n_agents)
        log_probs, entropy = self._log_probs(self._chunked_logits(rollout, rows), batch, rows)
        policy_loss, stats = clipped_policy_loss(
            log_probs, rollout.old_log_probs[rows], rollout.advantages[rows], mask, cfg.clip
        )
        entropy_mean = (entropy * mask).sum() / mask.sum().clamp(min=1.0)
        values = self.value(batch.state[rows, :-1]).squeeze(-1)
        value_loss = clipped_value_loss(
            values, rollout.old_values[rows], rollout.returns[rows], filled, cfg.clip, cfg.huber_delta
        )
        return {
            "loss/policy": policy_loss - cfg.entropy_coef * entropy_mean,
            "loss/value": cfg.value_loss_coef * value_loss,
            "train/entropy": entropy_mean.detach(),
            **stats,
        }

    def _set_learning_rates(self, optimizers: list[torch.optim.Optimizer]) -> None:
        if not self.cfg.linear_lr_decay:
            return
        remaining = max(0.0, 1.0 - self.progress.t_env / max(self.schedule.t_max, 1))
        for opt, base in zip(optimizers, (self.cfg.actor_lr, self.cfg.critic_lr), strict=True):
            for group in opt.param_groups:
                group["lr"] = base * remaining

    def training_step(self, dataloader_iter: Iterator[tuple[Minibatch, int, int]]) -> None:
        minibatch, _, _ = next(dataloader_iter)
        started = time.perf_counter()
        rows = minibatch.rows.to(self.device)
        losses = self.compute_losses(minibatch.rollout, rows)
        total = losses["loss/policy"] + losses["loss/value"]
        if not torch.isfinite(total):
            self.raise_diverged(losses)
        optimizers = self.optimizers()
        assert isinstance(optimizers, list)
        self._set_learning_rates(optimizers)
        for opt in optimizers:
            opt.zero_grad()
        self.manual_backward(total)  # the two losses touch disjoint parameters
        losses["train/grad_norm_policy"] = nn.utils.clip_grad_norm_(self.policy.parameters(), self.cfg.grad_norm_clip)
        losses["train/grad_norm_value"] = nn.utils.clip_grad_norm_(self.value.parameters(), self.cfg.grad_norm_clip)
        for opt in optimizers:
            opt.step()
        self.progress.updates += 1
        self.timing.update_seconds += time.perf_counter() - started
        self.timing.updates += 1
        self.record_update(losses)

    def extra_train_metrics(self) -> dict[str, float]:
        if self._trainer is None:
            return {}
        optimizers = self.optimizers()
        assert isinstance(optimizers, list)
        return {"train/lr_actor": float(optimizers[0].param_groups[0]["lr"])}
