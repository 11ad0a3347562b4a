"""DenseFormer's Depth-Weighted Average (DWA; Pagliardini et al., arXiv 2402.02622, Sec. 3).

Blocks keep their residual stream inside; after block i a DWA module forms the input of
the next block as a weighted average of the embedding and every earlier block output:

    X_i = B_i(Y_{i-1}),    Y_i = sum_{j in J_i} alpha_{i,j} X_j,    output = Y_d

with X_0 the input embedding and X_i the full output of block i (residual included).
Dilation k keeps the connections with j = i (mod k), J_i = {j <= i : (i - j) % k == 0};
period p places a DWA module only after blocks i with p | i (elsewhere Y_i = X_i): the
"k x p DenseFormer", 1 x 1 being the dense one. alpha_{i,i} = 1 and every other weight 0
at init, so the model starts as the residual model exactly. Weights are free scalars
(no softmax, no sign constraint). A dense (1 x 1) DenseFormer of depth d adds
d (d + 3) / 2 scalars.

A "block" here is one SiT block (attention + MLP sublayers). Observers see each DWA's
weights on the read that follows it, with block output X_j labelled by the index 2j of
the sublayer that completes it (X_0 = v_0 is 0); the weights are live (not detached),
signed and unnormalised, unlike DAR's softmax weights. A block output no later DWA reads
is not kept.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dar.routing.base import Routing, Stream


def dwa_sources(i: int, dilation: int) -> tuple[int, ...]:
    """J_i: the block outputs X_j that the DWA after block i averages (j <= i, j = i mod k)."""
    return tuple(j for j in range(i + 1) if (i - j) % dilation == 0)


class DWAStream(Stream):
    def __init__(self, routing: DWARouting, x0: Tensor) -> None:
        super().__init__(routing)
        self.x: list[Tensor | None] = [x0 if routing.last_read.get(0) else None]  # X_0 .. X_i (None: read by no DWA)
        self.h = x0  # the residual state inside the current block
        self.mixed: tuple[tuple[int, ...], Tensor] | None = None  # (sources, alpha) of the DWA just applied

    def _observed(self) -> tuple[Tensor, tuple[int, ...] | None, Tensor | None]:
        if self.mixed is None or not self.observers:
            return self.h, None, None
        sources, w = self.mixed
        B, T, _ = self.h.shape
        return self.h, sources, w[:, None, None].expand(len(sources), B, T)

    def _read(self, l):
        out = self._observed()
        self.mixed = None
        return out

    def _write(self, l, v):
        self.h = self.h + v  # the residual inside block i
        if l % 2:
            return
        i = l // 2  # block i complete: X_i
        r = self.routing
        self.x.append(self.h if r.last_read.get(i) else None)
        if i % r.period == 0:
            js = dwa_sources(i, r.dilation)
            w = r.alphas[r.module_index[i]]
            y = w[0] * self.x[js[0]]
            for a, j in zip(w[1:], js[1:]):
                y = y + a * self.x[j]
            self.h = y  # Y_i
            self.mixed = (tuple(2 * j for j in js), w)
            for j in js:
                if r.last_read[j] == i:
                    self.x[j] = None  # no later DWA reads X_j

    def _read_final(self):
        return self._observed()


class DWARouting(Routing):
    """DenseFormer with dilation k and period p (defaults 1 x 1: every block, every earlier output)."""

    def __init__(self, dim: int, depth: int, dilation: int = 1, period: int = 1) -> None:
        super().__init__(dim, depth)
        if dilation < 1 or period < 1:
            raise ValueError(f"DenseFormer: dilation k={dilation} and period p={period} must be >= 1")
        self.dilation = dilation
        self.period = period
        blocks = [i for i in range(1, depth + 1) if i % period == 0]
        self.module_index = {i: n for n, i in enumerate(blocks)}  # block i -> its DWA module
        self.last_read = {j: i for i in blocks for j in dwa_sources(i, dilation)}  # X_j -> the last DWA reading it
        self.alphas = nn.ParameterList(nn.Parameter(torch.zeros(len(dwa_sources(i, dilation)))) for i in blocks)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for w in self.alphas:
                w.zero_()
                w[-1] = 1.0  # alpha_{i,i} = 1: the residual model at init

    def start(self, x0: Tensor, t_emb: Tensor) -> Stream:
        return DWAStream(self, x0)

    def extra_repr(self) -> str:
        return f"dilation={self.dilation}, period={self.period}, modules={len(self.alphas)}"
