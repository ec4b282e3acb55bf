"""HASAC's networks (docs/algorithms/hasac.md): per-agent MLP policies and a joint-action soft Q critic.

The shapes follow HARL's discrete HASAC: a policy is an MLP on the agent's own observation, its input
layer-normalised ("feature normalisation"), each hidden layer followed by the activation and a LayerNorm, hidden
weights orthogonal with the activation's gain and the logit layer orthogonal with a small gain (initial
policies close to uniform). The critic is a plain MLP (PyTorch's default initialisation) on the global state
concatenated with every agent's one-hot action, with one output.
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import nn


class Activation(str, Enum):
    relu = "relu"
    tanh = "tanh"
    leaky_relu = "leaky_relu"


_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


def activation_module(kind: Activation | str) -> nn.Module:
    return _ACTIVATIONS[getattr(kind, "value", kind)]()


class PolicyMLP(nn.Module):
    """One policy: [LayerNorm(input)] -> (Linear -> activation -> LayerNorm) per hidden size -> Linear -> logits."""

    def __init__(
        self,
        input_dim: int,
        hidden_sizes: list[int],
        n_actions: int,
        activation: Activation | str,
        feature_norm: bool,
        output_gain: float,
    ) -> None:
        super().__init__()
        kind = getattr(activation, "value", activation)
        gain = nn.init.calculate_gain(kind)
        layers: list[nn.Module] = [nn.LayerNorm(input_dim)] if feature_norm else []
        width = input_dim
        for size in hidden_sizes:
            linear = nn.Linear(width, size)
            nn.init.orthogonal_(linear.weight, gain=gain)
            nn.init.zeros_(linear.bias)
            layers += [linear, activation_module(kind), nn.LayerNorm(size)]
            width = size
        head = nn.Linear(width, n_actions)
        nn.init.orthogonal_(head.weight, gain=output_gain)
        nn.init.zeros_(head.bias)
        layers.append(head)
        self.net = nn.Sequential(*layers)

    @property
    def head(self) -> nn.Linear:
        """The logit layer (tests set it to make a policy uniform or biased)."""
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        return last

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)


class AgentPolicies(nn.Module):
    """Every agent's policy: one net per agent (HARL's default), or one shared by all (`shared`).

    Separate nets are separate parameter tensors, so each agent has its own optimizer and the sequential
    update can step one agent while the others stay exactly as they were. `step` and `initial_hidden` give the
    interface of the recurrent agent nets (no memory: the "hidden state" is a placeholder passed through), so
    collectors and reports treat these policies like the others.
    """

    def __init__(
        self,
        n_agents: int,
        input_dim: int,
        hidden_sizes: list[int],
        n_actions: int,
        activation: Activation | str,
        feature_norm: bool,
        output_gain: float,
        shared: bool,
    ) -> None:
        super().__init__()
        self.n_agents, self.shared = n_agents, shared
        self.nets = nn.ModuleList(
            PolicyMLP(input_dim, hidden_sizes, n_actions, activation, feature_norm, output_gain)
            for _ in range(1 if shared else n_agents)
        )

    def net(self, agent: int) -> PolicyMLP:
        module = self.nets[0 if self.shared else agent]
        assert isinstance(module, PolicyMLP)
        return module

    def agent_logits(self, agent: int, inputs: torch.Tensor) -> torch.Tensor:
        """Logits of one agent from its inputs [..., d] -> [..., A]."""
        return self.net(agent)(inputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Every agent's logits: inputs [..., n, d] -> [..., n, A]."""
        if self.shared:
            return self.nets[0](inputs)
        return torch.stack([net(inputs[..., i, :]) for i, net in enumerate(self.nets)], dim=-2)

    def initial_hidden(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.zeros(batch, 1, device=device)

    def step(self, inputs: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs [E, n, d] -> logits [E, n, A]; the placeholder hidden state comes back unchanged."""
        return self(inputs), hidden


class JointQ(nn.Module):
    """Q(s, a_1, ..., a_n): a plain MLP on the state and the agents' one-hot (or relaxed one-hot) actions."""

    def __init__(
        self, state_dim: int, n_agents: int, n_actions: int, hidden_sizes: list[int], activation: Activation | str
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = state_dim + n_agents * n_actions
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), activation_module(activation)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """state [..., S], actions [..., n, A] -> Q [...]."""
        joint = actions.reshape(*actions.shape[:-2], -1)
        return self.net(torch.cat([state, joint.to(state.dtype)], dim=-1)).squeeze(-1)
