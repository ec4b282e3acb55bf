"""Mixers: per-agent utilities and the state -> a joint value, by name (`algo.mixer`).

Every mixer is called as `mixer(utilities, state, actions, max_utilities)`:
utilities [..., n] of the chosen actions, state [..., S], the joint action [..., n] (indices) and
each agent's largest utility over its available actions [..., n]. Monotonic mixers use only the
first two; dueling mixers such as QPLEX (softqmix.algos.qplex) need all four. A mixer module
registers itself here with `register_mixer`, so a new mixer is one module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from softqmix.nets.hyper import hyper_mlp
from softqmix.registry import Registry


@dataclass(frozen=True)
class MixerShape:
    """The sizes a mixer is built for."""

    n_agents: int
    n_actions: int
    state_dim: int


@dataclass(frozen=True)
class MixerSpec:
    """A mixer by name: how to build it from the sizes and the algo config, and what it needs."""

    name: str
    build: Callable[[MixerShape, Any], nn.Module]
    needs_state: bool
    takes_actions: bool = False  # also needs the joint action and each agent's max utility
    per_agent: bool = False  # keeps one value per agent [..., n] (independent learners), not a joint one


MIXERS: Registry[MixerSpec] = Registry("mixer", ("softqmix.nets", "softqmix.algos"))


def register_mixer(spec: MixerSpec) -> MixerSpec:
    return MIXERS.register(spec.name, spec)


def mixer_spec(name: str) -> MixerSpec:
    return MIXERS.get(name)


def make_mixer(name: str, shape: MixerShape, cfg: Any) -> nn.Module:
    return mixer_spec(name).build(shape, cfg)


class NoMixer(nn.Module):
    """Independent learners: keeps one value per agent, [..., n]."""

    def forward(self, utilities: torch.Tensor, state: torch.Tensor, *_: Any) -> torch.Tensor:
        return utilities


class SumMixer(nn.Module):
    """VDN's sum; also the mixer of the authors' released Soft-QMIX code (docs/algorithms/soft_qmix.md)."""

    def forward(self, utilities: torch.Tensor, state: torch.Tensor, *_: Any) -> torch.Tensor:
        return utilities.sum(-1)


class QMixer(nn.Module):
    """Q_tot = ELU(q W1(s) + b1(s)) W2(s) + V(s) with |W| >= 0 so dQ_tot/dq_i >= 0 (pymarl2 nmix)."""

    def __init__(self, n_agents: int, state_dim: int, embed_dim: int, hypernet_embed: int, nonneg: bool) -> None:
        super().__init__()
        self.n, self.e, self.nonneg = n_agents, embed_dim, nonneg
        self.w1 = hyper_mlp(state_dim, hypernet_embed, n_agents * embed_dim)
        self.b1 = nn.Linear(state_dim, embed_dim)
        self.w2 = hyper_mlp(state_dim, hypernet_embed, embed_dim)
        self.v = hyper_mlp(state_dim, embed_dim, 1)

    def forward(self, utilities: torch.Tensor, state: torch.Tensor, *_: Any) -> torch.Tensor:
        # Broadcast products and sums instead of batched matmuls of [1 x n] by [n x E]: on a CPU, bmm over
        # thousands of tiny matrices costs 3-5x more, forward and backward (benchmarks/update_cost.py).
        lead = utilities.shape[:-1]
        q = utilities.reshape(-1, self.n, 1)
        s = state.reshape(-1, state.shape[-1])
        w1 = self.w1(s).view(-1, self.n, self.e)
        w2 = self.w2(s).view(-1, self.e)
        if self.nonneg:
            w1, w2 = w1.abs(), w2.abs()
        hidden = F.elu((q * w1).sum(-2) + self.b1(s))  # [N, E]
        out = (hidden * w2).sum(-1, keepdim=True) + self.v(s)
        return out.view(*lead)


register_mixer(MixerSpec("none", lambda shape, cfg: NoMixer(), needs_state=False, per_agent=True))
register_mixer(MixerSpec("sum", lambda shape, cfg: SumMixer(), needs_state=False))
register_mixer(
    MixerSpec(
        "qmix",
        lambda shape, cfg: QMixer(
            shape.n_agents, shape.state_dim, cfg.mixing_embed_dim, cfg.hypernet_embed, cfg.nonneg
        ),
        needs_state=True,
    )
)
