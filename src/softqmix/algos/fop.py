"""FOP (Zhang et al., ICML 2021): factorised max-entropy policies with a λ-weighted joint soft value.

The maths and every choice below are in docs/algorithms/fop.md, which follows the authors' public
code: a recurrent actor shared by the agents (softmax policy), twin per-agent soft Q critics on
observation + agent id, twin FOPMixers, a temperature α annealed from 0.5 to 0.05, the actor trained
towards exp(Q_i/α) (discrete SAC), targets from next actions sampled from the current policy, hard
target copies every 200 episodes, RMSprop, a 100-episode burn-in.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn

from softqmix.algos.action_selection import LinearSchedule, ScheduleAtProgress, masked_logits
from softqmix.algos.learner import Learner, Optimizer, OptimizerGroup, ReplayLearnerConfig, check_update_pacing
from softqmix.algos.policy_actor import PolicyActor
from softqmix.algos.registry import AlgorithmSpec, register_algorithm
from softqmix.algos.targets import soft_td_lambda_targets, td_lambda_targets
from softqmix.data.buffer import EpisodeBatch
from softqmix.envs.base import EnvInfo
from softqmix.errors import ConfigError
from softqmix.nets.agent import agent_input_dim, build_agent_inputs, make_agent_net
from softqmix.nets.fop_mixer import FOPMixer
from softqmix.progress import TrainingProgress


class FOPTarget(str, Enum):
    code = "code"  # the authors' code: hard TD(lambda) on Q_tot, then - alpha * mean_i log pi_i(a'_{t+1}) once
    soft_td_lambda = "soft_td_lambda"  # the soft target of the maths: entropy of the joint policy inside TD(lambda)


@dataclass
class FOPConfig(ReplayLearnerConfig):
    """FOP as in the authors' code (docs/algorithms/fop.md) with the paper's baseline settings (its Appendix J)."""

    name: str = "fop"
    actor_lr: float = 5e-4
    critic_lr: float = 5e-4
    optimizer: Optimizer = Optimizer.rmsprop
    td_lambda: float = 0.4  # the paper's Appendix J; the authors' FOP code uses 0.8
    target: FOPTarget = FOPTarget.code
    alpha_start: float = 0.5  # temperature, annealed linearly (the code: max(0.05, 0.5 - t/2e5))
    alpha_finish: float = 0.05
    alpha_anneal_time: int = 90_000  # env steps from alpha_start to alpha_finish
    epsilon_anneal_time: int = 50_000  # the exploration floor mixed into the sampled policy
    batch_size: int = 32
    burn_in_episodes: int = 100
    updates_per_collect: int = 4  # the code updates once per episode; 4 envs give 4 episodes per collection
    n_heads: int = 4  # lambda heads of the mixer
    mixing_embed_dim: int = 32  # hidden width of the mixer's V(s)
    critic_hidden_dim: int = 64
    twin_critics: bool = True  # two critics and mixers, the minimum in targets and the policy loss


def validate_fop(cfg: FOPConfig) -> None:
    """Out-of-range values (softqmix.config.VALUE_RULES), then settings that contradict each other."""
    from softqmix.config import check_learner_ranges

    check_learner_ranges(cfg)
    check_update_pacing(cfg)
    if cfg.batch_size > cfg.buffer_size:
        raise ConfigError(f"algo.batch_size ({cfg.batch_size}) exceeds algo.buffer_size ({cfg.buffer_size})")


class FOP(Learner):
    """FOP's actor, twin critics and mixers."""

    objective = ("loss/policy", "loss/critic1", "loss/critic2")
    finite_checks = ("train/q_taken_mean",)
    divergence_hint = "lower algo.actor_lr / algo.critic_lr, or check the env's rewards"

    def __init__(
        self, cfg: FOPConfig, env_info: EnvInfo, obs_last_action: bool, progress: TrainingProgress, t_max: int = 0
    ) -> None:
        super().__init__(cfg, env_info, obs_last_action, progress, t_max)
        validate_fop(cfg)
        info = env_info
        n, a = info.n_agents, info.n_actions
        self.policy = make_agent_net(
            cfg.agent, agent_input_dim(info.obs_dim, n, a, obs_last_action, cfg.obs_agent_id), cfg.rnn_hidden_dim, a
        )
        critic_in = info.obs_dim + (n if cfg.obs_agent_id else 0)
        n_critics = 2 if cfg.twin_critics else 1
        h = cfg.critic_hidden_dim
        self.critics = nn.ModuleList(
            nn.Sequential(nn.Linear(critic_in, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, a))
            for _ in range(n_critics)
        )
        self.mixers = nn.ModuleList(
            FOPMixer(n, a, info.state_dim, cfg.n_heads, cfg.mixing_embed_dim) for _ in range(n_critics)
        )
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.target_mixers = copy.deepcopy(self.mixers).requires_grad_(False)
        self.alpha = LinearSchedule(cfg.alpha_start, cfg.alpha_finish, cfg.alpha_anneal_time)
        self.epsilon = LinearSchedule(cfg.epsilon_start, cfg.epsilon_finish, cfg.epsilon_anneal_time)
        self._actor = PolicyActor(
            self.policy,
            obs_last_action,
            cfg.obs_agent_id,
            a,
            n,
            epsilon_at=ScheduleAtProgress(self.epsilon, self.progress),
        )

    @property
    def actor(self) -> PolicyActor:
        return self._actor

    def optimizer_groups(self) -> list[OptimizerGroup]:
        return [
            OptimizerGroup("policy", list(self.policy.parameters()), self.cfg.actor_lr),
            *(
                OptimizerGroup(f"critic{k}", [*critic.parameters(), *mixer.parameters()], self.cfg.critic_lr)
                for k, (critic, mixer) in enumerate(zip(self.critics, self.mixers, strict=True), start=1)
            ),
        ]

    # ------------------------------------------------------------------ learning
    def _critic_inputs(self, obs: torch.Tensor) -> torch.Tensor:
        return build_agent_inputs(obs, None, self.env_info.n_actions, self.cfg.obs_agent_id)

    def soft_values(self, q: torch.Tensor, alpha: float) -> torch.Tensor:
        """V_i = α log Σ_a exp(Q_i(a)/α), over all actions as in the authors' code."""
        return alpha * torch.logsumexp(q / alpha, dim=-1)

    def compute_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        cfg, n_actions = self.cfg, self.env_info.n_actions
        alpha = self.alpha(self.progress.t_env)
        mask = batch.filled.clone()
        mask[:, 1:] = mask[:, 1:] * (1 - batch.terminated[:, :-1])
        agent_mask = mask.unsqueeze(-1).expand(-1, -1, self.env_info.n_agents)
        first = torch.full_like(batch.actions[:, :1], -1)
        logits = self.policy.unroll(self.actor.inputs(batch.obs, torch.cat([first, batch.actions], dim=1)))
        log_pi = torch.log_softmax(masked_logits(logits, batch.avail), dim=-1)  # [B, T+1, n, A]
        pi = log_pi.exp()
        critic_in = self._critic_inputs(batch.obs)
        qs = [critic(critic_in) for critic in self.critics]  # each [B, T+1, n, A]

        # Actor: E_a~π [α log π − min_k Q_k] per agent (discrete SAC); the critics are held fixed.
        q_min = torch.stack(qs).min(0).values.detach()
        per_agent = (pi * (alpha * log_pi.clamp(min=-1e4) - q_min)).sum(-1)[:, :-1]
        out: dict[str, torch.Tensor] = {"loss/policy": (per_agent * agent_mask).sum() / agent_mask.sum()}

        with torch.no_grad():
            next_actions = torch.multinomial(pi.reshape(-1, n_actions), 1).view(pi.shape[:-1])  # a' ~ π
            log_pi_next = log_pi.gather(-1, next_actions.unsqueeze(-1)).squeeze(-1)  # [B, T+1, n]
            target_tots = []
            for critic, mixer in zip(self.target_critics, self.target_mixers, strict=True):
                q_bar = critic(critic_in)
                taken = q_bar.gather(-1, next_actions.unsqueeze(-1)).squeeze(-1)
                target_tots.append(mixer(taken, self.soft_values(q_bar, alpha), batch.state, next_actions, n_actions))
            target_tot = torch.stack(target_tots).min(0).values  # [B, T+1]
            if cfg.target is FOPTarget.code:
                y = td_lambda_targets(batch.reward, batch.terminated, mask, target_tot, cfg.gamma, cfg.td_lambda)
                y = y - alpha * log_pi_next[:, 1:].mean(-1) * mask
            else:
                entropy = -log_pi_next.sum(-1)
                y = soft_td_lambda_targets(
                    batch.reward, batch.terminated, mask, target_tot, entropy, cfg.gamma, cfg.td_lambda, alpha
                )

        for k, (q, mixer) in enumerate(zip(qs, self.mixers, strict=True), start=1):
            taken = q[:, :-1].gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
            values = self.soft_values(q[:, :-1], alpha)
            q_tot = mixer(taken, values, batch.state[:, :-1], batch.actions, n_actions)
            out[f"loss/critic{k}"] = (0.5 * (q_tot - y).pow(2) * mask).sum() / mask.sum()
            if k == 1:
                out["train/q_taken_mean"] = ((q_tot * mask).sum() / mask.sum()).detach()
        out["train/target_mean"] = (y * mask).sum() / mask.sum()
        out["train/entropy"] = (-(pi * log_pi.clamp(min=-1e4)).sum(-1)[:, :-1] * agent_mask).sum() / agent_mask.sum()
        return out

    def sync_targets(self) -> None:
        self.target_critics.load_state_dict(self.critics.state_dict())
        self.target_mixers.load_state_dict(self.mixers.state_dict())

    def train_metrics(self) -> dict[str, float]:
        return {"train/alpha": self.alpha(self.progress.t_env), "train/epsilon": self.epsilon(self.progress.t_env)}


register_algorithm(
    AlgorithmSpec(
        name="fop",
        learner=FOP,
        config=FOPConfig,
        summary="FOP: factorised max-entropy policies with a lambda-weighted joint soft value (twin critics)",
        needs_state=lambda cfg: True,
        validate=validate_fop,
    )
)
