"""The harness's expected failures: each message names the input at fault and the fix.

`python -m dar <command>` (dar/__main__.py) prints any of these as one `error: ...`
line and exits with status 2; a traceback is shown only under `--debug` (or
DAR_DEBUG=1). Anything else is a bug: it is reported as unexpected, with the hint
to rerun under --debug.
"""

from __future__ import annotations

import errno


class HarnessError(Exception):
    """An expected, user-fixable failure."""


class DataError(HarnessError, ValueError):
    """A dataset or latent cache that cannot be used as it is (unreadable image, bad labels, old format)."""


class CheckpointError(HarnessError):
    """A checkpoint file that cannot be used: missing, truncated, not a checkpoint, damaged, non-finite."""


class DiskFullError(HarnessError, OSError):
    """No space left on the device while writing an output (nothing partial is left under the final name)."""

    def __init__(self, path: object, free_bytes: int | None = None) -> None:
        free = "" if free_bytes is None else f" ({free_bytes / 2**20:.1f} MiB free on its filesystem)"
        super().__init__(
            errno.ENOSPC,
            f"no space left on device while writing {path}{free}: free some space and rerun; finished outputs are "
            "kept and resuming is rerunning",
        )

    def __str__(self) -> str:
        return str(self.strerror)


class NonFiniteError(HarnessError, ArithmeticError):
    """NaN or infinity where numbers must be finite (weights, samples); nothing is written from them."""
