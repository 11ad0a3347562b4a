"""Hyper-Connections, static and dynamic (Zhu et al., ICLR 2025, arXiv 2409.19606, Sec. 2-3).

The residual stream is widened to n copies H in R^{n x d} (per token; n is the expansion
rate, 4 by default). Every sublayer l has a hyper-connection matrix

    HC = [[0, B], [A_m, A_r]],   B in R^{1 x n}, A_m in R^{n x 1}, A_r in R^{n x n}

which forms the sublayer's input as a mix of the copies and writes its output back
into every copy (width- and depth-connections):

    h_l = A_m^T H                          (the input of sublayer l, R^{1 x d})
    H'  = B^T T_l(h_l) + A_r^T H           (T_l(h_l) = v_l, the gated sublayer output)

Static HC learns A_m, A_r, B directly. Its init makes the model the Pre-Norm residual
model: A_m = e_{(l-1) mod n} (layer l reads copy (l-1) mod n), A_r = I, B = 1. The stream
starts as n copies of the embedding and every copy receives every v_l, so all copies equal
the residual stream. The paper feeds the head the sum of the copies; this harness feeds it
their mean, the same head output (SiT's final LayerNorm, without affine, is scale-invariant
up to its eps) on the residual stream's scale, so diagnostics and REPA at the last block see
a state comparable with the other routings'. The stream is kept in fp32 under bf16
autocast, as the residual stream is (sublayer outputs are cast up when written).

Dynamic HC adds input-dependent terms, per token, from the normalised stream
H_bar = RMSNorm(H) (this harness uses RMSNorm with a learnable weight for the paper's norm):

    A_m(H) = s_a * tanh(H_bar W_m) + A_m,      W_m in R^{d x 1}
    A_r(H) = s_a * tanh(H_bar W_r) + A_r,      W_r in R^{d x n}
    B(H)   = s_b * tanh(H_bar W_b)^T + B,      W_b in R^{d x 1}

with W zero-initialised (the model starts as static HC) and the scalars s_a, s_b
initialised to 0.01. Parameters per sublayer: static n^2 + 2n (the matrix's (n + 1)^2 less
its fixed zero corner); dynamic adds d (n + 2) + 2 + d (the norm's weight).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dar.routing.aggregate import full_precision
from dar.routing.base import Routing, Stream

HC_SCALE_INIT = 0.01  # s_a, s_b at init (dynamic HC)


def rms_norm(x: Tensor, weight: Tensor, eps: float = 1e-6) -> Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps) * weight.float()).to(x.dtype)


class HyperConnection(nn.Module):
    """The parameters of one sublayer's hyper-connection (static part, plus the dynamic projections)."""

    def __init__(self, dim: int, n: int, index: int, dynamic: bool) -> None:
        super().__init__()
        self.n = n
        self.index = index  # 0-based sublayer index: A_m starts one-hot at index mod n
        self.dynamic = dynamic
        self.a_m = nn.Parameter(torch.zeros(n))
        self.a_r = nn.Parameter(torch.zeros(n, n))
        self.b = nn.Parameter(torch.zeros(n))
        if dynamic:
            self.norm_weight = nn.Parameter(torch.ones(dim))
            self.w_m = nn.Parameter(torch.zeros(dim))
            self.w_r = nn.Parameter(torch.zeros(dim, n))
            self.w_b = nn.Parameter(torch.zeros(dim))
            self.s_a = nn.Parameter(torch.full((), HC_SCALE_INIT))
            self.s_b = nn.Parameter(torch.full((), HC_SCALE_INIT))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.a_m.zero_()
            self.a_m[self.index % self.n] = 1.0
            self.a_r.copy_(torch.eye(self.n))
            self.b.fill_(1.0)
            if self.dynamic:
                self.norm_weight.fill_(1.0)
                for w in (self.w_m, self.w_r, self.w_b):
                    w.zero_()
                self.s_a.fill_(HC_SCALE_INIT)
                self.s_b.fill_(HC_SCALE_INIT)

    def maps(self, H: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(A_m, A_r, B) for the stream H [B, T, n, D]: static [n], [n, n], [n]; dynamic [B, T, n], [B, T, n, n], [B, T, n]."""
        if not self.dynamic:
            return self.a_m, self.a_r, self.b
        Hb = rms_norm(H, self.norm_weight)
        a_m = self.s_a * torch.tanh(Hb @ self.w_m) + self.a_m  # [B, T, n]
        a_r = self.s_a * torch.tanh(Hb @ self.w_r) + self.a_r  # [B, T, n, n]
        b = self.s_b * torch.tanh(Hb @ self.w_b) + self.b  # [B, T, n]
        return a_m, a_r, b


class HyperStream(Stream):
    def __init__(self, routing: HyperRouting, x0: Tensor) -> None:
        super().__init__(routing)
        self.H = x0.float().unsqueeze(2).expand(-1, -1, routing.n, -1)  # n copies of v_0: [B, T, n, D], fp32
        self.pending: tuple[Tensor, Tensor] | None = None  # (A_r, B) of the sublayer being run

    def _read(self, l):
        with full_precision(self.H):
            a_m, a_r, b = (m.float() for m in self.routing.connections[l - 1].maps(self.H))
            self.pending = (a_r, b)
            for obs in self.observers:
                obs.on_mix(l, {"A_m": a_m, "A_r": a_r, "B": b})
            if a_m.dim() == 1:
                h = torch.einsum("btnd,n->btd", self.H, a_m)
            else:
                h = torch.einsum("btnd,btn->btd", self.H, a_m)
        return h, None, None

    def _write(self, l, v):
        a_r, b = self.pending
        v = v.float()
        with full_precision(v):
            if a_r.dim() == 2:  # H'_i = sum_j A_r[j, i] H_j + B_i v
                mixed = torch.einsum("btjd,ji->btid", self.H, a_r)
                self.H = mixed + b[:, None] * v.unsqueeze(2)
            else:
                mixed = torch.einsum("btjd,btji->btid", self.H, a_r)
                self.H = mixed + b.unsqueeze(-1) * v.unsqueeze(2)
        self.pending = None

    def _read_final(self):
        return self.H.mean(dim=2), None, None  # the copies' mean for the head (see the module docstring)


class HyperRouting(Routing):
    """Hyper-connections with expansion rate n, static or dynamic."""

    def __init__(self, dim: int, depth: int, n: int = 4, dynamic: bool = False) -> None:
        super().__init__(dim, depth)
        if n < 1:
            raise ValueError(f"Hyper-Connections: the expansion rate n={n} must be >= 1")
        self.n = n
        self.dynamic = dynamic
        self.connections = nn.ModuleList(HyperConnection(dim, n, i, dynamic) for i in range(self.num_sublayers))

    def reset_parameters(self) -> None:
        for c in self.connections:
            c.reset_parameters()

    def start(self, x0: Tensor, t_emb: Tensor) -> Stream:
        return HyperStream(self, x0)

    def extra_repr(self) -> str:
        return f"n={self.n}, {'dynamic' if self.dynamic else 'static'}, sublayers={self.num_sublayers}"
