"""One run dir, one process: an OS-level lock on the run dir, and the clean-up of a run dir nobody used.

The lock is `fcntl.flock` on `<run dir>/run.lock`, held through an open file descriptor for the life of the
run. The kernel drops it when the descriptor closes, so it dies with the process, SIGKILL included: there
is never a stale lock to remove by hand. The file records the holder (pid, host, start time) for the
message a second process prints. A process may take the lock on the same dir more than once (the Hydra
callback takes it before Hydra writes into the dir, `train()` takes it again); it is released with the last.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from softqmix.errors import RunDirBusy, RunDirNotWritable

LOCK_FILE = "run.lock"

_NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT)
_held: dict[Path, list[int]] = {}  # resolved run dir -> [file descriptor, how many times taken]


def lock_holder(run_dir: Path) -> str:
    """Who holds (or last held) the lock, as the lock file records it: 'pid 123 on host node7'."""
    try:
        holder = json.loads((run_dir / LOCK_FILE).read_text())
        return f"pid {holder['pid']} on host {holder['host']}, since {holder['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet written its pid"


def _probe_writable(run_dir: Path) -> None:
    """Create, write and delete a file in the run dir. Permission bits say nothing for root, and a read-only
    mount or a full disk shows only when something is written."""
    probe = run_dir / f".write-probe-{os.getpid()}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, b"probe\n")
    finally:
        os.close(fd)
        probe.unlink()


def acquire_run_dir(run_dir: Path) -> None:
    """Take the run dir's lock (creating the dir), or raise RunDirBusy naming the dir and the holder, or
    RunDirNotWritable when the dir cannot be created or written."""
    key = Path(run_dir).resolve()
    if key in _held:
        _held[key][1] += 1
        return
    try:
        key.mkdir(parents=True, exist_ok=True)
        _probe_writable(key)
        # O_CLOEXEC: programs this run starts (git, StarCraft II) do not inherit the lock
        fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno not in _NOT_WRITABLE:
            raise
        raise RunDirNotWritable(
            f"run dir {key} is not writable ({os.strerror(exc.errno)}); give the run a dir on a writable disk "
            "(hydra.run.dir=...), or copy a run to be resumed to one and resume it there"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in _NO_LOCKS:  # e.g. Lustre mounted without `flock`: run, but say that nothing guards the dir
            print(
                f"warning: cannot lock run dir {key} ({os.strerror(exc.errno)}): this file system has no flock; "
                "a second run started on this dir will not be stopped",
                file=sys.stderr,
            )
            _held[key] = [fd, 1]
            return
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise RunDirBusy(
            f"run dir {key} is in use by another run ({lock_holder(key)}); "
            "wait for it to end, or give this run another dir"
        ) from None
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    _held[key] = [fd, 1]


def release_run_dir(run_dir: Path) -> None:
    key = Path(run_dir).resolve()
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] == 0:
        del _held[key]
        os.close(entry[0])  # closing the descriptor drops the lock; the file stays (deleting it would race)


@contextlib.contextmanager
def locked_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold the run dir's lock for the body (see acquire_run_dir)."""
    acquire_run_dir(run_dir)
    try:
        yield
    finally:
        release_run_dir(run_dir)


def remove_unused_run_dir(run_dir: Path, job_name: str, stop_at: Path) -> bool:
    """Delete a run dir that holds nothing but Hydra's bookkeeping (`.hydra/`, `<job>.log`) and the lock file,
    then its parents while they are empty and below `stop_at`; True when it was deleted.

    A refused resume uses this on the fresh dir Hydra made for it, so it leaves no empty run behind.
    """
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir() or any(
        entry.name not in (".hydra", f"{job_name}.log", LOCK_FILE) for entry in run_dir.iterdir()
    ):
        return False
    shutil.rmtree(run_dir)
    stop_at = Path(stop_at).resolve()
    parent = run_dir.parent
    while parent != stop_at and parent.is_relative_to(stop_at) and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
    return True
