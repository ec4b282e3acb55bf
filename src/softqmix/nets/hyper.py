"""Small state-conditioned hypernetworks shared by the mixer and the transforms."""

from __future__ import annotations

from torch import nn


def hyper_mlp(state_dim: int, hidden: int, out: int) -> nn.Sequential:
    """Linear -> ReLU -> Linear, the two-layer hypernet of pymarl2's QMIX."""
    return nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, out))
