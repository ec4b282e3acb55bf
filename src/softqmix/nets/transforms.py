"""Order-preserving transforms g (critic side) and f (policy logits), docs/algorithms/soft_qmix.md, "Networks".

Both act elementwise on each agent's action values with parameters that depend only on
(state, agent), so they never reorder an agent's actions: argmax of the policy equals
argmax of the raw Q_i (IGM). With `nonneg=False` (the paper's `Ablation_absolute`) that
guarantee is gone on purpose.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from softqmix.nets.hyper import hyper_mlp


def _weight(x: torch.Tensor, nonneg: bool) -> torch.Tensor:
    return x.abs() if nonneg else x


class IdentityTransform(nn.Module):
    """Stands in for g or f when an ablation switches it off."""

    def weights(self, state: torch.Tensor) -> None:
        return None

    def apply(self, values: torch.Tensor, weights: None) -> torch.Tensor:
        return values

    def forward(self, values: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return values


def _g_in_place(values: torch.Tensor, weights: tuple[torch.Tensor, ...], residual: bool) -> torch.Tensor:
    """g without autograd: the [..., A, d] intermediate is built once and transformed in place (on every
    action of a SMAX batch a third of the time of the out-of-place expression)."""
    w1, b1, w2, b2 = weights
    hidden = torch.addcmul(b1, values.unsqueeze(-1), w1)
    F.elu(hidden, inplace=True)
    out = hidden.mul_(w2).sum(-1).add_(b2)
    return out.add_(values) if residual else out


def _g_plain(values: torch.Tensor, weights: tuple[torch.Tensor, ...], residual: bool) -> torch.Tensor:
    w1, b1, w2, b2 = weights
    out = (F.elu(values.unsqueeze(-1) * w1 + b1) * w2).sum(-1) + b2
    return out + values if residual else out


class MonotoneG(nn.Module):
    """g_i(x; s) = [x +] sum_k |W2_ik(s)| ELU(|W1_ik(s)| x + B1_ik(s)) + B2_i(s).

    values: [..., n, A] (A may be 1 for taken actions), state: [..., S]. `weights(state)` and
    `apply(values, weights)` split the hypernetworks from the elementwise map, so a learner can run the
    hypernetworks once and apply g to the taken actions (with gradient) and to all actions (without).
    """

    def __init__(
        self, n_agents: int, state_dim: int, hidden: int, hypernet_embed: int, residual: bool, nonneg: bool
    ) -> None:
        super().__init__()
        self.n, self.d = n_agents, hidden
        self.residual, self.nonneg = residual, nonneg
        self.w1 = hyper_mlp(state_dim, hypernet_embed, n_agents * hidden)
        self.b1 = nn.Linear(state_dim, n_agents * hidden)
        self.w2 = hyper_mlp(state_dim, hypernet_embed, n_agents * hidden)
        self.b2 = hyper_mlp(state_dim, hypernet_embed, n_agents)
        self.no_grad_apply = _g_in_place

    def compile_no_grad_path(self) -> None:
        """trainer.compile: the no-autograd g through torch.compile (one fused loop; a few seconds to compile
        once per process, shapes dynamic; benchmarks/compile_probe.py)."""
        self.no_grad_apply = torch.compile(_g_plain, dynamic=True)

    def weights(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W1, B1, W2) [..., n, 1, d] and B2 [..., n, 1] for each state."""
        lead = state.shape[:-1]
        w1 = _weight(self.w1(state), self.nonneg).view(*lead, self.n, 1, self.d)
        b1 = self.b1(state).view(*lead, self.n, 1, self.d)
        w2 = _weight(self.w2(state), self.nonneg).view(*lead, self.n, 1, self.d)
        b2 = self.b2(state).view(*lead, self.n, 1)
        return w1, b1, w2, b2

    def apply(
        self, values: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return self.no_grad_apply(values, weights, self.residual)
        return _g_plain(values, weights, self.residual)

    def forward(self, values: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.apply(values, self.weights(state))


def detached(weights: tuple[torch.Tensor, ...] | None) -> tuple[torch.Tensor, ...] | None:
    return None if weights is None else tuple(w.detach() for w in weights)


class AffineF(nn.Module):
    """f_i(y; s) = |w_i(s)| y + b_i(s); values [..., n, A], state [..., S]."""

    def __init__(self, n_agents: int, state_dim: int, hypernet_embed: int, nonneg: bool) -> None:
        super().__init__()
        self.n, self.nonneg = n_agents, nonneg
        self.w = hyper_mlp(state_dim, hypernet_embed, n_agents)
        self.b = hyper_mlp(state_dim, hypernet_embed, n_agents)

    def forward(self, values: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        w = _weight(self.w(state), self.nonneg).unsqueeze(-1)
        return w * values + self.b(state).unsqueeze(-1)
