"""HASAC (Liu, Zhong et al., ICLR 2024; HARL's code): heterogeneous-agent soft actor-critic, discrete actions.

The maths, the settings and every departure from HARL's code are in docs/algorithms/hasac.md. In short: one
MLP policy per agent (or one shared, `share_param`), a twin soft Q critic on the global state and the joint
action trained on n-step targets from single transitions (softqmix.algos.transitions samples them from the
episode replay), a polyak-averaged target critic, a temperature per agent tuned towards a target entropy plus
one for the critic's target, and the sequential policy update: the agents are updated one after another in
a random order, each against the critic with the actions that the agents already updated in this update draw
from their new policies.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from softqmix.algos.action_selection import greedy_actions, masked_logits
from softqmix.algos.learner import (
    AgentNet,
    Learner,
    OptimizerGroup,
    ReplayLearnerConfig,
    check_update_pacing,
)
from softqmix.algos.registry import AlgorithmSpec, register_algorithm
from softqmix.algos.transitions import TransitionBatch, n_step_returns, sample_transitions, stored_transitions
from softqmix.data.buffer import EpisodeBuffer
from softqmix.envs.base import EnvInfo
from softqmix.errors import ConfigError
from softqmix.nets.agent import build_agent_inputs
from softqmix.nets.hasac_nets import Activation, AgentPolicies, JointQ
from softqmix.progress import TrainingProgress

# Division guard of the value normaliser's debiasing (its statistics start at zero weight).
_DEBIAS_FLOOR = 1e-5
# The smallest uniform draw turned into Gumbel noise: -log(-log(u)) stays finite.
_UNIFORM_FLOOR = 1e-20


class ActorGradient(str, Enum):
    gumbel = "gumbel"  # HARL: a hard Gumbel-softmax sample, straight-through gradient, log pi of that sample
    expectation = "expectation"  # exact: sum over the agent's available actions of pi(a) (Q(a) - alpha log pi(a))


@dataclass
class HASACConfig(ReplayLearnerConfig):
    """HASAC with the paper's baseline settings (its Appendix J) and HARL's defaults where it is silent.

    `batch_size` counts transitions here, `buffer_size` still counts episodes (the replay stores episodes:
    docs/algorithms/hasac.md, "Replay"). Inherited knobs that HASAC does not use: rnn_hidden_dim (the nets'
    widths are `hidden_sizes`), epsilon_* (exploration is the policy's own sampling), target_update_* (the target
    critic is polyak-averaged every update), grad_clip_mode (see `clip_gradients`).
    """

    name: str = "hasac"
    agent: AgentNet = AgentNet.mlp  # HARL's HASAC policies are MLPs; rnn is refused
    obs_agent_id: bool = False  # HARL's policies see the agent's observation only
    actor_lr: float = 3e-4
    critic_lr: float = 5e-4
    alpha_lr: float = 3e-4
    auto_alpha: bool = True  # tune each temperature towards its target entropy (HARL's auto_alpha)
    alpha: float = 0.001  # the fixed temperature of every agent and of the target when auto_alpha is false
    alpha_init: float = 1.0  # auto_alpha: every temperature's start (HARL: log alpha = 0)
    # auto_alpha: each agent's target entropy is this fraction of log(n_actions). HARL's code computes it from the
    # action space's shape, which is () for a discrete space: the target is 0 (docs/algorithms/hasac.md).
    target_entropy_scale: float = 0.0
    batch_size: int = 1000  # transitions per update
    # HARL updates update_per_train * train_interval times every train_interval steps of its n_rollout_threads
    # envs: with 8 envs, one update per 8 env steps (docs/algorithms/hasac.md, "Pacing")
    env_steps_per_update: int | None = 8
    warmup_steps: int = 10_000  # env steps of uniformly random available actions before the first update
    n_step: int = 20  # rewards summed over up to this many steps of the episode before bootstrapping
    polyak: float = 0.005  # target critic <- (1 - polyak) target + polyak critic, every update
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])  # policies and critics
    activation: Activation = Activation.relu
    feature_norm: bool = True  # LayerNorm on the policies' input features
    output_gain: float = 0.01  # orthogonal gain of the logit layer
    share_param: bool = False  # one policy for every agent
    fixed_order: bool = False  # agents updated in index order instead of a fresh random order each update
    actor_gradient: ActorGradient = ActorGradient.gumbel
    gumbel_temperature: float = 1.0  # of the relaxed sample whose gradient the hard sample borrows
    huber_loss: bool = True  # the critics' regression loss: Huber (true) or squared error
    huber_delta: float = 10.0
    value_norm: bool = True  # the critics learn normalised targets (running mean and variance of the targets)
    value_norm_beta: float = 0.99999  # the running statistics' decay per update
    value_norm_min_var: float = 1e-2  # floor of the running variance
    proper_time_limits: bool = True  # bootstrap through truncations; false: stop at every episode end
    clip_gradients: bool = False  # HARL does not clip; true clips each optimizer at grad_norm_clip


def validate_hasac(cfg: HASACConfig) -> None:
    """Out-of-range values (softqmix.config.VALUE_RULES), then what HASAC cannot run."""
    from softqmix.config import check_learner_ranges

    check_learner_ranges(cfg)
    check_update_pacing(cfg)
    if AgentNet(cfg.agent) is not AgentNet.mlp:
        raise ConfigError(f"algo.agent={AgentNet(cfg.agent).value}: HASAC's policies are MLPs; set algo.agent=mlp")
    if not cfg.hidden_sizes or any(int(size) < 1 for size in cfg.hidden_sizes):
        raise ConfigError(f"algo.hidden_sizes={list(cfg.hidden_sizes)} must be one or more widths >= 1")
    if not 0.0 < cfg.polyak <= 1.0:
        raise ConfigError(f"algo.polyak={cfg.polyak} is out of range: it must be in (0, 1]")
    if not 0.0 < cfg.value_norm_beta < 1.0:
        raise ConfigError(f"algo.value_norm_beta={cfg.value_norm_beta} is out of range: it must be in (0, 1)")


class ValueNormaliser(nn.Module):
    """Running mean and variance of the critic's targets, debiased, so the critics regress on unit-scale values.

    Each update moves the statistics by a factor `beta` towards the batch's; the debiasing term corrects their
    start at zero. Kept as buffers, so checkpoints carry them.
    """

    def __init__(self, beta: float, min_var: float) -> None:
        super().__init__()
        self.beta, self.min_var = beta, min_var
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("mean_sq", torch.zeros(()))
        self.register_buffer("weight", torch.zeros(()))

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self.weight.clamp(min=_DEBIAS_FLOOR)
        mean = self.mean / weight
        var = (self.mean_sq / weight - mean.square()).clamp(min=self.min_var)
        return mean, var.sqrt()

    @torch.no_grad()
    def update(self, values: torch.Tensor) -> None:
        beta = self.beta
        self.mean.mul_(beta).add_((1 - beta) * values.mean())
        self.mean_sq.mul_(beta).add_((1 - beta) * values.square().mean())
        self.weight.mul_(beta).add_(1 - beta)

    def normalise(self, values: torch.Tensor) -> torch.Tensor:
        mean, std = self.stats()
        return (values - mean) / std

    def denormalise(self, values: torch.Tensor) -> torch.Tensor:
        mean, std = self.stats()
        return values * std + mean


class HASACActor:
    """The collectors' actor: uniform random available actions during the warm-up, then the policies' samples;
    greedy (argmax of the masked logits) in tests."""

    def __init__(
        self,
        policies: AgentPolicies,
        obs_agent_id: bool,
        n_actions: int,
        n_agents: int,
        warming_up: Any,
    ) -> None:
        self.policy, self.obs_agent_id = policies, obs_agent_id
        self.n_actions, self.n_agents = n_actions, n_agents
        self.warming_up = warming_up  # () -> bool, read at every step

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    def inputs(self, obs: torch.Tensor, last_actions: torch.Tensor | None = None) -> torch.Tensor:
        """The policies' input: the observation (and the agent's one-hot index with obs_agent_id); HARL's
        policies do not see the previous action, whatever the env's obs_last_action says."""
        return build_agent_inputs(obs, None, self.n_actions, self.obs_agent_id)

    def initial_hidden(self, n_envs: int) -> torch.Tensor:
        return self.policy.initial_hidden(n_envs * self.n_agents, device=self.device)

    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        state: torch.Tensor,
        avail: torch.Tensor,
        last_actions: torch.Tensor,
        hidden: torch.Tensor,
        explore: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step for E envs: obs [E,n,o], avail [E,n,A] -> actions [E,n]."""
        avail = avail.to(self.device)
        if explore and self.warming_up():
            uniform = avail.reshape(-1, self.n_actions).float()
            return torch.multinomial(uniform, 1).view(avail.shape[:-1]), hidden
        logits = self.policy(self.inputs(obs.to(self.device)))
        if not explore:
            return greedy_actions(logits, avail), hidden
        probs = torch.softmax(masked_logits(logits, avail), dim=-1)
        return torch.multinomial(probs.reshape(-1, self.n_actions), 1).view(probs.shape[:-1]), hidden


class HASAC(Learner):
    """HASAC's policies, twin critics, temperatures and the sequential update (its own `update`)."""

    finite_checks = ("train/q_taken_mean",)
    divergence_hint = "lower algo.actor_lr / algo.critic_lr, or check the env's rewards"

    def __init__(
        self, cfg: HASACConfig, env_info: EnvInfo, obs_last_action: bool, progress: TrainingProgress, t_max: int = 0
    ) -> None:
        super().__init__(cfg, env_info, obs_last_action, progress, t_max)
        validate_hasac(cfg)
        n, a = env_info.n_agents, env_info.n_actions
        sizes = [int(size) for size in cfg.hidden_sizes]
        input_dim = env_info.obs_dim + (n if cfg.obs_agent_id else 0)
        self.policies = AgentPolicies(
            n, input_dim, sizes, a, cfg.activation, cfg.feature_norm, cfg.output_gain, cfg.share_param
        )
        self.critics = nn.ModuleList(JointQ(env_info.state_dim, n, a, sizes, cfg.activation) for _ in range(2))
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        start = math.log(cfg.alpha_init)
        self.log_alphas = nn.ParameterList(nn.Parameter(torch.tensor(start)) for _ in range(n))
        self.log_alpha_critic = nn.Parameter(torch.tensor(start))
        self.value_normaliser = ValueNormaliser(cfg.value_norm_beta, cfg.value_norm_min_var)
        self.target_entropy = cfg.target_entropy_scale * math.log(a)  # per agent, HARL's for discrete actions
        self._actor = HASACActor(
            self.policies, cfg.obs_agent_id, a, n, warming_up=lambda: self.progress.t_env < cfg.warmup_steps
        )
        # the losses the divergence check names: the critics', then each agent's policy loss
        self.objective = ("loss/critic", *(f"loss/actor{i}" for i in range(n)))

    @property
    def actor(self) -> HASACActor:
        return self._actor

    def optimizer_groups(self) -> list[OptimizerGroup]:
        """critic, the policies (one group each, or one shared), each agent's temperature, the target's."""
        cfg = self.cfg
        actors = [
            OptimizerGroup(f"actor{i}", list(net.parameters()), cfg.actor_lr)
            for i, net in enumerate(self.policies.nets)
        ]
        alphas = [OptimizerGroup(f"alpha{i}", [p], cfg.alpha_lr) for i, p in enumerate(self.log_alphas)]
        return [
            OptimizerGroup("critic", list(self.critics.parameters()), cfg.critic_lr),
            *actors,
            *alphas,
            OptimizerGroup("alpha_critic", [self.log_alpha_critic], cfg.alpha_lr),
        ]

    # ------------------------------------------------------------------ replay
    def replay_ready(self, buffer: EpisodeBuffer) -> bool:
        """After the warm-up, once the buffer holds a batch of transitions and the burn-in episodes."""
        cfg = self.cfg
        if self.progress.t_env < cfg.warmup_steps or buffer.size < max(cfg.burn_in_episodes, 1):
            return False
        return stored_transitions(buffer) >= cfg.batch_size

    def sample_replay(self, buffer: EpisodeBuffer) -> TransitionBatch:
        return sample_transitions(buffer, self.cfg.batch_size, self.cfg.n_step)

    # ------------------------------------------------------------------ pieces of the maths
    def alpha_of(self, agent: int) -> torch.Tensor:
        if not self.cfg.auto_alpha:
            return torch.tensor(self.cfg.alpha, device=self.log_alpha_critic.device)
        return self.log_alphas[agent].detach().exp()

    def alpha_critic(self) -> torch.Tensor:
        if not self.cfg.auto_alpha:
            return torch.tensor(self.cfg.alpha, device=self.log_alpha_critic.device)
        return self.log_alpha_critic.detach().exp()

    def log_policy(self, agent: int, obs: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        """log pi_i(. | o) over the agent's available actions [B, A]; unavailable actions get log pi = -inf
        in effect (a finite -1e9 logit), so pi is exactly 0 there."""
        inputs = self._actor.inputs(obs)[..., agent, :]
        logits = self.policies.agent_logits(agent, inputs)
        return torch.log_softmax(masked_logits(logits, avail[..., agent, :]), dim=-1)

    @torch.no_grad()
    def sample_actions(self, obs: torch.Tensor, avail: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a_i ~ pi_i(. | o_i) for every agent and their log-probabilities: ([B, n], [B, n])."""
        logits = self.policies(self._actor.inputs(obs))
        log_pi = torch.log_softmax(masked_logits(logits, avail), dim=-1)
        actions = torch.multinomial(log_pi.exp().reshape(-1, log_pi.shape[-1]), 1).view(log_pi.shape[:-1])
        return actions, log_pi.gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    def q_min(self, critics: nn.ModuleList, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.minimum(critics[0](state, actions), critics[1](state, actions))

    def critic_targets(self, batch: TransitionBatch) -> torch.Tensor:
        """y = R_t^(m) + gamma^m (1 - end) [min_k Q'_k(s', a') - alpha_c sum_i log pi_i(a'_i | o'_i)], a' ~ pi
        at the state after the window; `end` is the termination (proper time limits) or any episode end. In the
        critics' normalised units with value_norm (the statistics first take in this batch's targets)."""
        cfg = self.cfg
        with torch.no_grad():
            returns, discount = n_step_returns(batch.reward, batch.filled, cfg.gamma)
            end = batch.terminated if cfg.proper_time_limits else batch.episode_end
            next_actions, next_log_pi = self.sample_actions(batch.next_obs, batch.next_avail)
            onehot = F.one_hot(next_actions, self.env_info.n_actions).float()
            next_q = self.q_min(self.target_critics, batch.next_state, onehot)
            if cfg.value_norm:
                next_q = self.value_normaliser.denormalise(next_q)
            soft_value = next_q - self.alpha_critic() * next_log_pi.sum(-1)
            y = returns + discount * (1.0 - end) * soft_value
            if cfg.value_norm:
                self.value_normaliser.update(y)
                y = self.value_normaliser.normalise(y)
        return y

    def critic_losses(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        y = self.critic_targets(batch)
        taken = F.one_hot(batch.actions, self.env_info.n_actions).float()
        qs = [critic(batch.state, taken) for critic in self.critics]
        if cfg.huber_loss:
            terms = [F.huber_loss(q, y, delta=cfg.huber_delta) for q in qs]
        else:
            terms = [F.mse_loss(q, y) for q in qs]
        return {
            "loss/critic": terms[0] + terms[1],
            "train/q_taken_mean": qs[0].detach().mean(),
            "train/target_mean": y.mean(),
        }

    def actor_loss(
        self, agent: int, batch: TransitionBatch, joint: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Agent i's loss -E[min_k Q_k(s, a_{-i}, a_i) - alpha_i log pi_i(a_i | o_i)] with the other agents'
        actions `joint` [B, n, A] held fixed; returns (loss, E[log pi_i] as the temperature's loss sees it
        [B], the policy's entropy [B])."""
        cfg, n_actions = self.cfg, self.env_info.n_actions
        log_pi = self.log_policy(agent, batch.obs, batch.avail)
        avail = batch.avail[:, agent] > 0
        pi = log_pi.exp()
        safe_log_pi = log_pi.masked_fill(~avail, 0.0)  # pi = 0 there; keeps 0 * (-1e9) out of the sums
        entropy = -(pi * safe_log_pi).sum(-1)
        alpha = self.alpha_of(agent)
        if ActorGradient(cfg.actor_gradient) is ActorGradient.expectation:
            with torch.no_grad():  # Q of each of the agent's actions, the others' held fixed: [B, A]
                candidates = joint.unsqueeze(1).repeat(1, n_actions, 1, 1)
                candidates[:, :, agent] = torch.eye(n_actions, device=joint.device)
                state = batch.state.unsqueeze(1).expand(-1, n_actions, -1)
                q = self.q_min(self.critics, state, candidates)
            loss = -(pi * (q - alpha * safe_log_pi)).sum(-1).mean()
            return loss, -entropy.detach(), entropy.detach()
        noise = -torch.log(-torch.log(torch.rand_like(log_pi).clamp(min=_UNIFORM_FLOOR)))
        relaxed = torch.softmax((log_pi + noise) / cfg.gumbel_temperature, dim=-1)
        hard = F.one_hot(relaxed.argmax(-1), n_actions).to(relaxed.dtype)
        sample = hard - relaxed.detach() + relaxed  # the hard sample's value, the relaxed one's gradient
        log_prob = (sample * safe_log_pi).sum(-1)
        with_agent = joint.clone()
        with_agent[:, agent] = sample
        q = self.q_min(self.critics, batch.state, with_agent)
        loss = -(q - alpha * log_prob).mean()
        return loss, log_prob.detach(), entropy.detach()

    def update_order(self) -> list[int]:
        """The order of this update's sequential policy steps (HARL: a fresh random permutation unless
        fixed_order); drawn from torch's RNG, so a resumed run draws the same orders."""
        n = self.env_info.n_agents
        return list(range(n)) if self.cfg.fixed_order else torch.randperm(n).tolist()

    # ------------------------------------------------------------------ the update
    def _step(self, optimizer: Any, name: str, loss: torch.Tensor, backward: Any, out: dict[str, Any]) -> None:
        optimizer.zero_grad()
        backward(loss)
        if self.cfg.clip_gradients:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            out[f"train/grad_norm_{name}"] = nn.utils.clip_grad_norm_(params, self.cfg.grad_norm_clip, foreach=True)
        optimizer.step()

    def update_critic(
        self, batch: TransitionBatch, optimizers: dict[str, Any], backward: Any, out: dict[str, Any]
    ) -> None:
        losses = self.critic_losses(batch)
        self.check_divergence(losses["loss/critic"], losses)
        self._step(optimizers["critic"], "critic", losses["loss/critic"], backward, out)
        out.update(losses)

    def update_actors(
        self, batch: TransitionBatch, optimizers: dict[str, Any], backward: Any, out: dict[str, Any]
    ) -> None:
        """The sequential policy update, then the temperatures (the critics are held fixed throughout)."""
        cfg, n_actions = self.cfg, self.env_info.n_actions
        actions, _ = self.sample_actions(batch.obs, batch.avail)
        joint = F.one_hot(actions, n_actions).float()  # [B, n, A]: old policies' samples until refreshed
        log_probs, entropies = [], []
        self.critics.requires_grad_(False)
        try:
            for agent in self.update_order():
                name = f"actor{0 if cfg.share_param else agent}"
                loss, log_prob, entropy = self.actor_loss(agent, batch, joint)
                self.check_divergence(loss, {f"loss/actor{agent}": loss})
                self._step(optimizers[name], name, loss, backward, out)
                out[f"loss/actor{agent}"] = loss.detach()
                if cfg.auto_alpha:  # this agent's temperature, from its pre-step log-probabilities
                    alpha_loss = -(self.log_alphas[agent] * (log_prob + self.target_entropy)).mean()
                    self._step(optimizers[f"alpha{agent}"], f"alpha{agent}", alpha_loss, backward, out)
                with torch.no_grad():  # the agents after this one see its new policy's actions
                    log_pi = self.log_policy(agent, batch.obs, batch.avail)
                    new = torch.multinomial(log_pi.exp(), 1).squeeze(-1)
                    joint[:, agent] = F.one_hot(new, n_actions).float()
                log_probs.append(log_prob)
                entropies.append(entropy)
        finally:
            self.critics.requires_grad_(True)
        if cfg.auto_alpha:  # the target's temperature, towards the joint policy's target entropy
            joint_log_prob = torch.stack(log_probs).sum(0)
            target = self.target_entropy * self.env_info.n_agents
            alpha_loss = -(self.log_alpha_critic * (joint_log_prob + target)).mean()
            self._step(optimizers["alpha_critic"], "alpha_critic", alpha_loss, backward, out)
        out["train/entropy"] = torch.stack(entropies).mean()

    @torch.no_grad()
    def polyak_update(self) -> None:
        tau = self.cfg.polyak
        for target, online in zip(self.target_critics.parameters(), self.critics.parameters(), strict=True):
            target.lerp_(online, tau)

    def update(self, batch: Any, optimizers: list[Any], backward: Any = None) -> dict[str, torch.Tensor]:
        """One HASAC update: the critics on the n-step soft targets, then each agent's policy (and temperature)
        in turn, then the critic's temperature, then the polyak step of the target critics.

        The divergence check runs before the critic's step and before each policy's step; a policy loss that
        diverges stops the run after the earlier steps of this update were applied (the run is then resumed
        from its last good checkpoint, which none of them reached).
        """
        backward = backward or torch.Tensor.backward
        names = getattr(self, "_group_names", None) or [group.name for group in self.optimizer_groups()]
        by_name = dict(zip(names, optimizers, strict=True))
        batch = self.prepare_batch(batch)
        out: dict[str, Any] = {}
        self.update_critic(batch, by_name, backward, out)
        self.update_actors(batch, by_name, backward, out)
        self.polyak_update()
        self.progress.updates += 1
        actor_losses = [value for key, value in out.items() if key.startswith("loss/actor")]
        out["loss/actor"] = torch.stack(actor_losses).mean()
        return out

    def sync_targets(self) -> None:
        """A hard copy of the critics into the targets (the update itself uses polyak steps)."""
        self.target_critics.load_state_dict(self.critics.state_dict())

    def train_metrics(self) -> dict[str, float]:
        n = self.env_info.n_agents
        return {
            "train/alpha_mean": sum(float(self.alpha_of(i)) for i in range(n)) / n,
            "train/alpha_critic": float(self.alpha_critic()),
            "train/warming_up": float(self._actor.warming_up()),
        }


register_algorithm(
    AlgorithmSpec(
        name="hasac",
        learner=HASAC,
        config=HASACConfig,
        summary="HASAC: per-agent soft policies updated in sequence against a twin joint-action soft Q critic",
        needs_state=lambda cfg: True,
        validate=validate_hasac,
    )
)
