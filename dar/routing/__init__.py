"""Routing variants: how sublayer inputs are formed from earlier outputs.

A routing is named by a string, parsed into a `RoutingSpec`:

    residual                     standard residual stream (Eq. 1-2), the SiT baseline
    skip                         U-Net-like long skips, U-ViT fuse (Eq. 3-4)
    dar-<query>-c<S>             DAR (Eq. 5-7, 11); query in static|explicit|dynamic,
                                 S = chunk size (S = 1: dense, all sources)
    dar-<query>-c<S>-repa        DAR whose final aggregation reuses the last MLP
                                 aggregator, the DAR+REPA variant (App. C.3)

`ROUTINGS` lists the variants the paper uses; `parse_routing` accepts any
chunk size (checked against the depth when the model is built).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dar.routing.adaptive import FINALS, QUERIES, DARRouting
from dar.routing.aggregate import aggregate
from dar.routing.base import AlphaRecorder, Observer, Routing, Stream
from dar.routing.residual import ResidualRouting
from dar.routing.skip import SkipRouting

__all__ = [
    "ROUTINGS",
    "AlphaRecorder",
    "Observer",
    "Routing",
    "RoutingSpec",
    "Stream",
    "aggregate",
    "build_routing",
    "parse_routing",
]

_DAR_NAME = re.compile(r"^dar-(?P<query>[a-z]+)-c(?P<chunk>\d+)(?P<repa>-repa)?$")


@dataclass(frozen=True)
class RoutingSpec:
    kind: str  # residual | skip | dar
    query: str | None = None  # DAR only: static | explicit | dynamic
    chunk: int | None = None  # DAR only: chunk size S
    final: str | None = None  # DAR only: dedicated | repa

    @property
    def name(self) -> str:
        if self.kind != "dar":
            return self.kind
        return f"dar-{self.query}-c{self.chunk}" + ("-repa" if self.final == "repa" else "")

    @property
    def label(self) -> str:
        """Row label as the paper's tables write it, e.g. 'Static c4'."""
        if self.kind == "residual":
            return "Residual"
        if self.kind == "skip":
            return "U-ViT skip"
        return f"{self.query.capitalize()} c{self.chunk}" + (" (REPA final)" if self.final == "repa" else "")


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


def parse_routing(name: str | RoutingSpec) -> RoutingSpec:
    if isinstance(name, RoutingSpec):
        return name
    if name in ("residual", "skip"):
        return RoutingSpec(name)
    m = _DAR_NAME.match(name)
    if m is None or m["query"] not in QUERIES or int(m["chunk"]) < 1:
        raise ValueError(
            f"unknown routing {name!r}. Use 'residual', 'skip', or 'dar-<query>-c<S>[-repa]' with "
            f"query in {QUERIES} and chunk size S >= 1, e.g. 'dar-static-c4'. Registered: {sorted(ROUTINGS)}"
        )
    return RoutingSpec("dar", m["query"], int(m["chunk"]), "repa" if m["repa"] else FINALS[0])


def build_routing(name: str | RoutingSpec, dim: int, depth: int) -> Routing:
    spec = parse_routing(name)
    if spec.kind == "residual":
        return ResidualRouting(dim, depth)
    if spec.kind == "skip":
        return SkipRouting(dim, depth)
    return DARRouting(dim, depth, query=spec.query, chunk=spec.chunk, final=spec.final)
