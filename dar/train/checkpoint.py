"""Training checkpoints: atomic writes with checksums, milestone files, the newest intact one.

    <run>/checkpoints/step_0600000.pt        milestone (kept; later stages sample from it)
    <run>/checkpoints/latest.pt              periodic resume point (replaced each time)
    <run>/checkpoints/<name>.pt.sha256.json  beside each: its sha256 and step, written with it

A checkpoint holds model, EMA, optimizer, step, RNG states, the data-order
position and the run's identity. It is written to a temporary file and renamed,
so a file under a final name is always complete; its sha256 is recorded beside
it and checked on every load, so a flipped bit, a truncated copy or a file
replaced by hand is refused with its name ("damaged"), never used. Resuming
takes the newest checkpoint that passes the check; damaged ones are set aside as
`<name>.damaged-<time>` with a warning, and the run goes on from the next newest.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import torch

from dar.errors import CheckpointError, NonFiniteError
from dar.io import atomic_path, write_json
from dar.provenance import file_sha256

LATEST = "latest.pt"
SIDECAR_SUFFIX = ".sha256.json"
_MILESTONE = re.compile(r"^step_(\d{7,})\.pt$")
_DIGESTS: dict[tuple, str] = {}  # (path, inode, size, mtime_ns, ctime_ns) -> sha256: a file is hashed once per process
# What torch.load raises for a file that is not a whole checkpoint (truncated, foreign, garbled); anything else
# (out of memory, an I/O error of the filesystem) is not evidence that the file is damaged and is raised as it is.
_DAMAGED = (EOFError, pickle.UnpicklingError, zipfile.BadZipFile)
_DAMAGED_TEXT = ("PytorchStreamReader failed", "failed finding central directory", "invalid load key", "Invalid magic number")


def milestone_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.pt"


def sidecar(path: str | Path) -> Path:
    return Path(str(path) + SIDECAR_SUFFIX)


def sha256(path: str | Path) -> str:
    """The file's sha256, cached while its inode, size and times stay the same (ctime cannot be set back by hand)."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(path)
    return _DIGESTS[key]


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically with its checksum record beside it.

    Before the rename the record still describes the file in place (its digest and step) and names the coming
    one under "next"; after it, the new file alone. Whenever a crash comes, the file under `path` matches its
    record and the record's step is that file's."""
    path = Path(path)
    current = None
    if path.is_file():
        rec = recorded(path)
        if rec and rec.get("sha256") and "next" not in rec:
            current = {"sha256": rec["sha256"], "step": rec.get("step")}
        else:  # no record yet (written before records existed), or one interrupted mid-save: describe the file itself
            current = {"sha256": sha256(path), "step": rec.get("step") if rec else None}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        new = {"sha256": file_sha256(tmp), "step": int(state["step"]), "bytes": tmp.stat().st_size}
        if current is not None:
            write_json(sidecar(path), {**current, "next": new})
    write_json(sidecar(path), new)


def recorded(path: Path) -> dict | None:
    """The checkpoint's checksum record (its sha256 and step; "next" while a save is in flight), or None."""
    try:
        rec = json.loads(sidecar(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


def candidates(run_dir: str | Path) -> list[Path]:
    """Every checkpoint of a run folder, newest first (the step its record gives, else its name, else its content)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found: list[tuple[int, Path]] = []
    for p in folder.iterdir():
        m = _MILESTONE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
        elif p.name == LATEST:
            rec = recorded(p)
            step = rec.get("step") if rec else None
            if step is None:
                try:
                    step = int(torch.load(p, map_location="cpu", weights_only=False)["step"])
                except Exception:
                    step = -1  # unreadable: tried last, then set aside if it is damaged
            found.append((int(step), p))
    return [p for _, p in sorted(found, key=lambda x: -x[0])]


def newest(run_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step (not checked; see newest_intact)."""
    c = candidates(run_dir)
    return c[0] if c else None


def verify(path: str | Path) -> None:
    """Refuse a file whose bytes are not the ones recorded when it was written (or that cannot be a checkpoint)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train the run first (python -m dar train ...)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): it is damaged, not a checkpoint")
    rec = recorded(path)
    if rec is None:
        return  # written before checkpoints carried checksums (or not by this harness): readable is all we can check
    digest = sha256(path)
    if digest not in (rec.get("sha256"), (rec.get("next") or {}).get("sha256")):
        raise CheckpointError(
            f"checkpoint {path} is damaged: its sha256 {digest[:12]} is not the {str(rec.get('sha256'))[:12]} recorded "
            f"in {sidecar(path).name} when it was written (a truncated copy, a flipped bit or a file replaced by hand)"
        )


def _read(path: Path, map_location) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except _DAMAGED as e:
        raise CheckpointError(f"checkpoint {path} cannot be read (truncated or not a torch checkpoint): {e}") from None
    except RuntimeError as e:
        if any(t in str(e) for t in _DAMAGED_TEXT):
            raise CheckpointError(f"checkpoint {path} cannot be read (truncated or not a torch checkpoint): {e}") from None
        raise
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint dict")
    return state


def load(path: str | Path, map_location: str | torch.device = "cpu", check: bool = True) -> dict[str, Any]:
    """A verified checkpoint (see verify; check=False when another process verified it); damage is a CheckpointError."""
    path = Path(path)
    if check:
        verify(path)
    return _read(path, map_location)


def set_aside_damaged(path: Path, why: CheckpointError) -> Path:
    dest = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    path.rename(dest)
    if sidecar(path).exists():
        sidecar(path).rename(sidecar(dest))
    print(
        f"[checkpoint] warning: {why}; set aside as {dest.name}; trying the next newest checkpoint", file=sys.stderr, flush=True
    )
    return dest


def newest_intact(run_dir: str | Path) -> Path | None:
    """The newest checkpoint whose bytes verify (a file without a record: that reads as a whole checkpoint), or None.

    Damaged ones on the way are reported and renamed <name>.damaged-<time>, so the next rerun does not trip on
    them and the evidence is kept. Only damage counts: an error that says nothing about the file is raised."""
    for path in candidates(run_dir):
        try:
            verify(path)
            if recorded(path) is None:
                _read(path, "cpu")  # no checksum to go by: only a full read tells a truncated file
            return path
        except CheckpointError as e:
            set_aside_damaged(path, e)
    return None


def non_finite(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the tensors of a state dict that hold NaN or infinity."""
    return [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]


def checkpoint_identity(ckpt: dict[str, Any], sha256: str) -> dict[str, Any]:
    """What a checkpoint is, as the identity of what is made from it (samples, diagnostics).

    A checkpoint of this harness: its run's fingerprint and its step, the same identity the plan computes
    before the run exists (dar/plan.py). Any other file (an official SiT state dict, a checkpoint written
    before runs had fingerprints): its sha256.
    """
    if ckpt.get("fingerprint"):
        return {"run": ckpt["fingerprint"], "iteration": int(ckpt["step"])}
    return {"sha256": sha256}


def load_for_inference(path: str | Path, ema: bool = True):
    """Build the model recorded in a checkpoint and load its (EMA) weights; returns (model, ckpt).

    Also accepts a bare SiT state_dict such as the official `SiT-XL-2-256x256.pt` (EMA weights of a
    residual SiT on SD-VAE latents), and a checkpoint written by the official SiT/DiT `train.py`
    (`{"model", "ema", "opt", "args"}`), whose EMA weights are taken as their `find_model` does: the
    architecture is read off the tensor shapes and the registry. Non-finite weights are refused.
    """
    from dar.models import build_model

    ckpt = load(path)
    if "config" not in ckpt:
        if {"model", "ema", "args"} <= set(ckpt):  # written by the official SiT/DiT train.py: take its EMA, as find_model
            ckpt = ckpt["ema"]
        ckpt = official_sit_checkpoint(ckpt, path)
        ema = False  # a bare state dict holds one set of weights, under "model"
    cfg, arch = ckpt["config"], ckpt["arch"]
    weights = ckpt["ema" if ema else "model"]
    bad = non_finite(weights)
    if bad:
        raise NonFiniteError(
            f"checkpoint {path} holds non-finite {'EMA ' if ema else ''}weights ({len(bad)} tensors, e.g. {bad[0]}): the run "
            "diverged before it was saved; nothing can be sampled from it"
        )
    model = build_model(cfg["model"], cfg["routing"], **arch)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(
            f"checkpoint {path} does not fit the {cfg['model']} / {cfg['routing']} model it names: {str(e).splitlines()[0]}"
        ) from None
    return model.eval(), ckpt


def official_sit_checkpoint(state: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """Wrap a bare residual-SiT state_dict in this harness's checkpoint layout."""
    from dar.data.encoders import VAE_SCALE
    from dar.models import MODELS, SIZES

    if "state_dict" in state:
        state = state["state_dict"]
    try:
        proj, pos = state["x_embedder.proj.weight"], state["pos_embed"]
        depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        hidden, patch, in_ch = pos.shape[-1], proj.shape[-1], proj.shape[1]
        grid = math.isqrt(pos.shape[1])
        out_ch = state["final_layer.linear.weight"].shape[0] // (patch * patch)
        rows = state["y_embedder.embedding_table.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"{path} is neither a checkpoint of this harness nor a SiT state_dict (missing {e})") from None
    size = next((s for s, a in SIZES.items() if (a.depth, a.hidden_size) == (depth, hidden)), None)
    name = f"SiT-{size}/{patch}"
    if name not in MODELS:
        raise CheckpointError(f"{path}: no registered model with depth {depth}, hidden {hidden}, patch {patch}")
    arch = dict(
        input_size=grid * patch, in_channels=in_ch, num_classes=rows - 1, learn_sigma=out_ch == 2 * in_ch, class_dropout_prob=0.1
    )
    return {
        "step": 0,
        "model": state,
        "config": {"model": name, "routing": "residual"},
        "arch": arch,
        "latent": {
            "encoder": {"name": "sd-vae", "scale": VAE_SCALE, "path": None},
            "dataset": {"name": "official SiT checkpoint"},
        },
    }
