"""The evaluation set of every diagnostic: fixed (image, noise) pairs swept over a uniform t grid.

Pair i is (x1_i, x0_i, y_i): a latent of the cache (a random image, a random
flip, a fresh posterior sample), a Gaussian noise draw and the image's label.
All of it comes from one generator seeded by `seed`, so every figure and every
checkpoint of a preset sees the same pairs. A diagnostic evaluates the pairs
at each t of the grid, x_t = t x1 + (1 - t) x0 (dar.transport.path; t = 1 is data).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dar.transport.path import interpolate


@dataclass
class Pairs:
    x1: Tensor  # [N, C, H, W] data latents
    x0: Tensor  # [N, C, H, W] noise
    y: Tensor  # [N] class labels

    def __len__(self) -> int:
        return self.x1.shape[0]

    def batches(self, t: float, batch_size: int, device: torch.device | str) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """(x_t, t [B], y, u_t) for consecutive slices of the pairs, all at the same time t."""
        for start in range(0, len(self), batch_size):
            sl = slice(start, start + batch_size)
            x1, x0, y = self.x1[sl].to(device), self.x0[sl].to(device), self.y[sl].to(device)
            tt = torch.full((x1.shape[0],), float(t), device=device)
            xt, ut = interpolate(x0, x1, tt)
            yield xt, tt, y, ut


def t_grid(points: int) -> list[float]:
    """`points` uniform times on [0, 1], both ends included (t = 0 noise, t = 1 data)."""
    if points < 2:
        raise ValueError(f"the t grid needs at least 2 points (both ends of [0, 1]), got {points}")
    return [round(i / (points - 1), 10) for i in range(points)]


def load_pairs(cache_dir: str | Path, num_samples: int, seed: int = 0) -> Pairs:
    """`num_samples` distinct images of the latent cache with their noise, drawn from `seed`."""
    from dar.data.latents import LatentCache

    cache = LatentCache(cache_dir)
    if not 1 <= num_samples <= len(cache):
        raise ValueError(
            f"num_samples={num_samples}: the latent cache {cache_dir} holds {len(cache)} images (need 1..{len(cache)})"
        )
    g = torch.Generator().manual_seed(seed)
    positions = torch.randperm(len(cache), generator=g)[:num_samples]
    flip = torch.randint(0, 2, (num_samples,), generator=g)
    eps = torch.randn((num_samples, *cache.latent_shape), generator=g)  # posterior sample of the encoder
    x0 = torch.randn((num_samples, *cache.latent_shape), generator=g)  # the path's noise end
    x1 = cache.latents(positions, flip, eps)
    return Pairs(x1=x1, x0=x0, y=cache.labels[positions].long())
