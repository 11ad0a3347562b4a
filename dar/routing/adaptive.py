"""Diffusion-Adaptive Routing (DAR), paper Sec. 4.2 and App. C.3.

Each sublayer l replaces the running residual with a softmax attention over
earlier sublayer outputs (Eq. 5), over the chunked source set of Eq. 7; a
dedicated final aggregator over the set of Eq. 11 feeds the prediction head.
Every aggregator owns the learnable weight of its key RMSNorm and a query:

    static    q_l = w_l               w_l in R^d, zero-init (routing starts uniform)
    explicit  q_l = w_l + e(t)        e(t): the model's t-embedder output, whose last
                                      layer is zero-initialised so that e(t) = 0 at
                                      init and the variant starts as `static`
    dynamic   q_l = W_q^(l) v_{l-1}   W_q: Linear(d, d), zero-init (uniform at init)

With `final="repa"` there is no dedicated final aggregator: the last chunk's
MLP aggregator (the one of sublayer L, with its query and RMSNorm weight)
aggregates the Eq. 11 set for the head, as the paper does for DAR+REPA (App. C.3).

Aggregator count: L sublayer aggregators + 1 final = 57 for SiT-XL/2 (56 with
final="repa"). Static adds 2d parameters per aggregator (675.3M for XL/2),
dynamic d^2 + 2d (750.9M), as in Table 1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dar.routing.aggregate import rms_normalize
from dar.routing.backend import get_aggregate_fn, uses_kernel
from dar.routing.base import Routing, Stream
from dar.routing.chunks import check_chunk_size, dead_after, final_sources, sublayer_sources

QUERIES = ("static", "explicit", "dynamic")
FINALS = ("dedicated", "repa")


class Aggregator(nn.Module):
    """Parameters of one depth aggregator: RMSNorm weight and query."""

    def __init__(self, dim: int, query: str) -> None:
        super().__init__()
        self.query_kind = query
        self.norm_weight = nn.Parameter(torch.ones(dim))  # k_i = norm_weight * RMSNorm(v_i)
        if query in ("static", "explicit"):
            self.query = nn.Parameter(torch.zeros(dim))  # w_l
        else:
            self.query_proj = nn.Linear(dim, dim)  # W_q^(l)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.norm_weight)
        if self.query_kind == "dynamic":
            nn.init.zeros_(self.query_proj.weight)
            nn.init.zeros_(self.query_proj.bias)
        else:
            nn.init.zeros_(self.query)

    def make_query(self, prev: Tensor, t_emb: Tensor) -> Tensor:
        """q_l(t), Eq. 6 and 'Timestep injection'. prev = v_{l-1} [B, T, D]; t_emb = e(t) [B, D]."""
        if self.query_kind == "static":
            return self.query  # [D]
        if self.query_kind == "explicit":
            return self.query + t_emb  # [B, D]
        return self.query_proj(prev)  # [B, T, D]


class DARStream(Stream):
    def __init__(self, routing: DARRouting, x0: Tensor, t_emb: Tensor) -> None:
        super().__init__(routing)
        self.t_emb = t_emb
        self.v: list[Tensor | None] = [x0]  # v_0 .. v_l; entries no one reads again become None
        # rms_normalize(v_i), computed at a source's first read and reused by every later aggregator that reads it,
        # on the reference path only: the fused kernel normalises inside its one pass
        self.xhat: list[Tensor | None] | None = None if uses_kernel(routing.backend, x0) else [None]

    def _normed(self, sources: tuple[int, ...]) -> list[Tensor] | None:
        if self.xhat is None:
            return None
        for i in sources:
            if self.xhat[i] is None:
                self.xhat[i] = rms_normalize(self.v[i])
        return [self.xhat[i] for i in sources]

    def _aggregate(self, agg: Aggregator, sources: tuple[int, ...], prev: Tensor):
        r = self.routing
        q = agg.make_query(prev, self.t_emb)
        srcs = [self.v[i] for i in sources]
        want_alpha = bool(self.observers)
        out = r.aggregate_fn(srcs, q, agg.norm_weight, return_alpha=want_alpha, normed=self._normed(sources))
        h, alpha = out if want_alpha else (out, None)
        return h, sources, alpha

    def _read(self, l):
        r = self.routing
        return self._aggregate(r.aggregators[l - 1], r.sources[l - 1], prev=self.v[l - 1])

    def _write(self, l, v):
        self.v.append(v)
        if self.xhat is not None:
            self.xhat.append(None)
        for i in dead_after(l, self.routing.chunk, self.num_sublayers):
            self.v[i] = None  # free activations no later aggregator reads (inference memory)
            if self.xhat is not None:
                self.xhat[i] = None

    def _read_final(self):
        r = self.routing
        agg = r.final_aggregator if r.final == "dedicated" else r.aggregators[-1]
        return self._aggregate(agg, r.final_sources, prev=self.v[-1])


class DARRouting(Routing):
    #: The parameter module of one aggregator (full AttnRes swaps in its unscaled-logit form, dar/routing/attnres.py).
    aggregator_cls: type[Aggregator] = Aggregator

    def __init__(
        self, dim: int, depth: int, query: str = "static", chunk: int = 4, final: str = "dedicated", backend: str = "auto"
    ) -> None:
        super().__init__(dim, depth)
        if query not in QUERIES:
            raise ValueError(f"unknown DAR query {query!r}; choose one of {QUERIES}")
        if final not in FINALS:
            raise ValueError(f"unknown DAR final aggregation {final!r}; choose one of {FINALS}")
        check_chunk_size(chunk, self.num_sublayers)
        self.query = query
        self.chunk = chunk
        self.final = final
        self.zero_init_t_embedder = query == "explicit"
        L = self.num_sublayers
        self.sources = [sublayer_sources(l, chunk, L) for l in range(1, L + 1)]
        self.final_sources = final_sources(chunk, L)
        self.aggregators = nn.ModuleList(self.aggregator_cls(dim, query) for _ in range(L))
        self.final_aggregator = self.aggregator_cls(dim, query) if final == "dedicated" else None
        self.set_backend(backend)

    def set_backend(self, name: str) -> None:
        """Aggregation implementation: 'torch' (reference), 'triton' (fused kernel) or 'auto'; see dar.routing.backend."""
        self.aggregate_fn = get_aggregate_fn(name)
        self.backend = name

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, Aggregator):
                m.reset_parameters()

    def start(self, x0: Tensor, t_emb: Tensor) -> Stream:
        return DARStream(self, x0, t_emb)

    def extra_repr(self) -> str:
        return f"query={self.query}, chunk={self.chunk}, final={self.final}, sublayers={self.num_sublayers}"
