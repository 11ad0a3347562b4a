"""A ViT-B/14 with the parameter layout of DINOv2's released checkpoints (dinov2_vitb14_pretrain.pth).

REPA aligns SiT's hidden states with DINOv2 ViT-B/14 patch tokens (`x_norm_patchtokens`): the
final LayerNorm applied to the tokens after the class token. Layout of the checkpoint, which this
module loads with strict=True: patch_embed.proj (14x14 conv), cls_token, pos_embed [1, 1 + 37*37, 768]
(trained at 518 px, interpolated bicubically to the input's grid), mask_token, blocks.{i}.{norm1,
attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma} (LayerScale), norm.
Loaded from a local file only (python -m dar fetch-assets --only dinov2-vitb14).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        self.attn.proj = nn.Linear(dim, dim)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, 4 * dim)
        self.mlp.fc2 = nn.Linear(4 * dim, dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, D = x.shape
        qkv = self.attn.qkv(self.norm1(x)).reshape(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(B, N, D)
        x = x + self.ls1(self.attn.proj(a))
        return x + self.ls2(self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x)))))


class DinoV2(nn.Module):
    def __init__(self, dim: int = 768, depth: int = 12, heads: int = 12, patch: int = 14, pretrain_grid: int = 37) -> None:
        super().__init__()
        self.patch = patch
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pretrain_grid**2, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.embed_dim = dim

    def interpolate_pos(self, grid: int) -> Tensor:
        cls, pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        g0 = int(math.sqrt(pos.shape[1]))
        if g0 == grid:
            return self.pos_embed
        pos = pos.reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos.float(), size=(grid, grid), mode="bicubic", align_corners=False)
        return torch.cat([cls, pos.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(cls.dtype)], dim=1)

    def forward_patch_tokens(self, x: Tensor) -> Tensor:
        """x: [B, 3, H, W] normalised images (H, W multiples of 14) -> x_norm_patchtokens [B, (H/14)(W/14), D]."""
        tokens = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        h = h + self.interpolate_pos(x.shape[-1] // self.patch)
        for blk in self.blocks:
            h = blk(h)
        return self.norm(h)[:, 1:]


def load_dinov2_vitb14(path: str | Path) -> DinoV2:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"DINOv2 ViT-B/14 weights not found at {path}; fetch them where the network is with: "
            f"python -m dar fetch-assets --only dinov2-vitb14 --dest <assets dir>"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    # Sizes from the checkpoint itself (ViT-B/14: dim 768, 12 blocks, 12 heads of 64, 37 x 37 positions).
    dim, patch = state["patch_embed.proj.weight"].shape[0], state["patch_embed.proj.weight"].shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    grid = math.isqrt(state["pos_embed"].shape[1] - 1)
    model = DinoV2(dim=dim, depth=depth, heads=max(dim // 64, 1), patch=patch, pretrain_grid=grid)
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)
