"""Host memory allocation for tensor jobs: keep freed activation buffers in the process instead of the kernel.

glibc's malloc serves every block above its mmap threshold (128 KiB at start, raised only as such blocks are
freed) with a fresh `mmap` and returns it with `munmap` on free, and trims the top of its heap back to the
kernel above 128 KiB free. A CPU training step or sampler forward allocates and frees the same few-MiB
activations hundreds of times, so each one is page-faulted in again: a SiT-T/2 sampler forward on one
CPU core spent a fifth of its time in the kernel, and its cost per sample grew with the batch. With the
thresholds below the page faults fall more than tenfold and the cost per sample no longer depends on the
batch (README, Measured: `python -m dar run-bench --allocator`).

`tune()` sets the two thresholds through `mallopt` for the rest of the process. Numbers are unchanged (only
where the bytes come from); the cost is that up to `TRIM_BYTES` of freed memory stays with the process. A
no-op where the C library has no `mallopt` (not glibc: macOS, musl) or when DAR_MALLOC=default.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_BYTES = 64 << 20  # blocks at least this large still come from (and go back to) mmap
TRIM_BYTES = 256 << 20  # free memory at the top of the heap kept before trimming


def tune() -> bool:
    """Raise glibc's mmap and trim thresholds (see the module docstring). True when applied."""
    if os.environ.get("DAR_MALLOC", "") == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES))
