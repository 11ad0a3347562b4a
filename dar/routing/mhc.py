"""Manifold-constrained Hyper-Connections (mHC; DeepSeek, arXiv 2512.24880, Sec. 4).

Like Hyper-Connections (dar/routing/hyper.py) the stream is n copies x_l in R^{n x d} per
token, and sublayer l updates it as

    x_{l+1} = H_res x_l + H_post^T F_l(H_pre x_l),   H_pre, H_post in R^{1 x n}, H_res in R^{n x n}

but the maps are constrained: H_pre = sigmoid(.), H_post = 2 sigmoid(.) (non-negative), and
H_res is projected onto the doubly stochastic matrices (the Birkhoff polytope) by
Sinkhorn-Knopp: starting from exp(H~_res), rows and columns are normalised in turn,
SINKHORN_ITERS = 20 times. The pre-activation maps are dynamic and static together, from
the flattened, RMS-normalised stream x~ = RMSNorm(vec(x_l)) in R^{1 x nd}:

    H~_pre  = a_pre  (x~ phi_pre)  + b_pre,      phi_pre  in R^{nd x n}
    H~_post = a_post (x~ phi_post) + b_post,     phi_post in R^{nd x n}
    H~_res  = a_res  mat(x~ phi_res) + b_res,    phi_res  in R^{nd x n^2}

Init (this harness's choice; the paper gives the form, not these values): phi = 0 and the
gates a = 0.01, so each map starts at its static bias; b_post = 0 (H_post = 1: every copy
receives v_l, as HC's B = 1); b_pre makes H_pre = (1 - eps) at copy (l-1) mod n and
eps / (n - 1) elsewhere (the copies read sum to one, eps = 0.01); b_res = 0 on the diagonal
and -4 elsewhere (Sinkhorn of it is close to the identity, soft enough for gradients to
flow). The stream starts as n copies of v_0; H_res is row-stochastic, so the copies stay
equal and the model starts as the residual model (its head reads the mean of the copies,
as this harness's HC does). The maps and the stream are kept in fp32 under bf16 autocast.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dar.routing.aggregate import full_precision
from dar.routing.base import Routing, Stream

SINKHORN_ITERS = 20  # t_max of the paper's Sinkhorn-Knopp projection
MHC_GATE_INIT = 0.01  # a_pre, a_post, a_res at init
MHC_PRE_EPS = 0.01  # H_pre's mass off the copy a sublayer starts reading
MHC_RES_OFF_DIAG = -4.0  # b_res off the diagonal


def sinkhorn(logits: Tensor, iters: int = SINKHORN_ITERS) -> Tensor:
    """Sinkhorn-Knopp on exp(logits) over the last two dims, in log space: alternate row and column normalisation.

    The result's columns sum to one exactly and its rows within the method's tolerance (tests/test_zoo.py)."""
    log_m = logits.float()
    for _ in range(iters):
        log_m = log_m - torch.logsumexp(log_m, dim=-1, keepdim=True)  # rows
        log_m = log_m - torch.logsumexp(log_m, dim=-2, keepdim=True)  # columns
    return log_m.exp()


class ManifoldConnection(nn.Module):
    """The parameters of one sublayer's mHC maps."""

    def __init__(self, dim: int, n: int, index: int) -> None:
        super().__init__()
        self.n = n
        self.index = index
        nd = n * dim
        self.norm_weight = nn.Parameter(torch.ones(nd))
        self.phi = nn.Parameter(torch.zeros(nd, 2 * n + n * n))  # [phi_pre | phi_post | phi_res]
        self.gates = nn.Parameter(torch.full((3,), MHC_GATE_INIT))  # a_pre, a_post, a_res
        self.b_pre = nn.Parameter(torch.zeros(n))
        self.b_post = nn.Parameter(torch.zeros(n))
        self.b_res = nn.Parameter(torch.zeros(n, n))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        n = self.n
        with torch.no_grad():
            self.norm_weight.fill_(1.0)
            self.phi.zero_()
            self.gates.fill_(MHC_GATE_INIT)
            off = MHC_PRE_EPS / (n - 1) if n > 1 else 0.0
            target = torch.full((n,), off)
            target[self.index % n] = 1.0 - MHC_PRE_EPS if n > 1 else 1.0
            self.b_pre.copy_(torch.logit(target.double(), eps=1e-12).float())
            self.b_post.zero_()
            self.b_res.fill_(MHC_RES_OFF_DIAG)
            self.b_res.fill_diagonal_(0.0)

    def maps(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """H_pre [B, T, n], H_post [B, T, n], H_res [B, T, n, n] for the stream x [B, T, n, D]."""
        B, T, n, D = x.shape
        flat = x.float().reshape(B, T, n * D)
        xt = flat * torch.rsqrt(flat.pow(2).mean(dim=-1, keepdim=True) + 1e-6) * self.norm_weight.float()
        z = xt @ self.phi.float()  # [B, T, 2n + n^2]
        a_pre, a_post, a_res = self.gates.float()
        pre = torch.sigmoid(a_pre * z[..., :n] + self.b_pre)
        post = 2 * torch.sigmoid(a_post * z[..., n : 2 * n] + self.b_post)
        res = sinkhorn(a_res * z[..., 2 * n :].reshape(B, T, n, n) + self.b_res)
        return pre, post, res


class ManifoldStream(Stream):
    def __init__(self, routing: ManifoldRouting, x0: Tensor) -> None:
        super().__init__(routing)
        self.x = x0.float().unsqueeze(2).expand(-1, -1, routing.n, -1)  # [B, T, n, D], fp32
        self.pending: tuple[Tensor, Tensor] | None = None

    def _read(self, l):
        with full_precision(self.x):
            pre, post, res = self.routing.connections[l - 1].maps(self.x)
            self.pending = (post, res)
            for obs in self.observers:
                obs.on_mix(l, {"H_pre": pre, "H_post": post, "H_res": res})
            return torch.einsum("btnd,btn->btd", self.x, pre), None, None

    def _write(self, l, v):
        post, res = self.pending
        v = v.float()
        with full_precision(v):
            mixed = torch.einsum("btij,btjd->btid", res, self.x)  # (H_res x_l)_i = sum_j H_res[i, j] x_j
            self.x = mixed + post.unsqueeze(-1) * v.unsqueeze(2)
        self.pending = None

    def _read_final(self):
        return self.x.mean(dim=2), None, None


class ManifoldRouting(Routing):
    """mHC with expansion rate n (default 4)."""

    def __init__(self, dim: int, depth: int, n: int = 4) -> None:
        super().__init__(dim, depth)
        if n < 1:
            raise ValueError(f"mHC: the expansion rate n={n} must be >= 1")
        self.n = n
        self.connections = nn.ModuleList(ManifoldConnection(dim, n, i) for i in range(self.num_sublayers))

    def reset_parameters(self) -> None:
        for c in self.connections:
            c.reset_parameters()

    def start(self, x0: Tensor, t_emb: Tensor) -> Stream:
        return ManifoldStream(self, x0)

    def extra_repr(self) -> str:
        return f"n={self.n}, sinkhorn_iters={SINKHORN_ITERS}, sublayers={self.num_sublayers}"
