"""Advisory file locks: one writer per run folder, one submission per launcher job name.

    with FolderLock(run_dir, "training run"):      # held for the job's lifetime; a second holder fails at once
        ...
    with FileLock(folder / "x.lock"):              # waits: serialises check -> submit -> record
        ...

Both use `fcntl.flock` on a lock file, which the kernel releases when the
holding process dies, however it dies: a SIGKILLed trainer never leaves a
stale lock. On a cluster the lock file lives on the shared filesystem; Linux
NFS (v4, and v3 with lockd) maps flock onto POSIX byte-range locks, which lock
across nodes. The lock file holds the holder's pid, host and start time, so the
refusal says who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from dar.config import ConfigError

LOCK_NAME = ".lock"


class FolderBusy(ConfigError):
    """Another process holds the folder's lock."""


def _holder(path: Path) -> str:
    try:
        rec = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        rec = {}
    if "pid" not in rec:  # read while the holder was writing it
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec.get("since", 0)))
    return f"pid {rec.get('pid', '?')} on host {rec.get('host', '?')} (since {since})"


def _acquire(path: Path, wait: bool, on_wait=None) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if not wait:
            os.close(fd)
            raise FolderBusy(f"{path} is held by {_holder(path)}") from None
        if on_wait is not None:
            on_wait(_holder(path))
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode(), 0)
    return fd


@contextlib.contextmanager
def FileLock(path: str | os.PathLike, wait: bool = True, on_wait=None) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing); wait for it (calling on_wait(holder) once when it
    is held by another process), or raise FolderBusy at once."""
    fd = _acquire(Path(path), wait, on_wait)
    try:
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def FolderLock(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Exclusive use of `folder` (its `.lock` file) for the lifetime of the block; refuses if it is in use."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = _acquire(path, wait=False)
    except FolderBusy:
        raise FolderBusy(
            f"{what} {folder} is in use by {_holder(path)}: one job per folder. Wait for that job to end "
            "(or stop it), then rerun; resuming is rerunning"
        ) from None
    try:
        yield
    finally:
        os.close(fd)
