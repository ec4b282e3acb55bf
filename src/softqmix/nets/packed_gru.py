"""A GRU unrolled over each episode's own steps only, with a hand-written backward pass.

Why: a value learner's replay batch is padded to its longest episode (on SMAX about 90 steps while battles last
about 55), and `nn.GRU` unrolls the padding too. torch's own PackedSequence GRU skips it but costs more than the
padded one on a CPU (benchmarks/gru_unroll_layouts.py). Here the steps of a batch are packed time-major
(PackedSequence's layout: at step t the rows of the episodes still running, longest first), the input-side
matrices run once over the packed rows, and only the recurrence loops over time. The backward pass is written out
so that each step costs a handful of elementwise ops and one matrix product, and the weight gradient is one
matrix product over all steps instead of one per step.

Same parameters and the same maths as one layer of `nn.GRU` (gate order r, z, n):
    r = s(x W_ir + b_ir + h W_hr + b_hr),  z = s(x W_iz + b_iz + h W_hz + b_hz)
    n = tanh(x W_in + b_in + r * (h W_hn + b_hn)),  h' = (1 - z) n + z h
from a zero hidden state. tests/test_packed_gru.py checks values and gradients against `nn.GRU` in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class PackPlan:
    """Where each packed row comes from, for B episodes of n agents over T steps ([B, T, n, ...] layout).

    rows:        [N] flat index into the [B*T*n] rows of each packed row, time-major, longest episode first
    batch_sizes: rows of each step (non-increasing), as PackedSequence's batch_sizes
    prev_rows:   [N - batch_sizes[0]] the packed row of the same agent one step earlier, for every row after
                 the first step
    """

    rows: torch.Tensor
    batch_sizes: tuple[int, ...]
    prev_rows: torch.Tensor
    padded_rows: int

    @property
    def packed_rows(self) -> int:
        return int(self.rows.numel())


def pack_plan(lengths: torch.Tensor, n_agents: int, steps: int) -> PackPlan:
    """Plan for episodes of `lengths` [B] steps (each 1..steps), every agent of an episode as long as it."""
    if lengths.dim() != 1 or lengths.numel() == 0:
        raise ValueError(f"lengths must be a non-empty [B] tensor, got shape {tuple(lengths.shape)}")
    lengths = lengths.to("cpu", torch.long)
    if int(lengths.min()) < 1 or int(lengths.max()) > steps:
        raise ValueError(f"episode lengths must lie in 1..{steps}, got {lengths.tolist()}")
    order = torch.argsort(lengths, descending=True, stable=True)
    longest_first = lengths[order]
    t = torch.arange(steps)
    running = t[:, None] < longest_first[None, :]  # [T, B]
    first_row = order[None, :] * (steps * n_agents) + t[:, None] * n_agents  # [T, B]
    rows = (first_row[..., None] + torch.arange(n_agents)).reshape(steps, -1)
    rows = rows[running.repeat_interleave(n_agents, dim=1)]
    sizes = running.sum(1) * n_agents
    sizes = sizes[sizes > 0]
    later = sizes[1:]  # the rows of every step after the first point back into the step before
    starts = torch.cumsum(sizes, 0) - sizes
    first_of_step = torch.repeat_interleave(torch.cumsum(later, 0) - later, later)
    prev_rows = torch.repeat_interleave(starts[:-1], later) + torch.arange(int(later.sum())) - first_of_step
    return PackPlan(rows, tuple(sizes.tolist()), prev_rows, steps * n_agents * int(lengths.numel()))


class PackedGRU(torch.autograd.Function):
    """h for every packed row, from the input-side products gi = x W_ih ([N, 3H]) and the biases.

    b_ih is added inside the recurrence, where each step's rows are in cache, instead of to all of gi at once
    (a pass over [N, 3H] in memory); for r and z it joins b_hh in the hidden-side product's bias.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        gi: torch.Tensor,
        b_ih: torch.Tensor,
        w_hh: torch.Tensor,
        b_hh: torch.Tensor,
        batch_sizes: tuple[int, ...],
        prev_rows: torch.Tensor,
    ) -> torch.Tensor:
        rows, h3 = gi.shape
        hid = h3 // 3
        out = gi.new_empty(rows, hid)
        # the hidden-side pre-activations, gates and candidates of every row, kept for the backward pass
        hidden_side = gi.new_empty(rows, h3)
        gates = gi.new_empty(rows, 2 * hid)
        candidates = gi.new_empty(rows, hid)
        h = gi.new_zeros(batch_sizes[0], hid)
        w_t = w_hh.t()
        step_bias = torch.cat([b_ih[: 2 * hid] + b_hh[: 2 * hid], b_hh[2 * hid :]])
        # tanh(a) = 2 sigmoid(2a) - 1: ATen's float tanh costs about 6x its sigmoid per element on the CPUs we
        # measured, and the candidate's tanh was the loop's costliest op; twice its input side, for all rows at once
        twice_gi_n = (gi[:, 2 * hid :] + b_ih[2 * hid :]).mul_(2)
        start = 0
        for size in batch_sizes:
            end = start + size
            h_prev = h[:size]
            gh = torch.addmm(step_bias, h_prev, w_t, out=hidden_side[start:end])  # r, z: both biases; n: b_hn
            rz = torch.add(gh[:, : 2 * hid], gi[start:end, : 2 * hid], out=gates[start:end]).sigmoid_()
            n = torch.addcmul(twice_gi_n[start:end], rz[:, :hid], gh[:, 2 * hid :], value=2, out=candidates[start:end])
            n.sigmoid_().mul_(2).sub_(1)
            h = torch.lerp(n, h_prev, rz[:, hid:], out=out[start:end])  # n + z (h - n) in one op
            start = end
        ctx.save_for_backward(w_hh, out, hidden_side, gates, candidates, prev_rows)
        ctx.batch_sizes = batch_sizes
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        w_hh, out, hidden_side, gates, candidates, prev_rows = ctx.saved_tensors
        batch_sizes: tuple[int, ...] = ctx.batch_sizes
        rows, hid = out.shape
        h_prev = torch.cat([out.new_zeros(batch_sizes[0], hid), out.index_select(0, prev_rows)])
        r, z, n = gates[:, :hid], gates[:, hid:], candidates
        # the factors that do not depend on the incoming gradient, over all rows at once
        dn_dh = (1 - z) * (1 - n * n)  # d h' / d (pre-tanh n)
        dr_dn = hidden_side[:, 2 * hid :] * r * (1 - r)  # d (pre-tanh n) / d (pre-sigmoid r)
        dz_dh = (h_prev - n) * z * (1 - z)  # d h' / d (pre-sigmoid z)
        grad_gi = grad_out.new_empty(rows, 3 * hid)  # [r, z, n] pre-activations
        grad_gh = grad_out.new_empty(rows, 3 * hid)  # the same, n's hidden side scaled by r
        grad_out = grad_out.contiguous()
        carry: torch.Tensor | None = None  # dL/dh from the next step
        end = rows
        for size in reversed(batch_sizes):
            start = end - size
            d = grad_out[start:end]
            if carry is not None and carry.shape[0] == size:
                d = d + carry
            elif carry is not None:  # episodes that ended at this step get nothing from the next one
                d = d.clone()
                d[: carry.shape[0]] += carry
            gi_rows, gh_rows = grad_gi[start:end], grad_gh[start:end]
            d_n = torch.mul(d, dn_dh[start:end], out=gi_rows[:, 2 * hid :])
            torch.mul(d_n, dr_dn[start:end], out=gi_rows[:, :hid])
            torch.mul(d, dz_dh[start:end], out=gi_rows[:, hid : 2 * hid])
            gh_rows[:, : 2 * hid] = gi_rows[:, : 2 * hid]
            torch.mul(d_n, r[start:end], out=gh_rows[:, 2 * hid :])
            carry = torch.addmm(d * z[start:end], gh_rows, w_hh)
            end = start
        grad_b_ih = grad_gi.sum(0) if ctx.needs_input_grad[1] else None
        grad_w = grad_gh.t() @ h_prev if ctx.needs_input_grad[2] else None
        grad_b_hh = grad_gh.sum(0) if ctx.needs_input_grad[3] else None
        return grad_gi, grad_b_ih, grad_w, grad_b_hh, None, None


def packed_gru(x: torch.Tensor, gru: nn.GRU, plan: PackPlan) -> torch.Tensor:
    """Hidden states [N, H] of the packed rows from their inputs x [N, d], with the weights of a one-layer GRU."""
    gi = torch.mm(x, gru.weight_ih_l0.t())
    prev_rows = plan.prev_rows.to(x.device)
    out: torch.Tensor = PackedGRU.apply(
        gi, gru.bias_ih_l0, gru.weight_hh_l0, gru.bias_hh_l0, plan.batch_sizes, prev_rows
    )
    return out
