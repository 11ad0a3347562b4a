"""U-Net-like long-skip routing, paper Eq. 3-4, in the U-ViT form.

The depth-D stack is split into D//2 "in" blocks, a middle block when D is
odd, and D//2 "out" blocks. The output of in-block j (the residual state after
its MLP sublayer) is saved; out-block j' = D-1-j (0-based) fuses it into its
input with a linear layer on the concatenation (U-ViT's skip_linear):

    h~ = psi_l(h_l, h_pi(l)) = W [h_l ; h_pi(l)] + b        (Eq. 3)
    h_{l+1} = h~ + f_l(h~; t)                              (Eq. 4)

The residual stream then continues from h~. Initialisation: W = [I | 0], b = 0,
so the routing starts exactly as the residual baseline (in the spirit of
adaLN-Zero) and learns how much of the skip to use. U-ViT itself initialises
the fuse randomly; this choice keeps the comparison with DAR, which also starts
from a well-defined point, at matched initial function.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dar.routing.base import Routing, Stream


class SkipStream(Stream):
    def __init__(self, routing: SkipRouting, x0: Tensor) -> None:
        super().__init__(routing)
        self.h = x0
        self.saved: list[Tensor] = []  # outputs of the in-blocks, a stack

    def _read(self, l):
        r = self.routing
        block = (l - 1) // 2  # 0-based block of sublayer l
        if l % 2 == 1 and block >= r.depth - r.num_skips:  # first sublayer of an out-block
            j = block - (r.depth - r.num_skips)  # 0-based index among out-blocks
            skip = self.saved.pop()  # pairs out-block j with in-block num_skips-1-j
            self.h = r.fuse[j](torch.cat([self.h, skip], dim=-1))  # Eq. 3
        return self.h, None, None

    def _write(self, l, v):
        self.h = self.h + v  # Eq. 4
        block = (l - 1) // 2
        if l % 2 == 0 and block < self.routing.num_skips:  # end of an in-block
            self.saved.append(self.h)

    def _read_final(self):
        return self.h, None, None


class SkipRouting(Routing):
    def __init__(self, dim: int, depth: int) -> None:
        super().__init__(dim, depth)
        self.num_skips = depth // 2
        if self.num_skips == 0:
            raise ValueError("skip routing needs depth >= 2 (one in-block and one out-block)")
        self.fuse = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(self.num_skips))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in self.fuse:
            with torch.no_grad():
                lin.weight.zero_()
                lin.weight[:, : self.dim].copy_(torch.eye(self.dim))  # W = [I | 0]
                lin.bias.zero_()

    def start(self, x0: Tensor, t_emb: Tensor) -> Stream:
        return SkipStream(self, x0)
