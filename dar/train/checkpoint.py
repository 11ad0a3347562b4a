"""Training checkpoints: atomic writes, milestone files, finding the newest.

    <run>/checkpoints/step_0600000.pt   milestone (kept; later stages sample from it)
    <run>/checkpoints/latest.pt         periodic resume point (replaced each time)

A checkpoint holds model, EMA, optimizer, step, RNG states and the data-order
position. It is written to a temporary file and renamed, so a file under a
final name is always complete; resuming picks the one with the highest step.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from dar.io import atomic_path

LATEST = "latest.pt"
_MILESTONE = re.compile(r"^step_(\d{7,})\.pt$")


def milestone_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.pt"


def save(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def newest(run_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    best: tuple[int, Path] | None = None
    for p in folder.iterdir():
        m = _MILESTONE.match(p.name)
        if m:
            step = int(m.group(1))
        elif p.name == LATEST:
            step = int(torch.load(p, map_location="cpu", weights_only=False)["step"])
        else:
            continue
        if best is None or step > best[0]:
            best = (step, p)
    return None if best is None else best[1]


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train the run first (python -m dar train ...)")
    return torch.load(path, map_location=map_location, weights_only=False)


def load_for_inference(path: str | Path, ema: bool = True):
    """Build the model recorded in a checkpoint's config and load its (EMA) weights; returns (model, ckpt)."""
    from dar.models import build_model

    ckpt = load(path)
    cfg, arch = ckpt["config"], ckpt["arch"]
    model = build_model(cfg["model"], cfg["routing"], **arch)
    model.load_state_dict(ckpt["ema" if ema else "model"])
    return model.eval(), ckpt
