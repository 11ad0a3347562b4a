"""`python -m dar params`: parameter counts of every registered model x routing.

Models are built on the meta device, so counting SiT-XL/2 allocates nothing.
The paper's Table 1 counts are printed beside ours where it gives one.
"""

from __future__ import annotations

import argparse

import torch

from dar.models import MODELS, build_model
from dar.routing import ROUTINGS
from dar.routing.chunks import valid_chunk_sizes

# Table 1, "Params" column (millions). Key: (model, routing).
PAPER_PARAMS_M = {
    ("SiT-XL/2", "residual"): 675.0,  # SiT / DiT rows: 675M
    ("SiT-Plus/2", "residual"): 752.0,  # SiT-Plus: 752M
    ("SiT-XL/2", "dar-static-c4"): 675.0,  # Static c4: 675M (Table 1 rounds to 1M)
    ("SiT-XL/2", "dar-dynamic-c4"): 751.0,  # Dynamic c4: 751M
}


def count_params(model_name: str, routing: str, input_size: int = 32, in_channels: int = 4, num_classes: int = 1000) -> int:
    with torch.device("meta"):
        model = build_model(model_name, routing, input_size=input_size, in_channels=in_channels, num_classes=num_classes)
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar params", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", nargs="*", default=list(MODELS), help="models to count (default: all registered)")
    p.add_argument("--routings", nargs="*", default=list(ROUTINGS), help="routings to count (default: the paper's variants)")
    p.add_argument("--input-size", type=int, default=32, help="latent side length (default: 32, ImageNet 256 latents)")
    p.add_argument("--in-channels", type=int, default=4, help="latent channels (default: 4)")
    p.add_argument("--num-classes", type=int, default=1000, help="classes (default: 1000)")
    args = p.parse_args(argv)
    print(f"{'model':<12} {'routing':<22} {'params':>10}  paper (Table 1)")
    for m in args.models:
        if m not in MODELS:
            p.error(f"unknown model {m!r}; registered: {', '.join(MODELS)}")
        for r in args.routings:
            try:
                n = count_params(m, r, args.input_size, args.in_channels, args.num_classes)
            except ValueError as e:
                if "chunk size" not in str(e):
                    p.error(str(e))
                depth = build_depth(m)
                print(f"{m:<12} {r:<22} {'-':>10}  (chunk does not divide L={2 * depth}; valid: {valid_chunk_sizes(2 * depth)})")
                continue
            paper = PAPER_PARAMS_M.get((m, r))
            print(f"{m:<12} {r:<22} {n / 1e6:>9.2f}M  {'' if paper is None else f'{paper:.0f}M'}")
    return 0


def build_depth(model_name: str) -> int:
    from dar.models.sit import SIZES

    return SIZES[MODELS[model_name][0]].depth
