"""`python -m dar params`: FLOP counting (dar/flops.py) and width-matched controls (dar/models/matched.py)."""

from __future__ import annotations

import torch

from conftest import tiny_model
from dar.flops import forward_flops
from dar.models.matched import count, matched_width, needs_control
from dar.params import main, routing_row
from dar.routing.chunks import final_sources, sublayer_sources

DIGITS = dict(input_size=8, in_channels=1, num_classes=10)


def test_matched_width_reproduces_the_papers_sit_plus_and_the_digits_one():
    # Table 1: Dynamic c4 (751M) is compared with SiT-Plus, SiT-XL/2 at width 1216 (752M); digits: SiT-TPlus, width 68
    assert matched_width("SiT-XL/2", "dar-dynamic-c4") == 1216
    assert matched_width("SiT-T/2", "dar-dynamic-c4", **DIGITS) == 68
    assert needs_control("SiT-T/2", "mhc-n4", **DIGITS) and not needs_control("SiT-T/2", "dwa", **DIGITS)


def test_matched_width_is_the_nearest_valid_width():
    target = count("SiT-T/2", "mhc-n4", **DIGITS)
    w = matched_width("SiT-T/2", "mhc-n4", **DIGITS)
    assert w % 4 == 0  # 4 heads, and 2-D sin-cos positions need a multiple of 4
    gaps = {v: abs(count("SiT-T/2", "residual", hidden_size=v, **DIGITS) - target) for v in range(48, 128, 4)}
    assert gaps[w] == min(gaps.values())


def test_linear_layer_flops_by_hand():
    # One Linear(d, 4d) on T tokens: 2 * T * d * 4d FLOPs (multiply-add = 2), plus T * 4d for the bias add
    lin = torch.nn.Linear(32, 128)
    from dar.flops import _Counter

    with torch.device("meta"):
        x = torch.empty(1, 16, 32)
        lin = lin.to("meta")
        counter = _Counter()
        with counter:
            lin(x)
    assert counter.flops == 2 * 16 * 32 * 128  # addmm's formula (the bias is part of addmm)


def test_extra_flops_of_static_dar_grow_with_its_source_count():
    # Static DAR's per-token work per source (logit, softmax, weighted sum) is the same for every source, and the
    # aggregator count (L + 1) and the normalised sources (v_0 .. v_L) do not depend on S: so the extra FLOPs are
    # a * (total sources read over all aggregators) + b, and the three chunk sizes lie on one line.
    L = 16
    sources = {S: sum(len(sublayer_sources(l, S, L)) for l in range(1, L + 1)) + len(final_sources(S, L)) for S in (1, 4, 8)}
    assert sources == {1: 153, 4: 72, 8: 90}
    base = forward_flops(tiny_model("residual", depth=8))
    extra = {S: forward_flops(tiny_model(f"dar-static-c{S}", depth=8)) - base for S in (1, 4, 8)}
    slope = (extra[1] - extra[4]) / (sources[1] - sources[4])
    assert slope > 0 and (extra[8] - extra[4]) == slope * (sources[8] - sources[4])
    dyn = forward_flops(tiny_model("dar-dynamic-c4", depth=8)) - base
    d, T = 32, 16
    assert dyn - extra[4] >= 2 * T * d * d * (L + 1)  # the dynamic query: a d x d projection per token per aggregator


def test_row_reports_the_control_and_the_cli_prints(capsys):
    base = routing_row("SiT-T/2", "residual", DIGITS, None)
    row = routing_row("SiT-T/2", "mhc-n4", DIGITS, base)
    assert row["extra_params"] == row["params"] - base["params"] > 0.01 * base["params"]
    assert row["matched_width"] == matched_width("SiT-T/2", "mhc-n4", **DIGITS)
    assert "matched_width" not in routing_row("SiT-T/2", "dwa", DIGITS, base)
    assert main(["--scale", "digits", "--routings", "residual", "dwa", "dar-dynamic-c4"]) == 0
    out = capsys.readouterr().out
    assert "SiT-T/2" in out and "width 68" in out and "dwa" in out
