"""Would torch.compile make the update faster? The two hot spots of the value-factorisation update, timed
eagerly and compiled, in one torch thread (CPU milliseconds per call, median of repeats):

    python benchmarks/compile_probe.py --out benchmarks/results/compile_probe.json

1. The agent net's GRU over an MPE batch (32 episodes x 3 agents, 26 steps, 64 units), forward and backward:
   nn.GRU against the same GRU written as a loop over a compiled cell, and as a fully compiled loop.
2. The transform g over every action of a SMAX 5v5 batch (32 x 201 steps x 5 agents x 11 actions x 16
   hidden units) without autograd: out-of-place eager, in-place eager (what the learner runs), compiled.
Compilation time is reported too: a run compiles once per process (per new shape without dynamic shapes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


def cpu_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.thread_time()
        fn()
        times.append(time.thread_time() - started)
    return round(1000 * statistics.median(times), 2)


def timed_compile(fn: Callable[..., Any], *args: Any, **options: Any) -> tuple[Callable[..., Any], float]:
    compiled = torch.compile(fn, **options)
    started = time.perf_counter()
    out = compiled(*args)
    if isinstance(out, torch.Tensor) and out.requires_grad:
        out.sum().backward()
    return compiled, round(time.perf_counter() - started, 1)


def gru_rows(repeats: int) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    gru = torch.nn.GRU(64, 64, batch_first=True)
    x = torch.randn(96, 26, 64, requires_grad=True)

    def cell(gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        i_r, i_z, i_n = gi.chunk(3, -1)
        h_r, h_z, h_n = gh.chunk(3, -1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return n + z * (h - n)

    def loop(inputs: torch.Tensor, step: Callable[..., torch.Tensor] = cell) -> torch.Tensor:
        gi = F.linear(inputs, gru.weight_ih_l0, gru.bias_ih_l0)
        h, outs = inputs.new_zeros(inputs.shape[0], 64), []
        for t in range(inputs.shape[1]):
            h = step(gi[:, t], F.linear(h, gru.weight_hh_l0, gru.bias_hh_l0), h)
            outs.append(h)
        return torch.stack(outs, 1)

    compiled_cell, cell_seconds = timed_compile(cell, *(torch.randn(96, 192),) * 2, torch.randn(96, 64), dynamic=True)
    compiled_loop, loop_seconds = timed_compile(loop, x)
    assert torch.allclose(loop(x), gru(x)[0], atol=1e-5)
    return [
        {"part": "GRU fwd+bwd", "variant": "nn.GRU", "cpu_ms": cpu_ms(lambda: gru(x)[0].sum().backward(), repeats)},
        {
            "part": "GRU fwd+bwd",
            "variant": "eager cell loop",
            "cpu_ms": cpu_ms(lambda: loop(x).sum().backward(), repeats),
        },
        {
            "part": "GRU fwd+bwd",
            "variant": "compiled cell loop",
            "cpu_ms": cpu_ms(lambda: loop(x, compiled_cell).sum().backward(), repeats),
            "compile_seconds": cell_seconds,
        },
        {
            "part": "GRU fwd+bwd",
            "variant": "compiled loop",
            "cpu_ms": cpu_ms(lambda: compiled_loop(x).sum().backward(), repeats),
            "compile_seconds": loop_seconds,
        },
    ]


def g_rows(repeats: int) -> list[dict[str, Any]]:
    b, t, n, a, d = 32, 201, 5, 11, 16
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(b, t, n, a, generator=gen)
    w1, w2 = torch.rand(b, t, n, 1, d, generator=gen), torch.rand(b, t, n, 1, d, generator=gen)
    b1, b2 = torch.randn(b, t, n, 1, d, generator=gen), torch.randn(b, t, n, 1, generator=gen)

    def plain(v: torch.Tensor) -> torch.Tensor:
        return (F.elu(v.unsqueeze(-1) * w1 + b1) * w2).sum(-1) + b2 + v

    def in_place(v: torch.Tensor) -> torch.Tensor:
        hidden = torch.addcmul(b1, v.unsqueeze(-1), w1)
        F.elu(hidden, inplace=True)
        return hidden.mul_(w2).sum(-1).add_(b2).add_(v)

    with torch.no_grad():
        compiled, seconds = timed_compile(plain, values, dynamic=True)
        assert torch.allclose(in_place(values), plain(values), atol=1e-5)
        return [
            {"part": "g over all actions", "variant": "eager", "cpu_ms": cpu_ms(lambda: plain(values), repeats)},
            {
                "part": "g over all actions",
                "variant": "eager in place",
                "cpu_ms": cpu_ms(lambda: in_place(values), repeats),
            },
            {
                "part": "g over all actions",
                "variant": "compiled",
                "cpu_ms": cpu_ms(lambda: compiled(values), repeats),
                "compile_seconds": seconds,
            },
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = gru_rows(args.repeats) + g_rows(args.repeats)
    for row in rows:
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {"command": f"python benchmarks/compile_probe.py --repeats {args.repeats}", "torch": torch.__version__}
        args.out.write_text(json.dumps({**report, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
