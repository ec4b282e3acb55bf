"""Checkpoint files that survive crashes, and the RNG and buffer state that make a resume exact."""

from __future__ import annotations

import gzip
import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO

from softqmix.data.buffer import EpisodeBuffer
from softqmix.errors import ConfigError

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BUFFER_FILE = "buffer.pt.gz"


def checkpoint_path(run_dir: Path) -> Path:
    return run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT


def checkpoint_env_step(path: Path) -> int:
    """The env step a checkpoint was taken at; a clear error if the file cannot be read.

    Our own checkpoints are written atomically, but a copy interrupted by a full disk or a
    file touched by hand would otherwise surface as an unpickling traceback.
    """
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["progress"]["t_env"])
    except Exception as exc:  # any unreadable or foreign file
        raise ConfigError(
            f"the checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); "
            "delete it to start the run afresh, or pass resume=<a run dir with a good checkpoint>"
        ) from exc


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over the target.

    A crash at any point leaves either the old file or the new one, never a torn file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint format, written atomically (temp file + rename)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())


def capture_rng_state() -> dict[str, Any]:
    """Global RNG states as plain types, so checkpoints load with torch.load(weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in state["python"]))


def save_buffer(buffer: EpisodeBuffer, path: Path, stamp: int) -> int:
    """Write the replay buffer, gzip-compressed (level 1: padding and dead-agent zeros shrink, speed
    stays near disk speed), stamped with the env step it belongs to; returns the bytes written."""
    raw = io.BytesIO()
    torch.save({"stamp": stamp, **buffer.state_dict()}, raw)
    data = gzip.compress(raw.getvalue(), compresslevel=1)
    atomic_write_bytes(path, data)
    return len(data)


def load_buffer(buffer: EpisodeBuffer, path: Path, stamp: int) -> None:
    """Restore the buffer saved with `stamp`; a buffer from another env step would silently change the run."""
    state = torch.load(io.BytesIO(gzip.decompress(path.read_bytes())), weights_only=True)  # tensors and ints only
    saved_at = state.pop("stamp")
    if saved_at != stamp:
        raise RuntimeError(
            f"{path} belongs to another checkpoint (env step {saved_at}, expected {stamp}); "
            "delete it to resume without the replay buffer"
        )
    buffer.load_state_dict(state)
