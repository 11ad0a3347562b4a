"""REPA: representation alignment of an intermediate hidden state (Yu et al. 2025; paper App. C.1).

    loss = velocity MSE + lambda * mean_{tokens} ( -cos(h_phi(z_k), y) ),   lambda = 0.5

z_k is the model's hidden state after block k (k = 8 for SiT-XL/2), h_phi a per-token MLP
projector d -> 2048 -> 2048 -> C_enc (SiLU), y the frozen encoder's patch tokens of the clean
image. The projector is trained with the model but kept outside it (the SiT state_dict stays
the reference one); the encoder never receives gradients.

Which state is "after block k" under DAR is not stated in the paper; `HiddenCapture` supports
    aggregated  the aggregated state entering block k+1 (what the next block reads; the final
                aggregate when k is the last block)  -- the default, and for residual routing
                this is exactly the residual stream after block k, REPA's own choice
    sublayer    block k's last sublayer output v_{2k} (DAR only; the raw, unaggregated output)
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from dar.routing.base import Observer

REPA_STATES = ("aggregated", "sublayer")


def build_projector(dim: int, enc_dim: int, hidden: int = 2048) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, enc_dim))


def alignment_loss(projected: Tensor, target: Tensor) -> Tensor:
    """Per-sample mean over tokens of -cos(projected, target): [B]. -1 when aligned, 0 when orthogonal."""
    if projected.shape != target.shape:
        raise ValueError(f"REPA: projected tokens {tuple(projected.shape)} and encoder tokens {tuple(target.shape)} differ")
    return -F.cosine_similarity(projected.float(), target.float(), dim=-1).mean(dim=1)


class HiddenCapture(Observer):
    """Records the hidden state after block `depth` (1-based) during one forward pass."""

    def __init__(self, depth: int, model_depth: int, state: str = "aggregated") -> None:
        if not 1 <= depth <= model_depth:
            raise ValueError(f"REPA depth {depth} outside the model's blocks 1..{model_depth}")
        if state not in REPA_STATES:
            raise ValueError(f"unknown REPA state {state!r}; choose one of {REPA_STATES}")
        self.read_at = 2 * depth + 1 if depth < model_depth else None  # None: the final aggregate
        self.write_at = 2 * depth
        self.state = state
        self.hidden: Tensor | None = None

    def on_read(self, l, h, sources, alpha):
        if self.state == "aggregated" and l == self.read_at:
            self.hidden = h

    def on_final(self, h, sources, alpha):
        if self.state == "aggregated" and self.read_at is None:
            self.hidden = h

    def on_write(self, l, v):
        if self.state == "sublayer" and l == self.write_at:
            self.hidden = v
