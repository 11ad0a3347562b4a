"""LAuReL, the learned augmented residual layer (Menghani et al., ICML 2025, arXiv 2411.07501, Sec. 2).

LAuReL generalises the residual x_{i+1} = f(x_i) + x_i to

    x_{i+1} = alpha f(x_i) + g(x_i)

and this file has two of its forms, applied at every sublayer (each residual connection of
the SiT block; f = the gated sublayer output v_l):

    RW (learned weights)   g(x) = beta x,            alpha, beta learnable scalars, both 1 at init
    LR (low rank)          g(x) = x + B A x,         A in R^{r x d}, B in R^{d x r}; alpha = 1

For LR, A is initialised as a Gaussian with std 1 / sqrt(d) and B = 0, so both forms are the
residual model exactly at init and gradients reach A through B from the first update.
Parameters per sublayer: RW 2, LR 2 r d. alpha and beta are used as they are (not
normalised), and A's init is this harness's choice: whether the paper normalises the RW
weights or initialises A otherwise was not confirmed from its text. (The paper's PA form,
which adds earlier activations, is not built here.)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dar.routing.base import Routing, Stream

FORMS = ("rw", "lr")


class LaurelStream(Stream):
    def __init__(self, routing: LaurelRouting, x0: Tensor) -> None:
        super().__init__(routing)
        self.h = x0

    def _read(self, l):
        return self.h, None, None

    def _write(self, l, v):
        r = self.routing
        if r.form == "rw":
            self.h = r.alpha[l - 1] * v + r.beta[l - 1] * self.h
        else:
            low = (self.h @ r.down[l - 1].t()) @ r.up[l - 1].t()  # B A x, rank r
            self.h = v + self.h + low

    def _read_final(self):
        return self.h, None, None


class LaurelRouting(Routing):
    def __init__(self, dim: int, depth: int, form: str = "rw", rank: int = 16) -> None:
        super().__init__(dim, depth)
        if form not in FORMS:
            raise ValueError(f"unknown LAuReL form {form!r}; choose one of {FORMS}")
        L = self.num_sublayers
        self.form = form
        self.rank = rank
        if form == "rw":
            self.alpha = nn.Parameter(torch.ones(L))
            self.beta = nn.Parameter(torch.ones(L))
        else:
            if not 1 <= rank <= dim:
                raise ValueError(f"LAuReL-LR: rank r={rank} must lie in 1..{dim} (the hidden size)")
            self.down = nn.Parameter(torch.empty(L, rank, dim))  # A
            self.up = nn.Parameter(torch.zeros(L, dim, rank))  # B
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.form == "rw":
                self.alpha.fill_(1.0)
                self.beta.fill_(1.0)
            else:
                self.down.normal_(0.0, 1.0 / math.sqrt(self.dim))
                self.up.zero_()

    def start(self, x0: Tensor, t_emb: Tensor) -> Stream:
        return LaurelStream(self, x0)

    def extra_repr(self) -> str:
        return f"form={self.form}" + (f", rank={self.rank}" if self.form == "lr" else "")
