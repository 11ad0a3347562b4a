"""Width-matched residual controls: the SiT-Plus construction of Table 1, automated.

The paper compares Dynamic c4 (751M) with SiT-Plus, SiT-XL/2 widened to 752M, so that a
gain cannot be the extra parameters. `matched_width` does this for any routing: the
hidden size of the residual model (same depth, heads and patch) whose parameter count is
nearest the routing's. Widths stay valid: divisible by the number of heads and by 4 (the
2-D sin-cos positions). For SiT-XL/2 and Dynamic c4 it gives 1216, the paper's SiT-Plus
(tests/test_params.py).

A method that adds at most MATCH_THRESHOLD of the residual model's parameters needs no
control (the residual model is already matched).
"""

from __future__ import annotations

import math

import torch

MATCH_THRESHOLD = 0.01  # relative parameter overhead above which a routing gets a width-matched control


def count(model: str, routing: str = "residual", **arch) -> int:
    """Parameters of build_model(model, routing, **arch), built on the meta device."""
    from dar.models.sit import build_model

    with torch.device("meta"):
        m = build_model(model, routing, **arch)
    return sum(p.numel() for p in m.parameters())


def needs_control(model: str, routing: str, **arch) -> bool:
    base = count(model, "residual", **arch)
    return count(model, routing, **arch) - base > MATCH_THRESHOLD * base


def matched_width(model: str, routing: str, **arch) -> int:
    """Hidden size of the residual `model` whose parameter count is nearest that of `model` with `routing`.

    arch: the build_model overrides of the runs compared (input_size, in_channels, num_classes, ...)."""
    from dar.models.sit import MODELS, SIZES

    size = SIZES[MODELS[model][0]]
    heads = arch.get("num_heads", size.num_heads)
    base = arch.pop("hidden_size", size.hidden_size)
    target = count(model, routing, hidden_size=base, **arch)
    step = math.lcm(heads, 4)
    width = base - base % step
    best = (abs(count(model, "residual", hidden_size=width, **arch) - target), width)
    while True:  # the count grows with the width: walk up until it passes the target
        width += step
        n = count(model, "residual", hidden_size=width, **arch)
        best = min(best, (abs(n - target), width))
        if n >= target:
            return best[1]
