"""Lightning's checkpoint plugin for our runs: its torch format, written atomically (softqmix.checkpointing)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from softqmix.checkpointing import atomic_write_bytes, buffer_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint format, written atomically (temp file + rename).

    Once the new checkpoint is in place, what only the old one needed goes: its replay-buffer file and temp
    files left by a process killed while writing (one process per run dir, so none is being written now).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        path = Path(path)
        atomic_write_bytes(path, buffer.getvalue())
        stamp = checkpoint.get("buffer_stamp")
        keep = buffer_path(path.parent, stamp) if stamp is not None else None
        for old in [*path.parent.glob("buffer*.pt.gz"), *path.parent.glob(".*.tmp-*")]:
            if old != keep:
                with contextlib.suppress(OSError):
                    old.unlink()
