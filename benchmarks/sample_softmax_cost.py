"""Milliseconds to sample next actions from a softmax over a replay batch: ours against torch's own operators.

    python benchmarks/sample_softmax_cost.py --shape 32 91 5 11 --out benchmarks/results/sample_softmax_cost.json

Soft-QMIX's target samples every agent's next action at every step of the batch ([episodes, steps, agents,
actions]: 32 x 91 x 5 x 11 on a SMAX 5v5 batch whose longest battle has 90 steps). `sample_softmax` draws by the
inverse CDF; the reference is `log_softmax` followed by `torch.multinomial` on the probabilities, what the learner
did before. Both get the same masked logits (a random 30% of the actions unavailable, one always available), in
one torch thread; the script also checks that both give the same log-probabilities. Prints and saves JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from softqmix.algos.action_selection import masked_logits, sample_softmax


def multinomial_reference(logits: torch.Tensor, avail: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    log_probs = torch.log_softmax(masked_logits(logits, avail), dim=-1)
    flat = log_probs.reshape(-1, log_probs.shape[-1]).exp()
    return torch.multinomial(flat, 1).view(log_probs.shape[:-1]), log_probs


def median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", nargs=4, type=int, default=[32, 91, 5, 11], metavar=("B", "T", "N", "A"))
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(*args.shape, generator=gen)
    avail = (torch.rand(*args.shape, generator=gen) > 0.3).float()
    avail[..., 1] = 1.0
    _, ours_log_probs = sample_softmax(logits, avail)
    _, reference_log_probs = multinomial_reference(logits, avail)
    row = {
        "shape": args.shape,
        "rows": int(logits[..., 0].numel()),
        "sample_softmax_ms": median_ms(lambda: sample_softmax(logits, avail), args.repeats),
        "log_softmax_multinomial_ms": median_ms(lambda: multinomial_reference(logits, avail), args.repeats),
        "max_log_prob_difference_on_available": float(((ours_log_probs - reference_log_probs) * avail).abs().max()),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(row))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
