"""QPLEX (Wang et al., ICLR 2021, "QPLEX: Duplex Dueling Multi-Agent Q-Learning") as a value-factorisation mixer.

The joint value is written as a duplex dueling sum over the agents' utilities u_i (here Q_i, or g_i(Q_i)
when `use_g` is on):

    u'_i = w_i(s) u_i + v_i(s),   m'_i = w_i(s) max_a u_i(a) + v_i(s),   w_i = |W(s)|_i + 1e-10
    Q_tot(s, a) = sum_i u'_i + sum_i (lambda_i(s, a) - 1) * stopgrad(u'_i - m'_i)

with lambda_i(s, a) = sum_k |key_k(s)| * sigmoid(agents_k(s))_i * sigmoid(actions_k(s, a))_i > 0, one term per
attention head k. Since every lambda_i is positive and each advantage u'_i - m'_i is <= 0 with equality at
the greedy action, the greedy joint action of Q_tot is the agents' own greedy actions (IGM), while Q_tot
can take non-monotonic shapes that QMIX cannot. This follows the authors' code (wjh720/QPLEX, kept in pymarl2 as
src/modules/mixers/dmaq_general.py with `weighted_head: True`, `is_minus_one: True`, stop-gradient on the
advantage, and dmaq_si_weight.py for lambda); targets are the double-Q hard targets of the QMIX learner.

This module is the whole of QPLEX: its mixer, its config (the attention width and depth) and its name in
the algorithm registry; `conf/algo/qplex.yaml` selects it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from softqmix.algos.registry import AlgorithmSpec, register_algorithm
from softqmix.algos.value_factorisation import ValueFactorisation, ValueFactorisationConfig, needs_state
from softqmix.errors import ConfigError
from softqmix.nets.attention_weights import PositiveAttentionWeights
from softqmix.nets.hyper import hyper_mlp
from softqmix.nets.mixers import MixerShape, MixerSpec, register_mixer


@dataclass
class QPLEXConfig(ValueFactorisationConfig):
    """QMIX's learner with the QPLEX mixer; the mixer's defaults are the authors' (wjh720/QPLEX,
    pymarl-master/src/config/algs/qplex.yaml: num_kernel 10, adv_hypernet_layers 3, adv_hypernet_embed 64)."""

    mixer: str = "qplex"
    qplex_heads: int = 10  # attention heads of lambda (num_kernel)
    qplex_attention_embed: int = 64  # hidden width of each head's networks (adv_hypernet_embed)
    qplex_attention_layers: int = 3  # 1, 2 or 3 layers per head network (adv_hypernet_layers)


class QPLEXMixer(nn.Module):
    """Duplex dueling mixer; forward(u [..., n], s [..., S], actions [..., n], max_u [..., n]) -> Q_tot [...]."""

    def __init__(self, shape: MixerShape, hypernet_embed: int, heads: int, embed: int, layers: int) -> None:
        super().__init__()
        if layers not in (1, 2, 3) or heads < 1:
            raise ConfigError(
                f"algo.qplex_attention_layers must be 1, 2 or 3 and algo.qplex_heads >= 1, got {layers}, {heads}"
            )
        n, s = shape.n_agents, shape.state_dim
        self.n_actions = shape.n_actions
        self.weight = hyper_mlp(s, hypernet_embed, n)
        self.bias = hyper_mlp(s, hypernet_embed, n)
        self.attention = PositiveAttentionWeights(n, shape.n_actions, s, heads, embed, layers)

    def lambdas(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """lambda [..., n] > 0 from the state and the joint action (indices [..., n])."""
        return self.attention(state, F.one_hot(actions, self.n_actions).to(state.dtype))

    def forward(
        self,
        utilities: torch.Tensor,
        state: torch.Tensor,
        actions: torch.Tensor | None = None,
        max_utilities: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if actions is None or max_utilities is None:
            raise ValueError("the QPLEX mixer needs the joint action and each agent's max utility")
        w = self.weight(state).abs() + 1e-10
        v = self.bias(state)
        chosen = w * utilities + v
        best = w * max_utilities + v
        advantage = (chosen - best).detach()
        return chosen.sum(-1) + ((self.lambdas(state, actions) - 1.0) * advantage).sum(-1)


def _build_qplex(shape: MixerShape, cfg: object) -> nn.Module:
    missing = [k for k in ("qplex_heads", "qplex_attention_embed", "qplex_attention_layers") if not hasattr(cfg, k)]
    if missing:
        raise ConfigError(f"algo.mixer=qplex needs {', '.join(f'algo.{k}' for k in missing)}; use algo=qplex")
    return QPLEXMixer(
        shape,
        cfg.hypernet_embed,  # type: ignore[attr-defined]
        cfg.qplex_heads,  # type: ignore[attr-defined]
        cfg.qplex_attention_embed,  # type: ignore[attr-defined]
        cfg.qplex_attention_layers,  # type: ignore[attr-defined]
    )


register_mixer(MixerSpec(name="qplex", build=_build_qplex, needs_state=True, takes_actions=True))
register_algorithm(
    AlgorithmSpec(
        name="qplex",
        learner=ValueFactorisation,
        config=QPLEXConfig,
        summary="QPLEX: duplex dueling mixer (IGM-complete), epsilon-greedy, double-Q TD(lambda)",
        overlapped_collection=True,
        joint_value=True,
        needs_state=needs_state,
    )
)
