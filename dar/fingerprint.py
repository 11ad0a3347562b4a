"""Fingerprints: the identity of an artefact as a hash of everything that changes its result.

Every stateful artefact of the harness (a training run folder, a latent cache, a
sample file and its shards, a table cell) records its *identity*: a plain dict of
the settings that change its numbers (model, routing, hyper-parameters, seed,
data; for samples the checkpoint's identity and the sampler settings; ...) and
nothing that does not (paths, logging intervals, batch sizes that only split
work). Its fingerprint is the SHA-256 of that dict's canonical JSON, cut to
`LENGTH` hex digits. The plan (dar/plan.py) computes the same identities before
any job runs, so the workflow keys folders by fingerprint: a changed config
names a new folder instead of resuming an old one.

A job that finds state under its output (a checkpoint to resume, shards to
reuse) compares the recorded identity with its own and refuses on any
difference with `IdentityMismatch`, whose message names each differing field
with both values and the ways out.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dar.config import ConfigError

LENGTH = 12  # hex digits of a fingerprint in paths and records (48 bits)


def canonical(identity: Any) -> str:
    """The one JSON text of an identity: sorted keys, no spaces, tuples as lists."""
    return json.dumps(identity, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_plain)


def fingerprint(identity: Any) -> str:
    return hashlib.sha256(canonical(identity).encode()).hexdigest()[:LENGTH]


def differences(recorded: Any, current: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, recorded value, current value) for every leaf that differs; missing keys count as None."""
    recorded, current = _normal(recorded), _normal(current)
    if isinstance(recorded, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(recorded) | set(current)):
            out += differences(recorded.get(key), current.get(key), f"{prefix}{key}.")
        return out
    # leaves compare as their canonical JSON: 4 and 4.0, or True and 1, hash apart, so they differ here too
    same = canonical(recorded) == canonical(current) if _jsonable(recorded) and _jsonable(current) else recorded == current
    return [] if same else [(prefix.rstrip(".") or "(identity)", recorded, current)]


class IdentityMismatch(ConfigError):
    """State on disk was produced by a different configuration than the one now asked for."""

    def __init__(self, what: str, where: str | Path, recorded: Any, current: Any, ways_out: list[str]) -> None:
        self.differences = differences(recorded, current)
        shown = "; ".join(f"{k}: {_short(a)} recorded there, {_short(b)} now" for k, a, b in self.differences[:8])
        more = f" (and {len(self.differences) - 8} more)" if len(self.differences) > 8 else ""
        super().__init__(
            f"{what} {where} was produced by a different configuration ({shown}{more}), so it is not reused. "
            + "Either "
            + ", or ".join(ways_out)
            + "."
        )


def _normal(x: Any) -> Any:
    """Tuples as lists, as they come back from JSON."""
    if isinstance(x, tuple):
        return [_normal(v) for v in x]
    if isinstance(x, list):
        return [_normal(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _normal(v) for k, v in x.items()}
    return x


def _jsonable(v: Any) -> bool:
    try:
        canonical(v)
        return True
    except (TypeError, ValueError):
        return False


def _short(v: Any) -> str:
    s = "missing" if v is None else repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


def _plain(x: Any) -> Any:
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item"):  # numpy / torch scalars
        return x.item()
    raise TypeError(f"not part of an identity: {type(x).__name__}")
