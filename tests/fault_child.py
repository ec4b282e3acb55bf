"""Runs that meet a fault at an exact point (tests/test_faults.py, benchmarks/faults.py).

    python -m tests.fault_child kill:<file>:<n>[:torn] <run dir> [overrides ...]
    python -m tests.fault_child enospc:<file>:<n> cli [train.py arguments ...]

`kill`: runs `train(config of the overrides, run dir)` and SIGKILLs itself the n-th time the checkpoint code
renames a finished temp file over a file whose name starts with `<file>` (`last.ckpt`, `buffer`): the temp
file is complete and fsynced, the rename has not happened. With `:torn` the temp file is first cut to half
its size (a kill in the middle of the write). Only `softqmix.checkpointing`'s view of `os` is patched.

`enospc`: runs `python train.py <arguments>` on a disk that fills up at the n-th file opened for writing whose
name contains `<file>` (`last.ckpt`, `buffer`, `metrics.csv`): that file takes half of the first write, then
ENOSPC (FullDisk). The rest of the run is real in both.
"""

from __future__ import annotations

import builtins
import errno
import os
import signal
import sys
import types
from pathlib import Path
from typing import Any


def kill_on_rename(target: str, nth: int, torn: bool) -> None:
    from softqmix import checkpointing

    seen = {"n": 0}
    real_replace = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst).name.startswith(target):
            seen["n"] += 1
            if seen["n"] == nth:
                if torn:
                    os.truncate(src, os.path.getsize(src) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)

    patched = types.ModuleType("os")
    patched.__dict__.update(os.__dict__)
    patched.replace = replace  # type: ignore[attr-defined]
    checkpointing.os = patched  # type: ignore[attr-defined]


class _FillingFile:
    """A file on a disk that is full: half of the first write lands, then ENOSPC."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def write(self, data: Any) -> int:
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


class FullDisk:
    """`builtins.open` for a disk that fills up at the n-th file opened for writing whose name contains
    `needle`; every other open is the real one. `hit` is the path that met the full disk."""

    def __init__(self, needle: str, nth: int) -> None:
        self.needle, self.nth, self.seen, self.hit = needle, nth, 0, None
        self.real = builtins.open

    def __call__(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = self.real(file, mode, *args, **kwargs)
        if isinstance(file, str | os.PathLike) and set(mode) & set("wax") and self.needle in Path(file).name:
            self.seen += 1
            if self.seen == self.nth:
                self.hit = os.fspath(file)
                return _FillingFile(handle)
        return handle


def main(argv: list[str]) -> None:
    kind, target, nth, *flags = argv[0].split(":")
    os.environ.setdefault("WANDB_MODE", "disabled")
    if kind == "enospc":
        builtins.open = FullDisk(target, int(nth))
        from softqmix.cli_checks import run_train_cli

        sys.argv = ["train.py", *argv[2:]]
        run_train_cli()
        return
    from hydra import compose, initialize_config_dir

    from softqmix import CONF_DIR
    from softqmix.config import register_configs
    from softqmix.train import train

    kill_on_rename(target, int(nth), torn=flags == ["torn"])
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=argv[2:])
    train(cfg, Path(argv[1]))
    sys.exit(3)  # the kill never came


if __name__ == "__main__":
    main(sys.argv[1:])


def full_disk_script(train_args: str, copy_full_run_to: str, stdout: str = "/dev/null") -> str:
    """A shell script (run as root in a mount namespace, with $PY, $TRAIN, $MNT, $OUT set) that trains on a
    16 MB tmpfs, fills it (dd) once the first checkpoint is written, keeps the refused run under
    $OUT/<copy_full_run_to>, empties the disk and resumes; exit codes in $OUT/rc and $OUT/resume_rc."""
    return f"""
        mount -t tmpfs -o size=16m none "$MNT" || exit 90
        "$PY" "$TRAIN" {train_args} hydra.run.dir="$MNT/run" > {stdout} 2> "$OUT/stderr" &
        pid=$!
        while [ ! -e "$MNT/run/checkpoints/last.ckpt" ] && kill -0 $pid 2>/dev/null; do sleep 0.2; done
        dd if=/dev/zero of="$MNT/filler" bs=64k 2>/dev/null
        wait $pid; echo $? > "$OUT/rc"
        cp -a "$MNT/run" "$OUT/{copy_full_run_to}"
        rm "$MNT/filler"
        "$PY" "$TRAIN" resume="$MNT/run" > /dev/null 2> "$OUT/resume_stderr"; echo $? > "$OUT/resume_rc"
    """
