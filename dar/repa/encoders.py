"""Frozen target encoders for REPA: clean images [-1, 1] -> patch tokens [B, T_enc, C_enc].

    dinov2   DINOv2 ViT-B/14 (ImageNet): bicubic resize to 224, ImageNet normalisation,
             x_norm_patchtokens: 16 x 16 = 256 tokens of 768, matching SiT-XL/2's 256 tokens
    digits   the digits feature network's spatial map (conv1, 32 channels on 8 x 8),
             average-pooled to the model's token grid (4 x 4 for patch 2)

Encoders run without gradients and are never trained.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ENCODERS = ("dinov2", "digits")


class FrozenEncoder(nn.Module):
    name: str
    dim: int

    def tokens(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        return self.tokens(images).float()


class DinoV2Encoder(FrozenEncoder):
    name = "dinov2"
    dim = 768

    def __init__(self, weights: str | Path, resolution: int = 224) -> None:
        super().__init__()
        from dar.repa.dinov2 import load_dinov2_vitb14

        self.net = load_dinov2_vitb14(weights)
        self.resolution = resolution
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def tokens(self, images: Tensor) -> Tensor:
        x = (images.float() + 1) / 2  # [-1, 1] -> [0, 1]
        x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bicubic", align_corners=False)
        return self.net.forward_patch_tokens((x - self.mean) / self.std)


class DigitsEncoder(FrozenEncoder):
    name = "digits"

    def __init__(self, weights: str | Path, grid: int) -> None:
        super().__init__()
        from dar.metrics.digits_net import load

        self.net = load(weights).requires_grad_(False)
        self.grid = grid
        self.dim = self.net.spatial_channels

    def tokens(self, images: Tensor) -> Tensor:
        spatial, _, _ = self.net(images.float())  # [B, 32, 8, 8]
        pooled = F.adaptive_avg_pool2d(spatial, self.grid)  # resampled to the token grid
        return pooled.flatten(2).transpose(1, 2)  # [B, grid*grid, 32], raster order like SiT's tokens


def build_encoder(name: str, weights: str | Path, token_grid: int) -> FrozenEncoder:
    if name == "dinov2":
        enc = DinoV2Encoder(weights)
    elif name == "digits":
        enc = DigitsEncoder(weights, token_grid)
    else:
        raise ValueError(f"unknown REPA encoder {name!r}; choose one of {ENCODERS}")
    return enc.eval().requires_grad_(False)
