"""The recurrent agent network shared by all agents (pymarl2's n_rnn; docs/algorithms/soft_qmix.md)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from softqmix.nets.packed_gru import PackPlan, packed_gru


def build_agent_inputs(
    obs: torch.Tensor,
    last_actions: torch.Tensor | None,
    n_actions: int,
    agent_id: bool,
) -> torch.Tensor:
    """obs [..., n, o] ++ one-hot(previous action) ++ one-hot(agent index).

    `last_actions` is [..., n] with -1 where there was no previous action (t = 0);
    pass None when the env config turns the previous action off.
    """
    parts = [obs]
    if last_actions is not None:
        parts.append(F.one_hot(last_actions.clamp(min=0), n_actions).to(obs.dtype) * (last_actions >= 0)[..., None])
    if agent_id:
        n = obs.shape[-2]
        eye = torch.eye(n, dtype=obs.dtype, device=obs.device)
        parts.append(eye.expand(*obs.shape[:-2], n, n))
    return torch.cat(parts, dim=-1)


def agent_input_dim(obs_dim: int, n_agents: int, n_actions: int, last_action: bool, agent_id: bool) -> int:
    return obs_dim + (n_actions if last_action else 0) + (n_agents if agent_id else 0)


class RNNAgent(nn.Module):
    """Linear -> ReLU -> GRU -> Linear; one network, the agent id is part of the input.

    Training unrolls whole episodes, with `nn.GRU` over the padded batch or, given each episode's length, with
    the packed GRU of softqmix.nets.packed_gru over the real steps only; acting advances the same weights one step
    at a time, so every path computes the same Q.
    """

    def __init__(self, input_dim: int, hidden_dim: int, n_actions: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.rnn = nn.GRU(hidden_dim, hidden_dim, batch_first=True)
        self.fc2 = nn.Linear(hidden_dim, n_actions)

    def initial_hidden(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.zeros(batch, self.hidden_dim, device=device)

    def unroll(self, inputs: torch.Tensor, plan: PackPlan | None = None) -> torch.Tensor:
        """inputs [B, T, n, d] from a zero hidden state -> Q [B, T, n, A].

        With a `plan` (softqmix.nets.packed_gru.pack_plan of each episode's length) only the episodes' own steps
        are computed and the rest of Q is 0.
        """
        if plan is not None:
            return self._unroll_packed(inputs, plan)
        b, t, n, d = inputs.shape
        x = F.relu(self.fc1(inputs.permute(0, 2, 1, 3).reshape(b * n, t, d)))
        h, _ = self.rnn(x)
        q = self.fc2(h)
        return q.reshape(b, n, t, -1).permute(0, 2, 1, 3)

    def _unroll_packed(self, inputs: torch.Tensor, plan: PackPlan) -> torch.Tensor:
        b, t, n, d = inputs.shape
        if plan.padded_rows != b * t * n:
            raise ValueError(
                f"the pack plan is for {plan.padded_rows} rows, the inputs {tuple(inputs.shape)} have {b * t * n}"
            )
        rows = plan.rows.to(inputs.device)
        x = F.relu(self.fc1(inputs.reshape(-1, d).index_select(0, rows)))
        q = self.fc2(packed_gru(x, self.rnn, plan))
        return q.new_zeros(plan.padded_rows, q.shape[-1]).index_copy(0, rows, q).view(b, t, n, -1)

    def unroll_with_hidden(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like `unroll`, also returning the hidden state after each step [B, T, n, H]."""
        b, t, n, d = inputs.shape
        x = F.relu(self.fc1(inputs.permute(0, 2, 1, 3).reshape(b * n, t, d)))
        h, _ = self.rnn(x)
        out = self.fc2(h).reshape(b, n, t, -1).permute(0, 2, 1, 3)
        return out, h.reshape(b, n, t, -1).permute(0, 2, 1, 3)

    def unroll_sequences(self, inputs: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """inputs [N, L, d] from hidden states [N, H] -> outputs [N, L, A] (recurrent data chunks)."""
        h, _ = self.rnn(F.relu(self.fc1(inputs)), hidden.unsqueeze(0))
        return self.fc2(h)

    def step(self, inputs: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs [E, n, d], hidden [E*n, H] -> Q [E, n, A], new hidden."""
        e, n, d = inputs.shape
        x = F.relu(self.fc1(inputs.reshape(e * n, 1, d)))
        out, h = self.rnn(x, hidden.unsqueeze(0))
        return self.fc2(out[:, 0]).reshape(e, n, -1), h[0]


class MLPAgent(nn.Module):
    """Linear -> ReLU -> Linear -> ReLU -> Linear on the current input only (EPyMARL's agent with use_rnn=False).

    The same interface as RNNAgent, so every learner takes either; the "hidden state" is the last hidden
    layer's output, returned for shape compatibility and never fed back.
    """

    def __init__(self, input_dim: int, hidden_dim: int, n_actions: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, n_actions)

    def initial_hidden(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.zeros(batch, self.hidden_dim, device=device)

    def _forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc2(F.relu(self.fc1(inputs))))
        return self.fc3(h), h

    def unroll(self, inputs: torch.Tensor, plan: PackPlan | None = None) -> torch.Tensor:
        """inputs [B, T, n, d] -> Q [B, T, n, A]; a pack `plan` is accepted for the RNN's interface and not needed
        (each step stands alone; steps past an episode's end are computed and masked by the learner)."""
        return self._forward(inputs)[0]

    def unroll_with_hidden(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._forward(inputs)

    def unroll_sequences(self, inputs: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        return self._forward(inputs)[0]

    def step(self, inputs: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs [E, n, d] -> Q [E, n, A] and the hidden layer [E*n, H]."""
        q, h = self._forward(inputs)
        return q, h.reshape(-1, self.hidden_dim)


AGENT_NETS: dict[str, type[nn.Module]] = {"rnn": RNNAgent, "mlp": MLPAgent}


def make_agent_net(kind: str, input_dim: int, hidden_dim: int, n_actions: int) -> nn.Module:
    """`algo.agent`: rnn (GRU, pymarl2's n_rnn and the paper's agent) or mlp (no memory)."""
    return AGENT_NETS[getattr(kind, "value", kind)](input_dim, hidden_dim, n_actions)
