"""Acting with a policy network (MAPPO, FOP): sample when exploring, argmax of the logits in tests."""

from __future__ import annotations

from collections.abc import Callable

import torch

from softqmix.algos.action_selection import greedy_actions, masked_logits
from softqmix.nets.agent import RNNAgent, build_agent_inputs


def exploring_policy(logits: torch.Tensor, avail: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Softmax over the available actions, mixed with ε of the uniform distribution over them."""
    probs = torch.softmax(masked_logits(logits, avail), dim=-1)
    if epsilon <= 0.0:
        return probs
    uniform = avail / avail.sum(-1, keepdim=True).clamp(min=1.0)
    return (1.0 - epsilon) * probs + epsilon * uniform


class PolicyActor:
    """The collectors' actor for policy-network learners; `epsilon_at` adds FOP's exploration floor."""

    def __init__(
        self,
        policy: RNNAgent,
        obs_last_action: bool,
        obs_agent_id: bool,
        n_actions: int,
        n_agents: int,
        epsilon_at: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.policy, self.n_actions, self.n_agents = policy, n_actions, n_agents
        self.obs_last_action, self.obs_agent_id = obs_last_action, obs_agent_id
        self.epsilon_at = epsilon_at

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    def inputs(self, obs: torch.Tensor, last_actions: torch.Tensor) -> torch.Tensor:
        return build_agent_inputs(
            obs, last_actions if self.obs_last_action else None, self.n_actions, self.obs_agent_id
        )

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
        device = self.device
        avail = avail.to(device)
        logits, hidden = self.policy.step(self.inputs(obs.to(device), last_actions.to(device)), hidden)
        if not explore:
            return greedy_actions(logits, avail), hidden
        probs = exploring_policy(logits, avail, self.epsilon_at())
        actions = torch.multinomial(probs.reshape(-1, self.n_actions), 1).view(probs.shape[:-1])
        return actions, hidden
