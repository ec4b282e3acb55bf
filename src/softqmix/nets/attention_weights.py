"""Positive per-agent weights of the joint action, lambda_i(s, a) > 0, for dueling mixers (QPLEX, FOP).

lambda_i(s, a) = sum_k |key_k(s)| * sigmoid(agents_k(s))_i * sigmoid(actions_k(s, a))_i, one term per
attention head k, as in QPLEX's authors' code (pymarl2 src/modules/mixers/dmaq_si_weight.py), whose
one-layer form FOP's authors reuse. Positive by construction whatever the weights, which is what keeps a
dueling mixer's greedy joint action equal to the agents' greedy actions.
"""

from __future__ import annotations

import torch
from torch import nn

from softqmix.nets.hyper import hyper_mlp


def head_network(in_dim: int, hidden: int, out: int, layers: int) -> nn.Module:
    """A linear map (1 layer) or an MLP with ReLUs of 2 or 3 layers."""
    if layers == 1:
        return nn.Linear(in_dim, out)
    if layers == 2:
        return hyper_mlp(in_dim, hidden, out)
    if layers == 3:
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), hyper_mlp(hidden, hidden, out))
    raise ValueError(f"a head network has 1, 2 or 3 layers, got {layers}")


class PositiveAttentionWeights(nn.Module):
    def __init__(self, n_agents: int, n_actions: int, state_dim: int, heads: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.keys = nn.ModuleList(head_network(state_dim, hidden, 1, layers) for _ in range(heads))
        self.agent_weights = nn.ModuleList(head_network(state_dim, hidden, n_agents, layers) for _ in range(heads))
        joint = state_dim + n_agents * n_actions
        self.action_weights = nn.ModuleList(head_network(joint, hidden, n_agents, layers) for _ in range(heads))

    def forward(self, state: torch.Tensor, joint_actions: torch.Tensor) -> torch.Tensor:
        """state [..., S] and the joint action as one-hots [..., n, A] -> lambda [..., n], always > 0."""
        with_actions = torch.cat([state, joint_actions.flatten(-2)], dim=-1)
        heads = [
            (key(state).abs() + 1e-10) * torch.sigmoid(agents(state)) * torch.sigmoid(acts(with_actions))
            for key, agents, acts in zip(self.keys, self.agent_weights, self.action_weights, strict=True)
        ]
        return torch.stack(heads).sum(0)
