"""The embedded dataset of the CPU-scale reproduction: scikit-learn's digits.

1797 labelled 8x8 grey images of 10 classes, shipped inside scikit-learn (no
download). Pixel space, one channel, values 0..16 mapped linearly to [-1, 1]
(the range the VAE latents' samples are decoded to elsewhere), so a digit
image is its own "latent" through the identity encoder.

The train / held-out split is fixed: a permutation drawn from
`numpy.random.default_rng(SPLIT_SEED)`, the first `HELDOUT` indices held out.
"""

from __future__ import annotations

import numpy as np
import torch

NUM_CLASSES = 10
IMAGE_SIZE = 8
CHANNELS = 1
HELDOUT = 297  # 1797 = 1500 train + 297 held out
SPLIT_SEED = 20260522
MAX_VALUE = 16.0  # digits pixels are integers 0..16


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (images [N, 1, 8, 8] float32 in [-1, 1], labels [N] int64) of 'train' or 'heldout'."""
    if split not in ("train", "heldout"):
        raise ValueError(f"unknown digits split {split!r}; choose 'train' or 'heldout'")
    from sklearn.datasets import load_digits

    data = load_digits()
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(data.target))
    idx = perm[:HELDOUT] if split == "heldout" else perm[HELDOUT:]
    images = torch.from_numpy(data.images[idx].astype(np.float32)).unsqueeze(1) / (MAX_VALUE / 2) - 1.0
    labels = torch.from_numpy(data.target[idx].astype(np.int64))
    return images, labels


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] images [N, C, H, W] -> uint8 NHWC, the ADM sample-file convention clamp(127.5 x + 128)."""
    x = (127.5 * images.float() + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()
