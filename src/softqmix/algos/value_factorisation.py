"""Value-factorisation learners: IQL, VDN, QMIX, Soft-QMIX and its ablations, as switches of one learner.

The variant is chosen by the switches of ValueFactorisationConfig (docs/algorithms/soft_qmix.md, "Switches"),
never by editing this file. Two optimizers: the critic (agent net, g, mixer) on the TD loss, the policy
transform f on the MSE policy loss whose inputs are detached, so one backward pass serves both.
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn

from softqmix.algos.action_selection import (
    LinearSchedule,
    ScheduleAtProgress,
    greedy_actions,
    masked_logits,
    sample_softmax,
)
from softqmix.algos.behaviour import Behaviour, BehaviourPolicy
from softqmix.algos.learner import Learner, OptimizerGroup, ReplayLearnerConfig, check_update_pacing
from softqmix.algos.registry import AlgorithmSpec, register_algorithm
from softqmix.algos.targets import soft_td_lambda_targets, td_lambda_targets
from softqmix.cpu_placement import follow_helper_placement
from softqmix.data.buffer import EpisodeBatch
from softqmix.data.live_steps import LiveSteps
from softqmix.envs.base import EnvInfo
from softqmix.errors import ConfigError
from softqmix.nets.agent import agent_input_dim, make_agent_net
from softqmix.nets.mixers import MixerShape, make_mixer, mixer_spec
from softqmix.nets.packed_gru import PackPlan, pack_plan
from softqmix.nets.transforms import AffineF, IdentityTransform, MonotoneG, detached
from softqmix.progress import TrainingProgress


class TDLoss(str, Enum):
    half_mse = "half_mse"  # mean of td^2 / 2: pymarl2 and the authors' Soft-QMIX code
    mse = "mse"  # mean of td^2: EPyMARL (the same gradient clip is then half as loose)


_TARGET_UNROLL_THREAD: ThreadPoolExecutor | None = None


def _target_unroll_thread() -> ThreadPoolExecutor:
    """One worker thread for every learner of the process (updates run one at a time), made on first use."""
    global _TARGET_UNROLL_THREAD
    if _TARGET_UNROLL_THREAD is None:
        _TARGET_UNROLL_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="target-unroll")
    return _TARGET_UNROLL_THREAD


def _forget_target_unroll_thread() -> None:
    """A forked child has no copy of the worker thread; its executor would queue work that never runs."""
    global _TARGET_UNROLL_THREAD
    _TARGET_UNROLL_THREAD = None


os.register_at_fork(after_in_child=_forget_target_unroll_thread)


@dataclass
class ValueFactorisationConfig(ReplayLearnerConfig):
    """One value-factorisation learner; its switches select IQL, VDN, QMIX, Soft-QMIX or an ablation.

    The defaults are QMIX with pymarl2's settings (Adam, TD(lambda) 0.4, double-Q hard targets,
    epsilon-greedy); conf/algo/*.yaml set what each algorithm changes.
    """

    mixer: str = "qmix"  # a name in the mixer registry: none (IQL), sum (VDN), qmix, qplex, ...
    behaviour: Behaviour = Behaviour.eps_greedy
    soft_target: bool = False  # soft TD(lambda) with next actions sampled from the policy
    double_q: bool = True  # hard targets only: argmax of the online net picks the next action
    use_f: bool = False  # learned affine f (policy logits) trained by the MSE policy loss
    use_g: bool = False  # learned order-preserving g inside the critic
    g_residual: bool = False  # g(x) = x + ... (the released code); strictly increasing
    nonneg: bool = True  # abs() on the weights of g, f and the QMIX mixer
    weighted_td: bool = False  # the released code's sign-agreement weighting of the TD loss
    alpha: float = 0.03  # temperature of the soft target
    behaviour_alpha: float | None = None  # temperature of the behaviour policy; None = alpha
    mask_entropy_after_termination: bool = True  # False reproduces the released code's leak
    td_lambda: float = 0.4
    td_loss: TDLoss = TDLoss.half_mse
    policy_lr: float = 1e-3  # f's optimizer; critic_lr drives agent net + g + mixer
    mixing_embed_dim: int = 32
    hypernet_embed: int = 64
    g_hidden: int = 16  # hidden units of g: mixing_embed_dim // 2 in the released code
    # The agent net and the per-step work run on each episode's own steps only (softqmix.nets.packed_gru,
    # softqmix.data.live_steps) when at most this fraction of a batch's steps are live (the rest is padding after
    # shorter episodes, masked out of every loss and target); otherwise over the whole padded batch with nn.GRU,
    # as pymarl2 does. Measured on a CPU (docs/results.md §11): packed wins on SMAX batches (about 60% live), the
    # padded path on batches with little padding (MPE: all live). 0: always padded; 1: always packed.
    # mask_entropy_after_termination=false reads the padding's values (the released code's leak), so it always
    # takes the padded path, and so does a learner on a GPU.
    packed_unroll_max_live: float = 0.75
    # On a CPU, the target network unrolls in a second thread while the online network unrolls and mixes (torch
    # releases the GIL inside each op). The same numbers either way; it pays where the collection process leaves
    # the second core idle part of the time (a SMAX 5v5 QMIX update with that core idle: 70.9 -> 61.7 ms,
    # docs/results.md §11).
    overlap_target_unroll: bool = True


def validate_value_factorisation(cfg: ValueFactorisationConfig) -> None:
    """Reject out-of-range values (softqmix.config.VALUE_RULES) and switch combinations that have no meaning,
    with the fix in the message."""
    from softqmix.config import check_learner_ranges

    check_learner_ranges(cfg)
    check_update_pacing(cfg)
    spec = mixer_spec(cfg.mixer)
    if spec.per_agent and (cfg.use_f or cfg.weighted_td or cfg.use_g):
        raise ConfigError(
            f"algo.mixer={cfg.mixer} (independent learners) cannot use use_f, use_g or weighted_td: "
            "they act on a joint value; choose algo.mixer=sum or qmix"
        )
    if cfg.alpha <= 0 and (cfg.soft_target or cfg.behaviour is Behaviour.softmax):
        raise ConfigError(f"algo.alpha must be > 0 for a soft target or a softmax behaviour, got {cfg.alpha}")
    if cfg.batch_size > cfg.buffer_size:
        raise ConfigError(f"algo.batch_size ({cfg.batch_size}) exceeds algo.buffer_size ({cfg.buffer_size})")


def needs_state(cfg: ValueFactorisationConfig) -> bool:
    """g and f are conditioned on the state, and so are state-based mixers."""
    return mixer_spec(cfg.mixer).needs_state or cfg.use_g or cfg.use_f


def _per_agent_time_major(x: torch.Tensor, n: int) -> torch.Tensor:
    """[B, T] -> [B*n, T] repeating each episode for each agent (independent learners)."""
    return x.unsqueeze(1).expand(-1, n, -1).reshape(-1, x.shape[-1])


def _best_available(values: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """Each agent's largest value over its available actions: [..., A] -> [...]."""
    return masked_logits(values, avail).max(dim=-1).values


def value_diagnostics(
    q_tot: torch.Tensor,
    targets: torch.Tensor,
    loss_mask: torch.Tensor,
    q: torch.Tensor,
    avail: torch.Tensor,
    mask: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The scale of the values and how far apart each agent's best two actions are.

    A greedy policy read off Q_i is only as stable as its action gap (best minus second-best available
    action) is large next to the values' noise; |Q_tot| and |target| show the scale that noise comes from.
    Agents with a single legal action (dead SMAC units) have no gap and are left out.
    """
    valid = loss_mask.sum()
    top2 = masked_logits(q, avail).topk(2, dim=-1).values  # [B, T, n, 2]
    choice = (avail.sum(-1) >= 2).to(q.dtype) * mask.unsqueeze(-1)  # [B, T, n]
    gap = ((top2[..., 0] - top2[..., 1]) * choice).sum() / choice.sum().clamp(min=1.0)
    return {
        "train/q_tot_abs_mean": (q_tot.abs() * loss_mask).sum() / valid,
        "train/target_abs_mean": (targets.abs() * loss_mask).sum() / valid,
        "train/action_gap_mean": gap,
    }


class ValueFactorisation(Learner):
    """Agent net, transforms g and f, mixer and their targets; the TD(lambda) and policy losses."""

    objective = ("loss/td", "loss/policy")
    finite_checks = ("train/q_taken_mean", "train/q_tot_abs_mean")
    divergence_hint = "lower algo.critic_lr / algo.policy_lr or algo.alpha, or check the env's rewards"

    def __init__(
        self,
        cfg: ValueFactorisationConfig,
        env_info: EnvInfo,
        obs_last_action: bool,
        progress: TrainingProgress,
        t_max: int = 0,
    ) -> None:
        super().__init__(cfg, env_info, obs_last_action, progress, t_max)
        validate_value_factorisation(cfg)
        info = env_info
        n, s = info.n_agents, info.state_dim
        in_dim = agent_input_dim(info.obs_dim, n, info.n_actions, obs_last_action, cfg.obs_agent_id)
        self.agent = make_agent_net(cfg.agent, in_dim, cfg.rnn_hidden_dim, info.n_actions)
        self.g: nn.Module = (
            MonotoneG(n, s, cfg.g_hidden, cfg.hypernet_embed, cfg.g_residual, cfg.nonneg)
            if cfg.use_g
            else IdentityTransform()
        )
        self.f: nn.Module = AffineF(n, s, cfg.hypernet_embed, cfg.nonneg) if cfg.use_f else IdentityTransform()
        self.mixer_spec = mixer_spec(cfg.mixer)
        self.mixer = make_mixer(cfg.mixer, MixerShape(n, info.n_actions, s), cfg)
        self.target_agent = copy.deepcopy(self.agent).requires_grad_(False)
        self.target_g = copy.deepcopy(self.g).requires_grad_(False)
        self.target_mixer = copy.deepcopy(self.mixer).requires_grad_(False)
        self.epsilon = LinearSchedule(cfg.epsilon_start, cfg.epsilon_finish, cfg.epsilon_anneal_time)
        self.behaviour = BehaviourPolicy(
            self.agent,
            self.g,
            self.f,
            cfg,
            obs_last_action,
            info.n_actions,
            n,
            ScheduleAtProgress(self.epsilon, self.progress),
        )

    # ------------------------------------------------------------------ acting
    @property
    def actor(self) -> BehaviourPolicy:
        return self.behaviour

    def policy_logits(self, q: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Training-policy logits f(g(Q_i; s); s) / alpha for each agent and action."""
        return self.behaviour.logits(q, state)

    # ------------------------------------------------------------------ learning
    def optimizer_groups(self) -> list[OptimizerGroup]:
        critic = [*self.agent.parameters(), *self.g.parameters(), *self.mixer.parameters()]
        groups = [OptimizerGroup("critic", critic, self.cfg.critic_lr)]
        if self.cfg.use_f:
            groups.append(OptimizerGroup("policy", list(self.f.parameters()), self.cfg.policy_lr))
        return groups

    def agent_inputs(self, batch: EpisodeBatch) -> torch.Tensor:
        """Agent-net inputs for every step of the batch, shared by the online and target unrolls."""
        first = torch.full_like(batch.actions[:, :1], -1)
        last_actions = torch.cat([first, batch.actions], dim=1)
        return self.behaviour.inputs(batch.obs, last_actions)

    def mix(
        self,
        mixer: nn.Module,
        utilities: torch.Tensor,
        state: torch.Tensor,
        actions: torch.Tensor,
        all_utilities: torch.Tensor | None,
        avail: torch.Tensor,
    ) -> torch.Tensor:
        """Q_tot of `actions` from their utilities; dueling mixers also get each agent's best utility."""
        if not self.mixer_spec.takes_actions:
            return mixer(utilities, state)
        return mixer(utilities, state, actions, _best_available(all_utilities, avail))

    def compute_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        """All losses and diagnostics of one update; pure given the batch and the RNG.

        Everything that treats each step on its own (g, f, the mixers, action choice) runs on the batch's live
        steps only (softqmix.data.live_steps), gathered into rows; the TD(lambda) recursion and the losses work on
        the padded [B, T] layout, where the padding is masked.
        """
        cfg = self.cfg
        mask = batch.filled.clone()
        mask[:, 1:] = mask[:, 1:] * (1 - batch.terminated[:, :-1])
        state, avail = batch.state, batch.avail
        episodes, steps = state.shape[:2]  # steps = T + 1: the observation after the last step is one more

        inputs = self.agent_inputs(batch)
        lengths = self.unroll_lengths(batch)
        plan = None if lengths is None else pack_plan(lengths, self.env_info.n_agents, steps)
        live = LiveSteps.everything(episodes, steps) if lengths is None else LiveSteps.of(lengths, steps)
        target_unroll = self._start_target_unroll(inputs, plan)
        q = self.agent.unroll(inputs, plan)  # [B, T+1, n, A]
        # each live step's row: its state, legal actions and taken action (none after the last step: a
        # placeholder 0 there, whose value the mask drops like any padding)
        state_at, avail_at, q_at = live.take(state), live.take(avail), live.take(q)
        actions_at = live.take(torch.cat([batch.actions, torch.zeros_like(batch.actions[:, :1])], dim=1))
        # g acts on each action's value on its own, so only the taken actions need it with a gradient; every
        # other use of g (next-action sampling, double-Q choice, dueling maxima) is detached: g over all
        # actions runs without autograd, on the same hypernetwork outputs.
        g_weights = self.g.weights(state_at)
        g_taken = self.g.apply(q_at.gather(-1, actions_at.unsqueeze(-1)), g_weights).squeeze(-1)  # [R, n]
        with torch.no_grad():
            g_all = self.g.apply(q_at.detach(), detached(g_weights))  # [R, n, A]
        q_tot = live.put(self.mix(self.mixer, g_taken, state_at, actions_at, g_all, avail_at))[:, :-1]

        with torch.no_grad():
            target_q = live.take(target_unroll.result())
            target_weights = self.target_g.weights(state_at)
            # all of the target's g: to pick the greedy next action from it, or for a dueling mixer's maxima
            full_target = (not cfg.soft_target and not cfg.double_q) or self.mixer_spec.takes_actions
            target_g = self.target_g.apply(target_q, target_weights) if full_target else None
            if cfg.soft_target:
                # sampled over the whole padded grid, so the random draws fall on the same steps whichever
                # steps are live (the padding's samples are masked)
                logits = live.put(self.f(g_all, state_at) / cfg.alpha)
                sampled, log_probs = sample_softmax(logits, avail)
                neg_logp = -log_probs.gather(-1, sampled.unsqueeze(-1)).squeeze(-1)  # [B, T+1, n]
                next_actions = live.take(sampled)
            else:
                next_actions = greedy_actions(g_all if cfg.double_q else target_g, avail_at)
                neg_logp = q.new_zeros(q.shape[:-1])
            if target_g is None:
                target_next = target_q.gather(-1, next_actions.unsqueeze(-1))
                target_taken = self.target_g.apply(target_next, target_weights).squeeze(-1)
            else:
                target_taken = target_g.gather(-1, next_actions.unsqueeze(-1)).squeeze(-1)
            target_tot = live.put(self.mix(self.target_mixer, target_taken, state_at, next_actions, target_g, avail_at))
            targets, entropy = self._targets(batch, mask, target_tot, neg_logp)

        td_error = q_tot - targets
        loss_mask = mask if not self.mixer_spec.per_agent else mask.unsqueeze(-1).expand_as(td_error)
        out: dict[str, torch.Tensor] = {}
        weights = loss_mask
        if cfg.use_f or cfg.weighted_td:
            f_sum = live.put(self.f(g_taken.detach().unsqueeze(-1), state_at).squeeze(-1).sum(-1))[:, :-1]
            policy_error = q_tot.detach() - f_sum
            if cfg.use_f:
                out["loss/policy"] = (0.5 * policy_error.pow(2) * mask).sum() / mask.sum()
            if cfg.weighted_td:
                disagree = (policy_error > 0) == (td_error.detach() < 0)
                weights = loss_mask * torch.where(disagree, 0.5, 1.0)
                out["train/td_weight_mean"] = (weights.sum() / loss_mask.sum()).detach()
        scale = 0.5 if TDLoss(cfg.td_loss) is TDLoss.half_mse else 1.0
        out["loss/td"] = (scale * td_error.pow(2) * weights).sum() / weights.sum()
        out["loss/td_unweighted"] = ((scale * td_error.pow(2) * loss_mask).sum() / loss_mask.sum()).detach()
        valid = loss_mask.sum()
        out["train/q_taken_mean"] = ((q_tot * loss_mask).sum() / valid).detach()
        out["train/target_mean"] = ((targets * loss_mask).sum() / valid).detach()
        out["train/entropy"] = ((entropy[:, :-1] * mask).sum() / mask.sum()).detach()
        out.update(value_diagnostics(q_tot.detach(), targets, loss_mask, q[:, :-1].detach(), avail[:, :-1], mask))
        return out

    def _start_target_unroll(self, inputs: torch.Tensor, plan: PackPlan | None) -> Future[torch.Tensor]:
        """The target network's Q [B, T+1, n, A], without autograd: in the target-unroll thread on a CPU
        (`overlap_target_unroll`), else now."""

        def unroll() -> torch.Tensor:
            follow_helper_placement()  # a pinned run keeps this thread off the learner's core
            with torch.no_grad():  # grad mode is per thread
                return self.target_agent.unroll(inputs, plan)

        if self.cfg.overlap_target_unroll and inputs.device.type == "cpu":
            return _target_unroll_thread().submit(unroll)
        done: Future[torch.Tensor] = Future()
        done.set_result(unroll())
        return done

    def unroll_lengths(self, batch: EpisodeBatch) -> torch.Tensor | None:
        """Steps of each episode the agent net must see: its filled steps and the observation after the last
        one (the bootstrap); None unrolls the whole padded batch, which is also what happens when more than
        `packed_unroll_max_live` of the batch's steps are live (too little padding for the packed path to pay).

        Off the CPU the padded batch goes through nn.GRU (cuDNN's fused kernel): the packed GRU needs the
        lengths on the host, one device round trip per update, and steps its rows from Python.
        """
        cfg = self.cfg
        if (
            not cfg.mask_entropy_after_termination
            or batch.filled.device.type != "cpu"
            or cfg.packed_unroll_max_live <= 0
        ):
            return None
        lengths = batch.filled.sum(1).long() + 1
        live = float(lengths.sum()) / (lengths.numel() * (batch.filled.shape[1] + 1))
        return lengths if live <= cfg.packed_unroll_max_live else None

    def _targets(
        self, batch: EpisodeBatch, mask: torch.Tensor, target_tot: torch.Tensor, neg_logp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """TD(lambda) targets for a joint value [B, T] or for each agent [B, T, n]."""
        cfg, n = self.cfg, self.env_info.n_agents
        reward, terminated = batch.reward, batch.terminated
        per_agent = self.mixer_spec.per_agent
        if per_agent:
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
        if per_agent:
            y = y.reshape(batch.reward.shape[0], n, -1).permute(0, 2, 1)
            entropy = entropy.reshape(batch.reward.shape[0], n, -1).permute(0, 2, 1).sum(-1)
        return y, entropy

    def sync_targets(self) -> None:
        """Hard copy of the agent net, g and the mixer (every target_update_interval episodes)."""
        self.target_agent.load_state_dict(self.agent.state_dict())
        self.target_g.load_state_dict(self.g.state_dict())
        self.target_mixer.load_state_dict(self.mixer.state_dict())

    def train_metrics(self) -> dict[str, float]:
        row = {"train/alpha": float(self.cfg.alpha) if self.cfg.soft_target else 0.0}
        if self.cfg.behaviour is Behaviour.eps_greedy:
            row["train/epsilon"] = self.epsilon(self.progress.t_env)
        return row


def _register(name: str, summary: str, accepts_ablations: bool = False) -> None:
    register_algorithm(
        AlgorithmSpec(
            name=name,
            learner=ValueFactorisation,
            config=ValueFactorisationConfig,
            summary=summary,
            overlapped_collection=True,
            joint_value=True,
            accepts_ablations=accepts_ablations,
            needs_state=needs_state,
            validate=validate_value_factorisation,
        )
    )


_register("iql", "independent Q-learners sharing one agent net, each regressing on the team reward")
_register("vdn", "VDN: Q_tot = sum_i Q_i, epsilon-greedy, double-Q TD(lambda)")
_register("qmix", "QMIX with pymarl2's settings: monotonic hypernetwork mixer, epsilon-greedy, double-Q TD(lambda)")
_register(
    "soft_qmix",
    "Soft-QMIX: max-entropy QMIX with order-preserving transforms g and f (the ablation bundles are its variants)",
    accepts_ablations=True,
)
