"""Atomic output files: write to a temporary file beside the target, fsync, rename.

A crash never leaves a half-written file under the final name, so a later
step (or a Snakemake rerun) never takes a partial output as finished. The
temporary file is removed whatever happens; a full disk is reported as
`DiskFullError` ("no space left on device while writing <path>"), whatever
library was writing (torch.save reports it as "unexpected pos ..."). Outputs
get the permissions of an ordinary new file (0666 less the umask), so results
folders shared on a cluster stay readable.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dar.errors import DiskFullError


def _umask() -> int:
    """The process umask, read without changing it (os.umask would briefly open it to other threads' files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_disk_full(e: BaseException) -> bool:
    """ENOSPC / EDQUOT anywhere in the exception chain, or torch.save's way of saying it."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(e)
        if isinstance(e, RuntimeError) and ("unexpected pos" in text or "No space left on device" in text):
            return True
        e = e.__cause__ or e.__context__
    return False


def free_bytes(path: str | os.PathLike) -> int | None:
    try:
        return shutil.disk_usage(Path(path).parent).free
    except OSError:
        return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise DiskFullError(path, free_bytes(path)) from e  # measured after the temporary file is gone
        raise
    finally:
        tmp.unlink(missing_ok=True)


def json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(obj))


def write_json_if_changed(path: str | os.PathLike, obj: Any) -> bool:
    """write_json unless the file already holds exactly this JSON (its mtime then stays); True if written."""
    text = json_text(obj)
    try:
        if Path(path).read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return True


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The JSON objects of a JSON-lines file; a line cut short (a killed job, a full disk) is skipped."""
    out = []
    for line in Path(path).read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """np.savez to `path` atomically (the name is kept exactly; numpy would append .npz)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
