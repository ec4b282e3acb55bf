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

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from softqmix.algos.action_selection import masked_logits
from softqmix.algos.learner import Learner, LearnerConfig, OptimizerGroup
from softqmix.algos.policy_actor import PolicyActor
from softqmix.algos.ppo_math import (
    ValueNorm,
    chunk_starts,
    clipped_policy_loss,
    clipped_value_loss,
    gae_advantages,
)
from softqmix.algos.registry import AlgorithmSpec, register_algorithm
from softqmix.data.buffer import EpisodeBatch
from softqmix.data.rollout import Minibatch, epoch_minibatches
from softqmix.envs.base import EnvInfo
from softqmix.errors import ConfigError
from softqmix.nets.agent import agent_input_dim, make_agent_net
from softqmix.progress import TrainingProgress


@dataclass
class MAPPOConfig(LearnerConfig):
    """MAPPO with the paper's baseline settings (its Appendix J) and the MAPPO code's defaults."""

    name: str = "mappo"
    actor_lr: float = 5e-4
    adam_eps: float = 1e-5
    linear_lr_decay: bool = True  # both learning rates fall linearly to 0 at the run's t_max
    gae_lambda: float = 0.95
    clip: float = 0.2  # PPO ratio clip, also the value clip
    ppo_epochs: int = 5
    num_mini_batch: int = 1
    chunk_length: int = 8  # recurrent policy trained on chunks of this many steps
    rollout_episodes: int = 8  # episodes per on-policy rollout (the paper's 8 envs)
    entropy_coef: float = 0.01
    value_loss_coef: float = 1.0
    huber_delta: float | None = 10.0  # null: squared error
    use_valuenorm: bool = True
    use_adv_norm: bool = True
    critic_hidden_dim: int = 64


def validate_mappo(cfg: MAPPOConfig) -> None:
    """Out-of-range values (softqmix.config.VALUE_RULES), then settings that contradict each other."""
    from softqmix.config import check_learner_ranges

    check_learner_ranges(cfg)
    if cfg.rollout_episodes < cfg.num_mini_batch:
        raise ConfigError(
            f"algo.rollout_episodes ({cfg.rollout_episodes}) must be >= algo.num_mini_batch ({cfg.num_mini_batch})"
        )


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


class MAPPO(Learner):
    """On-policy multi-agent PPO with a centralised value function."""

    objective = ("loss/policy", "loss/value")
    divergence_hint = "lower algo.actor_lr / algo.critic_lr, or check the env's rewards"

    def __init__(
        self, cfg: MAPPOConfig, env_info: EnvInfo, obs_last_action: bool, progress: TrainingProgress, t_max: int = 0
    ) -> None:
        super().__init__(cfg, env_info, obs_last_action, progress, t_max)
        validate_mappo(cfg)
        info = env_info
        in_dim = agent_input_dim(info.obs_dim, info.n_agents, info.n_actions, obs_last_action, cfg.obs_agent_id)
        self.policy = make_agent_net(cfg.agent, in_dim, cfg.rnn_hidden_dim, info.n_actions)
        h = cfg.critic_hidden_dim
        self.value = nn.Sequential(nn.Linear(info.state_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1))
        self.value_norm = ValueNorm()
        self._actor = PolicyActor(self.policy, obs_last_action, cfg.obs_agent_id, info.n_actions, info.n_agents)

    @property
    def actor(self) -> PolicyActor:
        return self._actor

    @property
    def rollout_episodes(self) -> int:
        return self.cfg.rollout_episodes

    def optimizer_groups(self) -> list[OptimizerGroup]:
        return [
            OptimizerGroup("policy", list(self.policy.parameters()), self.cfg.actor_lr),
            OptimizerGroup("value", list(self.value.parameters()), self.cfg.critic_lr),
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
        batch = batch.to(next(self.parameters()).device)
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

    def minibatches(self, rollout: PreparedRollout) -> Iterator[Minibatch]:
        cfg = self.cfg
        return epoch_minibatches(rollout, rollout.batch.batch_size, cfg.ppo_epochs, cfg.num_mini_batch)

    def _chunked_logits(self, rollout: PreparedRollout, rows: torch.Tensor, skip_unplayed: bool = True) -> torch.Tensor:
        """Policy logits [b, T, n, A] recomputed chunk by chunk from the collection-time hidden states.

        Only chunks that start inside their episode are unrolled; the others hold padding alone (a rollout is
        padded to its longest episode: with SMAX battles of ~60 steps and a 200-step limit, most of it), and
        their entries are zeros, which compute_losses never uses.
        """
        length = self.cfg.chunk_length
        inputs = rollout.inputs[rows, :-1]  # [b, T, n, d]
        b, t, n, d = inputs.shape
        chunks = rollout.chunk_hidden.shape[1]
        padded = F.pad(inputs, (0, 0, 0, 0, 0, chunks * length - t))
        seqs = padded.view(b, chunks, length, n, d).permute(0, 1, 3, 2, 4).reshape(-1, length, d)
        hidden = rollout.chunk_hidden[rows].reshape(-1, rollout.chunk_hidden.shape[-1])
        live = rollout.batch.filled[rows][:, ::length] > 0  # [b, C]: the chunk's first step was played
        live = live.unsqueeze(-1).expand(b, chunks, n).reshape(-1) | (not skip_unplayed)
        out = seqs.new_zeros(b * chunks * n, length, self.env_info.n_actions)
        out[live] = self.policy.unroll_sequences(seqs[live], hidden[live])  # [b*C*n, L, A]
        out = out.view(b, chunks, n, length, -1).permute(0, 1, 3, 2, 4).reshape(b, chunks * length, n, -1)
        return out[:, :t]

    # ------------------------------------------------------------------ learning
    def compute_losses(self, minibatch: Minibatch) -> dict[str, torch.Tensor]:
        cfg, rollout, rows = self.cfg, minibatch.rollout, minibatch.rows
        batch = rollout.batch
        filled = batch.filled[rows]
        mask = filled.unsqueeze(-1).expand(-1, -1, self.env_info.n_agents)
        log_probs, entropy = self._log_probs(self._chunked_logits(rollout, rows), batch, rows)
        old_log_probs = rollout.old_log_probs[rows]
        # unplayed steps: a ratio of exactly 1 (they are masked out, and must stay finite whatever their logits)
        log_probs = torch.where(mask > 0, log_probs, old_log_probs)
        policy_loss, stats = clipped_policy_loss(log_probs, old_log_probs, rollout.advantages[rows], mask, cfg.clip)
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

    def before_step(self, optimizers: list[Any]) -> None:
        """Linear decay of both learning rates to 0 at t_max (the MAPPO code's `use_linear_lr_decay`)."""
        if not self.cfg.linear_lr_decay:
            return
        remaining = max(0.0, 1.0 - self.progress.t_env / max(self.t_max, 1))
        for opt, base in zip(optimizers, (self.cfg.actor_lr, self.cfg.critic_lr), strict=True):
            for group in opt.param_groups:
                group["lr"] = base * remaining

    def train_metrics(self) -> dict[str, float]:
        remaining = max(0.0, 1.0 - self.progress.t_env / max(self.t_max, 1))
        return {"train/lr_actor": self.cfg.actor_lr * (remaining if self.cfg.linear_lr_decay else 1.0)}


register_algorithm(
    AlgorithmSpec(
        name="mappo",
        learner=MAPPO,
        config=MAPPOConfig,
        summary="MAPPO: recurrent shared actor, centralised V(s), PPO clip, GAE, ValueNorm, recurrent chunks",
        on_policy=True,
        needs_state=lambda cfg: True,
        validate=validate_mappo,
    )
)
