"""Routing variants: how sublayer inputs are formed from earlier outputs.

A routing is named by a string, parsed into a `RoutingSpec`:

    residual                     standard residual stream (Eq. 1-2), the SiT baseline
    skip                         U-Net-like long skips, U-ViT fuse (Eq. 3-4)
    dar-<query>-c<S>             DAR (Eq. 5-7, 11); query in static|explicit|dynamic,
                                 S = chunk size (S = 1: dense, all sources)
    dar-<query>-c<S>-repa        DAR whose final aggregation reuses the last MLP
                                 aggregator, the DAR+REPA variant (App. C.3)

The field's other cross-layer routings (the routing zoo, ../shared/notes/routing-zoo.md):

    attnres                      full Attention Residuals (dar/routing/attnres.py)
    attnres-block[-n<N>]         Block AttnRes with N blocks (default: the divisor of the depth nearest 8)
    dwa | dwa-k<k>-p<p>          DenseFormer's depth-weighted average, dilation k, period p
    hc-static-n<n>               Hyper-Connections, expansion rate n (dar/routing/hyper.py)
    hc-dynamic-n<n>              dynamic Hyper-Connections
    mhc-n<n>                     manifold-constrained HC (dar/routing/mhc.py)
    laurel-rw | laurel-lr-r<r>   LAuReL, learned weights or rank-r (dar/routing/laurel.py)
    value-residual               value residual learning, ResFormer (dar/routing/value.py)

`ROUTINGS` lists the variants the paper uses, `ZOO` the zoo's methods at their
default settings; `parse_routing` accepts any chunk size, block count, expansion
rate or rank (checked against the model when it is built).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dar.routing.adaptive import FINALS, QUERIES, DARRouting
from dar.routing.aggregate import aggregate
from dar.routing.attnres import AttnResRouting, BlockAttnResRouting
from dar.routing.base import AlphaRecorder, MixRecorder, Observer, Routing, Stream
from dar.routing.denseformer import DWARouting
from dar.routing.hyper import HyperRouting
from dar.routing.laurel import LaurelRouting
from dar.routing.mhc import ManifoldRouting
from dar.routing.residual import ResidualRouting
from dar.routing.skip import SkipRouting
from dar.routing.value import ValueResidualRouting

__all__ = [
    "ROUTINGS",
    "ZOO",
    "AlphaRecorder",
    "MixRecorder",
    "Observer",
    "Routing",
    "RoutingSpec",
    "Stream",
    "aggregate",
    "build_routing",
    "check_routing",
    "parse_routing",
]

_DAR_NAME = re.compile(r"^dar-(?P<query>[a-z]+)-c(?P<chunk>\d+)(?P<repa>-repa)?$")
# The zoo's names: each pattern's groups are the spec fields it sets.
_ZOO_NAMES: dict[str, re.Pattern] = {
    "attnres": re.compile(r"^attnres$"),
    "attnres-block": re.compile(r"^attnres-block(?:-n(?P<n>\d+))?$"),
    "dwa": re.compile(r"^dwa(?:-k(?P<dilation>\d+)-p(?P<period>\d+))?$"),
    "hc": re.compile(r"^hc-(?P<variant>static|dynamic)-n(?P<n>\d+)$"),
    "mhc": re.compile(r"^mhc-n(?P<n>\d+)$"),
    "laurel": re.compile(r"^laurel-(?:(?P<variant>rw)|(?P<lr>lr)-r(?P<n>\d+))$"),
    "value-residual": re.compile(r"^value-residual$"),
}


@dataclass(frozen=True)
class RoutingSpec:
    kind: str  # residual | skip | dar | one of the zoo's kinds (_ZOO_NAMES)
    query: str | None = None  # DAR only: static | explicit | dynamic
    chunk: int | None = None  # DAR only: chunk size S
    final: str | None = None  # DAR only: dedicated | repa
    variant: str | None = None  # hc: static | dynamic; laurel: rw | lr
    n: int | None = None  # attnres-block: blocks N; hc, mhc: expansion rate n; laurel-lr: rank r
    dilation: int = 1  # dwa only: k
    period: int = 1  # dwa only: p

    @property
    def name(self) -> str:
        k = self.kind
        if k == "dar":
            return f"dar-{self.query}-c{self.chunk}" + ("-repa" if self.final == "repa" else "")
        if k == "attnres-block" and self.n is None:
            return k
        if k == "attnres-block" or k == "mhc":
            return f"{k}-n{self.n}"
        if k == "dwa":
            return "dwa" if (self.dilation, self.period) == (1, 1) else f"dwa-k{self.dilation}-p{self.period}"
        if k == "hc":
            return f"hc-{self.variant}-n{self.n}"
        if k == "laurel":
            return "laurel-rw" if self.variant == "rw" else f"laurel-lr-r{self.n}"
        return k

    @property
    def label(self) -> str:
        """Row label as the paper's tables (or the method's own paper) write it, e.g. 'Static c4'."""
        k = self.kind
        if k == "dar":
            return f"{self.query.capitalize()} c{self.chunk}" + (" (REPA final)" if self.final == "repa" else "")
        if k == "dwa":
            return "DenseFormer" + ("" if (self.dilation, self.period) == (1, 1) else f" {self.dilation}x{self.period}")
        if k == "hc":
            return f"HC {self.variant} (n={self.n})"
        if k == "laurel":
            return "LAuReL-RW" if self.variant == "rw" else f"LAuReL-LR (r={self.n})"
        return {
            "residual": "Residual",
            "skip": "U-ViT skip",
            "attnres": "AttnRes",
            "attnres-block": "Block AttnRes" if self.n is None else f"Block AttnRes (N={self.n})",
            "mhc": f"mHC (n={self.n})",
            "value-residual": "Value residual",
        }[k]

    @property
    def is_zoo(self) -> bool:
        return self.kind in _ZOO_NAMES


# The variants of the paper (Tables 1-4), in display order.
ROUTINGS: dict[str, RoutingSpec] = {
    s.name: s
    for s in [
        RoutingSpec("residual"),
        RoutingSpec("skip"),
        *(RoutingSpec("dar", q, 4, "dedicated") for q in QUERIES),
        *(RoutingSpec("dar", "static", c, "dedicated") for c in (1, 8)),
        *(RoutingSpec("dar", q, 4, "repa") for q in ("static", "dynamic")),
    ]
}

# The routing zoo's methods at their default settings, in display order (N near 8 blocks as the AttnRes paper,
# n = 4 copies as the HC and mHC papers, rank 16 for LAuReL-LR).
ZOO: dict[str, RoutingSpec] = {
    s.name: s
    for s in [
        RoutingSpec("attnres"),
        RoutingSpec("attnres-block"),
        RoutingSpec("dwa"),
        RoutingSpec("hc", variant="static", n=4),
        RoutingSpec("hc", variant="dynamic", n=4),
        RoutingSpec("mhc", n=4),
        RoutingSpec("laurel", variant="rw"),
        RoutingSpec("laurel", variant="lr", n=16),
        RoutingSpec("value-residual"),
    ]
}


def _parse_zoo(name: str) -> RoutingSpec | None:
    for kind, pattern in _ZOO_NAMES.items():
        m = pattern.match(name)
        if m is None:
            continue
        g = {k: v for k, v in m.groupdict().items() if v is not None}
        if kind == "laurel":
            return RoutingSpec(kind, variant=g.get("variant", "lr"), n=int(g["n"]) if "n" in g else None)
        return RoutingSpec(
            kind,
            variant=g.get("variant"),
            n=int(g["n"]) if "n" in g else None,
            dilation=int(g.get("dilation", 1)),
            period=int(g.get("period", 1)),
        )
    return None


def parse_routing(name: str | RoutingSpec) -> RoutingSpec:
    if isinstance(name, RoutingSpec):
        return name
    if name in ("residual", "skip"):
        return RoutingSpec(name)
    zoo = _parse_zoo(name)
    if zoo is not None:
        return zoo
    m = _DAR_NAME.match(name)
    if m is None or m["query"] not in QUERIES or int(m["chunk"]) < 1:
        raise ValueError(
            f"unknown routing {name!r}. Use 'residual', 'skip', 'dar-<query>-c<S>[-repa]' with "
            f"query in {QUERIES} and chunk size S >= 1 (e.g. 'dar-static-c4'), or a routing-zoo method "
            f"({', '.join(ZOO)}). Registered: {sorted(ROUTINGS)}"
        )
    return RoutingSpec("dar", m["query"], int(m["chunk"]), "repa" if m["repa"] else FINALS[0])


def check_routing(name: str | RoutingSpec, dim: int, depth: int) -> RoutingSpec:
    """Parse and check a routing against a model's width and depth (chunk sizes, block counts, ranks): the
    routing is built on the meta device, so a mistake surfaces when a config is validated, not when a job starts.
    Raises ValueError naming the problem."""
    import torch

    spec = parse_routing(name)
    with torch.device("meta"):
        build_routing(spec, dim, depth)
    return spec


def build_routing(name: str | RoutingSpec, dim: int, depth: int) -> Routing:
    spec = parse_routing(name)
    if spec.kind == "residual":
        return ResidualRouting(dim, depth)
    if spec.kind == "skip":
        return SkipRouting(dim, depth)
    if spec.kind == "attnres":
        return AttnResRouting(dim, depth)
    if spec.kind == "attnres-block":
        return BlockAttnResRouting(dim, depth, blocks=spec.n)
    if spec.kind == "dwa":
        return DWARouting(dim, depth, dilation=spec.dilation, period=spec.period)
    if spec.kind == "hc":
        return HyperRouting(dim, depth, n=spec.n, dynamic=spec.variant == "dynamic")
    if spec.kind == "mhc":
        return ManifoldRouting(dim, depth, n=spec.n)
    if spec.kind == "laurel":
        return LaurelRouting(dim, depth, form=spec.variant, rank=spec.n or 16)
    if spec.kind == "value-residual":
        return ValueResidualRouting(dim, depth)
    return DARRouting(dim, depth, query=spec.query, chunk=spec.chunk, final=spec.final)
