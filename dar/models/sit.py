"""SiT: the scalable interpolant transformer backbone, with pluggable routing.

Architecture and initialisation follow the reference SiT/DiT (adaLN-Zero
blocks, frozen 2-D sin-cos positions, class dropout to a null class). The
only change is that the block stack asks a `Routing` for every sublayer's
input instead of adding to a residual stream itself; with routing="residual"
the state_dict is key-for-key that of the official SiT checkpoints
(`SiT-XL-2-256x256.pt`), so they load and sample unchanged.

Banner sections: embedders, block, final layer, model, positions, registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dar.models.gelu import GELUTanh
from dar.routing import Routing, build_routing, parse_routing
from dar.routing.adaptive import DARRouting
from dar.routing.backend import check_backend


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN modulation x * (1 + scale) + shift; x [B, T, D], shift/scale [B, D]."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


# ---------------------------------------------------------------------------
# Embedders
# ---------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Image [B, C, H, W] -> tokens [B, (H/p)(W/p), D] with a strided conv (key: x_embedder.proj)."""

    def __init__(self, input_size: int, patch_size: int, in_channels: int, dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid_size = input_size // patch_size
        self.num_patches = self.grid_size**2
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, T, D]


class TimestepEmbedder(nn.Module):
    """Scalar t in [0, 1] -> [B, D]: 256-d [cos, sin] frequency features, then MLP (SiLU)."""

    def __init__(self, dim: int, frequency_embedding_size: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, dim, bias=True),
            nn.SiLU(),
            nn.Linear(dim, dim, bias=True),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb

    def forward(self, t: Tensor) -> Tensor:
        freq = self.timestep_embedding(t, self.frequency_embedding_size)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class label -> [B, D]; label `num_classes` is the null class used for CFG."""

    def __init__(self, num_classes: int, dim: int, dropout_prob: float) -> None:
        super().__init__()
        use_cfg_embedding = dropout_prob > 0
        self.embedding_table = nn.Embedding(num_classes + int(use_cfg_embedding), dim)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def forward(self, labels: Tensor, train: bool, drop: Tensor | None = None) -> Tensor:
        """drop: optional bool [B] forcing which labels become the null class (replaces the random draw)."""
        if drop is None and train and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
        if drop is not None:
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        return self.embedding_table(labels)


# ---------------------------------------------------------------------------
# Block: one attention and one MLP sublayer, inputs supplied by the routing
# ---------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention with qkv bias (keys: qkv, proj), as the reference."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mix_values: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """mix_values: the routing's map on the values (value residual learning), see Stream.value_mixer."""
        B, T, D = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, H, T, D/H]
        if mix_values is not None:
            v = mix_values(v)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, T, D))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = GELUTanh()  # nn.GELU(approximate="tanh"), faster on CPU (dar/models/gelu.py)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SiTBlock(nn.Module):
    """adaLN-Zero block. Sublayers 2k-1 (attention) and 2k (MLP) of block k (1-based)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim, bias=True))

    def forward(self, stream, c: Tensor, index: int) -> None:
        """Run the block's two sublayers on `stream`; index = 0-based block number."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        l = 2 * index + 1
        h = stream.read(l)  # h_l
        attn = self.attn(modulate(self.norm1(h), shift_msa, scale_msa), stream.value_mixer(l))
        stream.write(l, gate_msa.unsqueeze(1) * attn)  # v_l
        h = stream.read(l + 1)
        stream.write(l + 1, gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(h), shift_mlp, scale_mlp)))


# ---------------------------------------------------------------------------
# Final layer
# ---------------------------------------------------------------------------


class FinalLayer(nn.Module):
    def __init__(self, dim: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim, bias=True))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


class SiT(nn.Module):
    """Velocity model v(x_t, t, y). x: [B, C, H, W], t: [B] in [0, 1] (t = 1 is data), y: [B] labels."""

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        class_dropout_prob: float = 0.1,
        num_classes: int = 1000,
        learn_sigma: bool = True,
        routing: str = "residual",
        routing_backend: str | None = None,  # DAR aggregation: 'torch' | 'triton' | 'auto' (None: the routing's default, auto)
    ) -> None:
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"input size {input_size} is not divisible by patch size {patch_size}")
        self.input_size = input_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.learn_sigma = learn_sigma
        self.num_classes = num_classes
        self.hidden_size = hidden_size
        self.depth = depth
        self.routing_spec = parse_routing(routing)

        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        num_patches = self.x_embedder.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList(SiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.routing: Routing = build_routing(self.routing_spec, hidden_size, depth)
        if routing_backend is not None:
            check_backend(routing_backend)
            if isinstance(self.routing, DARRouting):
                self.routing.set_backend(routing_backend)
        self.initialize_weights()

    @property
    def null_class(self) -> int:
        """Label of the unconditional (dropped) class used by classifier-free guidance."""
        return self.num_classes

    def initialize_weights(self) -> None:
        def _basic_init(m: nn.Module) -> None:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

        self.apply(_basic_init)
        if self.pos_embed.device.type != "meta":
            pos = get_2d_sincos_pos_embed(self.hidden_size, self.x_embedder.grid_size)
            self.pos_embed.data.copy_(torch.from_numpy(pos).float().unsqueeze(0))
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        if self.routing.zero_init_t_embedder:  # explicit injection: e(t) = 0 at init (Sec. 4.2)
            nn.init.zeros_(self.t_embedder.mlp[2].weight)
            nn.init.zeros_(self.t_embedder.mlp[2].bias)
        for block in self.blocks:  # adaLN-Zero
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)
        self.routing.reset_parameters()  # routing init overrides the generic Linear init

    def unpatchify(self, x: Tensor) -> Tensor:
        """[B, T, p*p*C] -> [B, C, H, W]."""
        c, p, g = self.out_channels, self.patch_size, self.x_embedder.grid_size
        x = x.reshape(x.shape[0], g, g, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, g * p, g * p)

    def check_inputs(self, x: Tensor, t: Tensor, y: Tensor) -> None:
        expected = (self.in_channels, self.input_size, self.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"SiT expects x of shape [B, {', '.join(map(str, expected))}], got {tuple(x.shape)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"SiT expects t of shape [{x.shape[0]}] (one time per sample), got {tuple(t.shape)}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"SiT expects y of shape [{x.shape[0]}] (one label per sample), got {tuple(y.shape)}")

    def forward(self, x: Tensor, t: Tensor, y: Tensor, drop_labels: Tensor | None = None) -> Tensor:
        """drop_labels: optional bool [B]; True maps that label to the null class (training's class
        dropout with the randomness chosen by the caller). Without it, training mode drops at random."""
        self.check_inputs(x, t, y)
        h = self.x_embedder(x) + self.pos_embed  # [B, T, D], v_0
        t_emb = self.t_embedder(t)  # [B, D], e(t)
        c = t_emb + self.y_embedder(y, self.training, drop_labels)  # [B, D]
        stream = self.routing.start(h, t_emb)
        for k, block in enumerate(self.blocks):
            block(stream, c, k)
        out = self.unpatchify(self.final_layer(stream.read_final(), c))  # [B, out_C, H, W]
        if self.learn_sigma:
            out = out[:, : self.in_channels]
        return out


# ---------------------------------------------------------------------------
# Positions: fixed 2-D sin-cos (MAE layout: first half of channels encodes the column)
# ---------------------------------------------------------------------------


def get_1d_sincos_pos_embed(dim: int, pos: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_2d_sincos_pos_embed(dim: int, grid_size: int) -> np.ndarray:
    """[grid_size**2, dim]; rows in raster order."""
    if dim % 4:
        raise ValueError(f"hidden size {dim} must be divisible by 4 for 2-D sin-cos positions")
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0)  # grid[0]: column, grid[1]: row
    emb_a = get_1d_sincos_pos_embed(dim // 2, grid[0])
    emb_b = get_1d_sincos_pos_embed(dim // 2, grid[1])
    return np.concatenate([emb_a, emb_b], axis=1)


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SiTSize:
    depth: int
    hidden_size: int
    num_heads: int
    note: str


SIZES: dict[str, SiTSize] = {
    "S": SiTSize(12, 384, 6, "SiT-S"),
    "B": SiTSize(12, 768, 12, "SiT-B"),
    "L": SiTSize(24, 1024, 16, "SiT-L"),
    "XL": SiTSize(28, 1152, 16, "SiT-XL"),
    "Plus": SiTSize(28, 1216, 16, "SiT-Plus: SiT-XL widened to 752M, Table 1"),
    "T": SiTSize(8, 64, 4, "tiny (0.6M at 8x8x1), for the digits-scale reproduction on 2 CPU cores"),
    "TPlus": SiTSize(8, 68, 4, "SiT-T widened to the parameter count of Dynamic c4 (the digits SiT-Plus)"),
}
PATCH_SIZES = (2, 4, 8)

MODELS: dict[str, tuple[str, int]] = {f"SiT-{s}/{p}": (s, p) for s in SIZES for p in PATCH_SIZES}


def build_model(name: str, routing: str = "residual", **kwargs) -> SiT:
    """Build a registered model, e.g. build_model("SiT-XL/2", "dar-static-c4").

    kwargs override the SiT defaults (input_size, in_channels, num_classes,
    learn_sigma, class_dropout_prob; depth/hidden_size/num_heads for custom sizes;
    routing_backend, the DAR aggregation implementation, see dar.routing.backend).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(MODELS)}")
    size, patch = MODELS[name]
    arch = SIZES[size]
    cfg = dict(depth=arch.depth, hidden_size=arch.hidden_size, num_heads=arch.num_heads, patch_size=patch)
    cfg.update(kwargs)
    return SiT(routing=routing, **cfg)
