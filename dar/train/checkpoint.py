"""Training checkpoints: atomic writes, milestone files, finding the newest.

    <run>/checkpoints/step_0600000.pt   milestone (kept; later stages sample from it)
    <run>/checkpoints/latest.pt         periodic resume point (replaced each time)

A checkpoint holds model, EMA, optimizer, step, RNG states and the data-order
position. It is written to a temporary file and renamed, so a file under a
final name is always complete; resuming picks the one with the highest step.
"""

from __future__ import annotations

import math
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
    residual SiT on SD-VAE latents): its architecture is read off the tensor shapes and the registry.
    """
    from dar.models import build_model

    ckpt = load(path)
    if "config" not in ckpt:
        ckpt = official_sit_checkpoint(ckpt, path)
        ema = False  # a bare state dict holds one set of weights, under "model"
    cfg, arch = ckpt["config"], ckpt["arch"]
    model = build_model(cfg["model"], cfg["routing"], **arch)
    model.load_state_dict(ckpt["ema" if ema else "model"])
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
        raise ValueError(f"{path} is neither a checkpoint of this harness nor a SiT state_dict (missing {e})") from None
    size = next((s for s, a in SIZES.items() if (a.depth, a.hidden_size) == (depth, hidden)), None)
    name = f"SiT-{size}/{patch}"
    if name not in MODELS:
        raise ValueError(f"{path}: no registered model with depth {depth}, hidden {hidden}, patch {patch}")
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
