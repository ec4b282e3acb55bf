"""Mixers: per-agent utilities [..., n] and state [..., S] -> joint value."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from softqmix.config import Mixer
from softqmix.nets.hyper import hyper_mlp


class NoMixer(nn.Module):
    """Independent learners: keeps one value per agent, [..., n]."""

    def forward(self, agent_qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return agent_qs


class SumMixer(nn.Module):
    """VDN's sum; also the released Soft-QMIX mixer (ALGORITHM.md §1.5)."""

    def forward(self, agent_qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return agent_qs.sum(-1)


class QMixer(nn.Module):
    """Q_tot = ELU(q W1(s) + b1(s)) W2(s) + V(s) with |W| >= 0 so dQ_tot/dq_i >= 0 (pymarl2 nmix)."""

    def __init__(self, n_agents: int, state_dim: int, embed_dim: int, hypernet_embed: int, nonneg: bool) -> None:
        super().__init__()
        self.n, self.e, self.nonneg = n_agents, embed_dim, nonneg
        self.w1 = hyper_mlp(state_dim, hypernet_embed, n_agents * embed_dim)
        self.b1 = nn.Linear(state_dim, embed_dim)
        self.w2 = hyper_mlp(state_dim, hypernet_embed, embed_dim)
        self.v = hyper_mlp(state_dim, embed_dim, 1)

    def forward(self, agent_qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        lead = agent_qs.shape[:-1]
        q = agent_qs.reshape(-1, 1, self.n)
        s = state.reshape(-1, state.shape[-1])
        w1 = self.w1(s).view(-1, self.n, self.e)
        w2 = self.w2(s).view(-1, self.e, 1)
        if self.nonneg:
            w1, w2 = w1.abs(), w2.abs()
        hidden = F.elu(torch.bmm(q, w1) + self.b1(s).unsqueeze(1))
        out = torch.bmm(hidden, w2).squeeze(-1) + self.v(s)
        return out.view(*lead)


def make_mixer(
    kind: Mixer | str, n_agents: int, state_dim: int, embed_dim: int, hypernet_embed: int, nonneg: bool
) -> nn.Module:
    kind = Mixer(kind)
    if kind is Mixer.none:
        return NoMixer()
    if kind is Mixer.sum:
        return SumMixer()
    return QMixer(n_agents, state_dim, embed_dim, hypernet_embed, nonneg)
