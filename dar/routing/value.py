"""Value residual learning (ResFormer; Zhou et al., ACL 2025, arXiv 2410.17897, Sec. 3).

The residual stream stays as it is (Eq. 1-2); inside attention, every layer after the
first mixes the first layer's values into its own before attending:

    V_n <- lambda_1 V_1 + lambda_2 V_n,   n = 2 .. depth

with V_1 the values of the first block's attention (after the qkv projection, per head).
lambda_1 = lambda_2 = 0.5 is ResFormer's fixed form; this harness learns both per layer
from that init (the paper's learnable variant), 2 (depth - 1) parameters. The model is
not the residual model at init (the values are averaged from the first update on).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from dar.routing.base import Routing
from dar.routing.residual import ResidualStream

VALUE_LAMBDA_INIT = 0.5


class ValueResidualStream(ResidualStream):
    def __init__(self, routing: ValueResidualRouting, x0: Tensor) -> None:
        super().__init__(routing, x0)
        self.v1: Tensor | None = None

    def value_mixer(self, l: int) -> Callable[[Tensor], Tensor]:
        block = (l - 1) // 2  # attention sublayer l belongs to block `block` (0-based)
        if block == 0:
            return self._keep_first
        lam = self.routing.lambdas[block - 1]
        return lambda v: lam[0] * self.v1 + lam[1] * v

    def _keep_first(self, v: Tensor) -> Tensor:
        self.v1 = v
        return v


class ValueResidualRouting(Routing):
    def __init__(self, dim: int, depth: int) -> None:
        super().__init__(dim, depth)
        if depth < 2:
            raise ValueError("value residual learning needs depth >= 2 (later layers mix in the first layer's values)")
        self.lambdas = nn.Parameter(torch.full((depth - 1, 2), VALUE_LAMBDA_INIT))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.lambdas.fill_(VALUE_LAMBDA_INIT)

    def start(self, x0: Tensor, t_emb: Tensor) -> ResidualStream:
        return ValueResidualStream(self, x0)
