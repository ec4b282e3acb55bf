"""Checkpoint files that survive crashes, and the RNG and buffer state that make a resume exact.

No Lightning here: `train.py` reads checkpoints before it imports Lightning (softqmix.checkpoint_io has
Lightning's plugin that writes them).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from softqmix.data.buffer import EpisodeBuffer
from softqmix.errors import OutputWriteError, ResumeRefused

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BUFFER_FILE = "buffer.pt.gz"  # the buffer's name before it carried its checkpoint's env step (still loaded)


def checkpoint_path(run_dir: Path) -> Path:
    return run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT


def buffer_path(checkpoint_dir: Path, stamp: int) -> Path:
    """The replay-buffer file of the checkpoint taken at env step `stamp`.

    One file per checkpoint: a checkpoint's buffer is written before the checkpoint itself, so the previous
    checkpoint's buffer must stay until the new checkpoint has replaced the old one (a process killed in
    between resumes from the previous pair). softqmix.checkpoint_io deletes the old one after the rename.
    """
    return checkpoint_dir / f"buffer-{stamp}.pt.gz"


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's contents; one clear line (ResumeRefused) if the file cannot be read.

    Our own checkpoints are written atomically, but a copy interrupted by a full disk or a
    file touched by hand would otherwise surface as an unpickling traceback.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        int(state["progress"]["t_env"])
        return state
    except Exception as exc:  # any unreadable, truncated or foreign file
        reason = (str(exc).strip().splitlines() or [""])[0]  # torch's messages run over several lines
        raise ResumeRefused(
            f"the checkpoint {path} cannot be read ({type(exc).__name__}: {reason}); "
            "delete it to start the run afresh, or pass resume=<a run dir with a good checkpoint>"
        ) from exc


def checkpoint_env_step(path: Path) -> int:
    """The env step a checkpoint was taken at (read_checkpoint's error if it cannot be read)."""
    return int(read_checkpoint(path)["progress"]["t_env"])


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over the target.

    A crash at any point leaves either the old file or the new one, never a torn file. A failed write (a full
    disk) removes its temp file and raises OutputWriteError naming the target.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputWriteError.writing(path, exc) from exc


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


def saved_buffer_path(checkpoint_dir: Path, stamp: int) -> Path:
    """The buffer file to load for the checkpoint taken at `stamp` (a run saved before the stamp was in the
    name has `buffer.pt.gz`)."""
    path, legacy = buffer_path(checkpoint_dir, stamp), checkpoint_dir / BUFFER_FILE
    return legacy if not path.exists() and legacy.exists() else path


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
