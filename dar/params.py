"""`python -m dar params`: parameters and extra FLOPs of every routing, at paper and digits scale.

    python -m dar params                          the paper's variants and the routing zoo, both scales
    python -m dar params --scale paper --routings residual mhc-n4
    python -m dar params --models SiT-B/2 --input-size 32 --in-channels 4 --num-classes 1000

Per routing: parameters, their overhead over the residual model, the FLOPs of one forward
(one sample, counted op by op on the meta device, dar/flops.py) over the residual's, and,
for a routing that adds more than 1% parameters, the width of its matched residual control
(dar/models/matched.py; SiT-Plus for Dynamic c4). The paper's Table 1 counts are printed
beside ours where it gives one. Nothing is allocated.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from dar.data.digits import IMAGE_SIZE as DIGITS_SIZE
from dar.flops import forward_flops
from dar.models import MODELS, build_model
from dar.models.matched import MATCH_THRESHOLD, count, matched_width
from dar.routing import ROUTINGS, ZOO

# Table 1, "Params" column (millions). Key: (model, routing).
PAPER_PARAMS_M = {
    ("SiT-XL/2", "residual"): 675.0,  # SiT / DiT rows: 675M
    ("SiT-Plus/2", "residual"): 752.0,  # SiT-Plus: 752M
    ("SiT-XL/2", "dar-static-c4"): 675.0,  # Static c4: 675M (Table 1 rounds to 1M)
    ("SiT-XL/2", "dar-dynamic-c4"): 751.0,  # Dynamic c4: 751M
}


@dataclass(frozen=True)
class Scale:
    model: str
    input_size: int
    in_channels: int
    num_classes: int

    def arch(self) -> dict:
        return dict(input_size=self.input_size, in_channels=self.in_channels, num_classes=self.num_classes)


SCALES = {
    "paper": Scale("SiT-XL/2", 32, 4, 1000),  # ImageNet 256: 32 x 32 x 4 SD-VAE latents
    "digits": Scale("SiT-T/2", DIGITS_SIZE, 1, 10),  # the digits preset: 8 x 8 pixels, 10 classes
}


def count_params(model_name: str, routing: str, input_size: int = 32, in_channels: int = 4, num_classes: int = 1000) -> int:
    return count(model_name, routing, input_size=input_size, in_channels=in_channels, num_classes=num_classes)


def routing_row(model_name: str, routing: str, arch: dict, base: dict | None) -> dict:
    """Params and FLOPs of one (model, routing); overheads against `base` (the residual row) when given."""
    with torch.device("meta"):
        model = build_model(model_name, routing, **arch)
    row = {"model": model_name, "routing": routing, "params": sum(p.numel() for p in model.parameters())}
    row["flops"] = forward_flops(model)
    if base is not None:
        row["extra_params"] = row["params"] - base["params"]
        row["extra_flops"] = row["flops"] - base["flops"]
        if row["extra_params"] > MATCH_THRESHOLD * base["params"]:
            width = matched_width(model_name, routing, **arch)
            row["matched_width"] = width
            row["matched_params"] = count(model_name, "residual", hidden_size=width, **arch)
    return row


def table(model_name: str, routings: list[str], arch: dict) -> list[dict]:
    base = routing_row(model_name, "residual", arch, None)
    return [base if r == "residual" else routing_row(model_name, r, arch, base) for r in routings]


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def print_table(rows: list[dict]) -> None:
    base = rows[0] if rows[0]["routing"] == "residual" else None
    print(
        f"{'model':<11} {'routing':<20} {'params':>9} {'+params':>8} {'FLOPs':>8} {'+FLOPs':>16}  {'matched control':<21} paper"
    )
    for r in rows:
        extra_p = "" if "extra_params" not in r else f"{100 * r['extra_params'] / base['params']:+.2f}%"
        extra_f = "" if "extra_flops" not in r else f"{_si(r['extra_flops'])} ({100 * r['extra_flops'] / base['flops']:+.2f}%)"
        ctrl = ""
        if "matched_width" in r:
            same = r["matched_params"] == base["params"]  # no valid width is nearer than the residual model itself
            ctrl = "the residual (nearest)" if same else f"width {r['matched_width']} ({_si(r['matched_params'])})"
        paper = PAPER_PARAMS_M.get((r["model"], r["routing"]))
        paper = "" if paper is None else f"{paper:.0f}M"
        print(
            f"{r['model']:<11} {r['routing']:<20} {_si(r['params']):>9} {extra_p:>8} {_si(r['flops']):>8} {extra_f:>16}  "
            f"{ctrl:<21} {paper}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar params", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scale", choices=[*SCALES, "both"], default="both", help="paper (SiT-XL/2), digits (SiT-T/2) or both")
    p.add_argument("--models", nargs="*", help="other registered models (with --input-size/--in-channels/--num-classes)")
    p.add_argument(
        "--routings", nargs="*", default=["residual", *[r for r in ROUTINGS if r != "residual"], *ZOO], help="routings"
    )
    p.add_argument("--input-size", type=int, default=32, help="latent side length for --models (default: 32)")
    p.add_argument("--in-channels", type=int, default=4, help="latent channels for --models (default: 4)")
    p.add_argument("--num-classes", type=int, default=1000, help="classes for --models (default: 1000)")
    args = p.parse_args(argv)
    routings = ["residual", *[r for r in args.routings if r != "residual"]]
    if args.models:
        arch = dict(input_size=args.input_size, in_channels=args.in_channels, num_classes=args.num_classes)
        jobs = [(m, arch) for m in args.models]
    else:
        jobs = [(s.model, s.arch()) for name, s in SCALES.items() if args.scale in (name, "both")]
    for model, arch in jobs:
        if model not in MODELS:
            p.error(f"unknown model {model!r}; registered: {', '.join(MODELS)}")
        shape = f"{arch['input_size']}x{arch['input_size']}x{arch['in_channels']}, {arch['num_classes']} classes"
        print(f"\n{model} on {shape} (FLOPs of one forward of one sample; + = over the residual model)")
        try:
            print_table(table(model, routings, arch))
        except ValueError as e:
            p.error(str(e))
    return 0
