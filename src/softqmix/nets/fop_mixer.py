"""FOP's joint soft value: Q_tot = Σ_i λ_i(s, a) [Q_i(a_i) − V_i] + Σ_i V_i + V(s)  (docs/algorithms/fop.md).

λ_i > 0 is the sum over heads of |k_h(s)| · σ(w_h(s))_i · σ(u_h(s, a))_i, a function of the state and
the joint action (the one-layer heads of softqmix.nets.attention_weights). As in the authors' code the
advantage Q_i − V_i enters λ's term detached, written as
Σ_i (λ_i − 1) sg(Q_i − V_i) + Σ_i Q_i + V(s): the value is the formula above, the critic's gradient
through Q_i(a_i) is 1, and λ learns from the detached advantages.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from softqmix.nets.attention_weights import PositiveAttentionWeights


class FOPMixer(nn.Module):
    def __init__(self, n_agents: int, n_actions: int, state_dim: int, n_heads: int, embed_dim: int) -> None:
        super().__init__()
        self.n = n_agents
        self.value = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))
        self.weights = PositiveAttentionWeights(n_agents, n_actions, state_dim, n_heads, hidden=0, layers=1)

    def lambdas(self, state: torch.Tensor, joint_actions: torch.Tensor) -> torch.Tensor:
        """λ [..., n] from state [..., S] and the joint action as one-hots [..., n, A]; always > 0."""
        return self.weights(state, joint_actions)

    def forward(
        self, q_taken: torch.Tensor, values: torch.Tensor, state: torch.Tensor, actions: torch.Tensor, n_actions: int
    ) -> torch.Tensor:
        """q_taken, values [..., n]; state [..., S]; actions [..., n] (indices) -> Q_tot [...]."""
        lam = self.lambdas(state, F.one_hot(actions, n_actions).to(state.dtype))
        advantage = (q_taken - values).detach()
        return ((lam - 1.0) * advantage).sum(-1) + q_taken.sum(-1) + self.value(state).squeeze(-1)
