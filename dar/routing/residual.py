"""Standard residual routing, paper Eq. 1-2: h_{l+1} = h_l + f_l(h_l; t).

No parameters, so a model with this routing has exactly the state_dict of
the reference SiT and loads its checkpoints.
"""

from __future__ import annotations

from torch import Tensor

from dar.routing.base import Routing, Stream


class ResidualStream(Stream):
    def __init__(self, routing: Routing, x0: Tensor) -> None:
        super().__init__(routing)
        self.h = x0  # h_0 = v_0

    def _read(self, l):
        return self.h, None, None

    def _write(self, l, v):
        self.h = self.h + v  # Eq. 1

    def _read_final(self):
        return self.h, None, None


class ResidualRouting(Routing):
    def start(self, x0: Tensor, t_emb: Tensor) -> Stream:
        return ResidualStream(self, x0)
