"""Size and time of a checkpoint and of the optional replay-buffer file, per env shape.

    python benchmarks/checkpoint_cost.py --out benchmarks/results/checkpoint_cost.json

The buffer is filled with full-length episodes of random observations (the incompressible
worst case; real buffers with padding and dead agents compress better).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

from softqmix.algos.registry import build_learner
from softqmix.checkpointing import capture_rng_state, load_buffer, save_buffer
from softqmix.data.buffer import EpisodeBuffer
from softqmix.envs.base import EnvInfo

SHAPES = {
    "matrix": EnvInfo(n_agents=2, n_actions=3, obs_dim=2, state_dim=2, episode_limit=1),
    "mpe_spread": EnvInfo(n_agents=3, n_actions=5, obs_dim=18, state_dim=54, episode_limit=25),
}


def measure(name: str, info: EnvInfo, buffer_size: int) -> dict[str, float | int | str]:
    module = build_learner({"name": "soft_qmix"}, info, False)
    buffer = EpisodeBuffer(buffer_size, info)
    gen = torch.Generator().manual_seed(0)
    buffer.storage.obs.copy_(torch.randn(buffer.storage.obs.shape, generator=gen))
    buffer.storage.state.copy_(torch.randn(buffer.storage.state.shape, generator=gen))
    buffer.storage.avail.fill_(1.0)
    buffer.storage.filled.fill_(1.0)
    buffer.size = buffer_size
    optimizers = [torch.optim.Adam(module.parameters())]
    for p in module.parameters():  # give Adam its state
        p.grad = torch.zeros_like(p)
    optimizers[0].step()
    payload = {
        "state_dict": module.state_dict(),
        "optimizers": [o.state_dict() for o in optimizers],
        "rng": capture_rng_state(),
    }
    raw = io.BytesIO()
    started = time.perf_counter()
    torch.save(payload, raw)
    ckpt_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "buffer.pt.gz"
        started = time.perf_counter()
        written = save_buffer(buffer, path, stamp=0)
        save_seconds = time.perf_counter() - started
        started = time.perf_counter()
        load_buffer(EpisodeBuffer(buffer_size, info), path, stamp=0)
        load_seconds = time.perf_counter() - started
    raw_buffer = sum(t.numel() * t.element_size() for t in buffer.state_dict()["storage"].values())
    return {
        "shape": name,
        "buffer_episodes": buffer_size,
        "checkpoint_bytes": raw.getbuffer().nbytes,
        "checkpoint_save_seconds": round(ckpt_seconds, 4),
        "buffer_raw_bytes": raw_buffer,
        "buffer_file_bytes": written,
        "buffer_save_seconds": round(save_seconds, 3),
        "buffer_load_seconds": round(load_seconds, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--buffer-size", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/checkpoint_cost.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(name, info, args.buffer_size) for name, info in SHAPES.items()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
