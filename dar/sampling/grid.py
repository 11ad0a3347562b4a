"""PNG grid of uint8 samples (for previews and the report)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from dar.io import atomic_path


def save_grid(images: np.ndarray, path: str | Path, ncol: int | None = None, upscale: int = 1, pad: int = 1) -> Path:
    """images: uint8 [N, H, W, C] (C = 1 or 3) -> one PNG, `ncol` per row, optional nearest upscaling."""
    n, h, w, c = images.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    canvas = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = images[i]
    img = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    if upscale > 1:
        img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)
