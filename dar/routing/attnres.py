"""Attention Residuals (AttnRes; Kimi Team, arXiv 2603.15031): full and block variants.

Full AttnRes replaces the residual sum with a softmax over every earlier sublayer output,
with one learned pseudo-query w_l in R^d per sublayer:

    h_l = sum_{i=0}^{l-1} alpha_{i->l} v_i,    alpha_{i->l} = softmax_i(w_l . RMSNorm(v_i))

with v_0 the input embedding and keys k_i = RMSNorm(v_i) carrying a learnable weight;
w_l = 0 at init, so every sublayer starts with uniform weights. The prediction head reads
one more aggregation of this kind over v_0 .. v_L with its own pseudo-query (this harness's
reading of the output layer: the head is treated as layer L + 1).

How it relates to DAR (the seed paper, Eq. 5-7): full AttnRes is DAR's static query with
chunk size 1 (dense source set, dedicated final aggregator) except for the temperature.
DAR scales the logit by 1/sqrt(d), AttnRes does not. The two are the same function under
w_AttnRes = w_DAR / sqrt(d) (tests/test_zoo.py checks the outputs), and they are identical
at init (w = 0). They train differently: Adam moves each w coordinate by about the learning
rate whatever its scale, so AttnRes's logits move sqrt(d) times faster than DAR's.

Block AttnRes partitions the model's layers into N blocks; a block boundary falls between
SiT blocks only (the paper's block size counts transformer layers, attention and MLP
together), so N divides the depth and a block holds S = L / N sublayers. The paper uses
N = 8 blocks; `attnres-block` without N takes the divisor of the depth nearest 8 (SiT-XL/2,
28 blocks: N = 7 of 4 SiT blocks; SiT-T/2, 8 blocks: N = 8). Inside a block the
outputs are summed (a plain residual within the block, b_n^j = v_{(n-1)S+1} + .. + v_{(n-1)S+j});
each sublayer attends over the completed block representations b_0 = v_0, b_1, .., b_{n-1}
and the current partial sum b_n^j (absent for the first sublayer of a block); the head
attends over b_0 .. b_N. Where DAR's chunked variant (Eq. 7, 11) keeps each intra-chunk
output as its own source and summarises a chunk by its last output v_{nS}, Block AttnRes
keeps one partial sum per block and summarises a block by the sum of its outputs.
Observers see block n as source index nS and the partial sum as the index of its latest
sublayer.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from dar.routing.adaptive import Aggregator, DARRouting
from dar.routing.aggregate import aggregate
from dar.routing.base import Routing, Stream


class AttnResAggregator(Aggregator):
    """A static pseudo-query whose logit is w . k_i, without DAR's 1/sqrt(d): the query is pre-scaled by sqrt(d)."""

    def __init__(self, dim: int, query: str = "static") -> None:
        if query != "static":
            raise ValueError(f"AttnRes has one static pseudo-query per layer; got query {query!r}")
        super().__init__(dim, "static")
        self.sqrt_dim = math.sqrt(dim)

    def make_query(self, prev: Tensor, t_emb: Tensor) -> Tensor:
        return self.query * self.sqrt_dim  # aggregate() divides by sqrt(d): the logit is w . k_i


class AttnResRouting(DARRouting):
    """Full AttnRes: every sublayer and the head attend over all earlier sublayer outputs (DAR's dense source sets)."""

    aggregator_cls = AttnResAggregator

    def __init__(self, dim: int, depth: int, backend: str = "auto") -> None:
        super().__init__(dim, depth, query="static", chunk=1, final="dedicated", backend=backend)

    def extra_repr(self) -> str:
        return f"full AttnRes, sublayers={self.num_sublayers}"


class BlockAttnResStream(Stream):
    def __init__(self, routing: BlockAttnResRouting, x0: Tensor) -> None:
        super().__init__(routing)
        self.blocks: list[Tensor] = [x0]  # b_0 = v_0, then b_1 .. b_n as blocks complete
        self.ids: list[int] = [0]  # source index shown to observers: block n -> nS
        self.partial: Tensor | None = None  # b_n^j, the sum of the current block's outputs so far
        self.partial_id = 0

    def _sources(self) -> tuple[list[Tensor], tuple[int, ...]]:
        if self.partial is None:
            return self.blocks, tuple(self.ids)
        return [*self.blocks, self.partial], (*self.ids, self.partial_id)

    def _aggregate(self, agg: AttnResAggregator):
        srcs, ids = self._sources()
        q = agg.make_query(srcs[-1], None)
        if self.observers:
            h, alpha = aggregate(srcs, q, agg.norm_weight, return_alpha=True)
            return h, ids, alpha
        return aggregate(srcs, q, agg.norm_weight), ids, None

    def _read(self, l):
        return self._aggregate(self.routing.aggregators[l - 1])

    def _write(self, l, v):
        v = v.float()  # block sums in fp32 under bf16 autocast, as the residual stream
        self.partial = v if self.partial is None else self.partial + v
        self.partial_id = l
        if l % self.routing.block_size == 0:  # block complete: its sum becomes a source of every later layer
            self.blocks.append(self.partial)
            self.ids.append(l)
            self.partial = None

    def _read_final(self):
        return self._aggregate(self.routing.final_aggregator)


PAPER_BLOCKS = 8  # the AttnRes paper's N


def default_blocks(depth: int) -> int:
    """The divisor of the depth nearest the paper's N = 8 (the larger on a tie)."""
    return min((n for n in range(1, depth + 1) if depth % n == 0), key=lambda n: (abs(n - PAPER_BLOCKS), -n))


class BlockAttnResRouting(Routing):
    """Block AttnRes with N blocks of depth / N SiT blocks each (S = L / N sublayers); N = None: default_blocks."""

    def __init__(self, dim: int, depth: int, blocks: int | None = None) -> None:
        super().__init__(dim, depth)
        L = self.num_sublayers
        blocks = default_blocks(depth) if blocks is None else blocks
        if blocks < 1 or depth % blocks:
            valid = [n for n in range(1, depth + 1) if depth % n == 0]
            raise ValueError(
                f"Block AttnRes: N={blocks} blocks do not divide the depth {depth} (block boundaries fall between SiT "
                f"blocks); valid N: {valid}"
            )
        self.num_blocks = blocks
        self.block_size = L // blocks
        self.aggregators = nn.ModuleList(AttnResAggregator(dim) for _ in range(L))
        self.final_aggregator = AttnResAggregator(dim)

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, Aggregator):
                m.reset_parameters()

    def start(self, x0: Tensor, t_emb: Tensor) -> Stream:
        return BlockAttnResStream(self, x0)

    def extra_repr(self) -> str:
        return f"blocks={self.num_blocks}, block_size={self.block_size}, sublayers={self.num_sublayers}"
