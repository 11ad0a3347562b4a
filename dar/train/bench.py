"""`python -m dar train-bench`: training throughput and peak memory on synthetic latents.

    python -m dar train-bench --model SiT-XL/2 --routing dar-static-c4 --batch 32 --precision bf16

Times full optimizer steps (forward, backward, AdamW, EMA) of the real training
code path on random latents after warm-up; no dataset is needed, so GPU
throughput can be measured without ImageNet. Prints one line per routing and
optionally writes JSON (with the device name).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from contextlib import nullcontext

import torch

from dar.io import write_json
from dar.models import build_model
from dar.provenance import environment
from dar.train.optim import ema_update, make_optimizer
from dar.transport.path import interpolate


def bench_one(
    model_name: str,
    routing: str,
    batch: int,
    steps: int,
    warmup: int,
    precision: str,
    device: torch.device,
    input_size: int,
    in_channels: int,
    num_classes: int,
    backend: str,
    hidden_size: int | None = None,
) -> dict:
    """hidden_size: another width of the model (a width-matched control)."""
    torch.manual_seed(0)
    width = {} if hidden_size is None else {"hidden_size": hidden_size}
    model = build_model(
        model_name, routing, input_size=input_size, in_channels=in_channels, num_classes=num_classes, routing_backend=backend,
        **width,
    ).to(device)  # fmt: skip
    ema = copy.deepcopy(model).requires_grad_(False).float()
    opt = make_optimizer(model.parameters(), lr=1e-4, weight_decay=0, betas=(0.9, 0.999))
    ema_params, model_params = list(ema.parameters()), list(model.parameters())
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (device.type == "cuda" and precision == "bf16") else nullcontext()
    x1 = torch.randn(batch, in_channels, input_size, input_size, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)

    def step() -> None:
        t = torch.rand(batch, device=device)
        xt, ut = interpolate(torch.randn_like(x1), x1, t)
        with autocast:
            loss = (model(xt, t, y).float() - ut).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema_update(ema_params, model_params, 0.9999)

    for _ in range(warmup):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    sec = (time.perf_counter() - t0) / steps
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "model": model_name,
        "routing": routing,
        "batch": batch,
        "precision": precision if device.type == "cuda" else "fp32",
        "sec_per_step": sec,
        "images_per_s": batch / sec,
        "peak_mem_gb": mem,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar train-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="SiT-XL/2", help="registered model (default: SiT-XL/2)")
    p.add_argument(
        "--routing",
        nargs="+",
        default=["residual", "dar-static-c4"],
        help="routings to compare (default: residual dar-static-c4)",
    )
    p.add_argument("--batch", type=int, default=32, help="batch per step (default: 32)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (default: 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up steps (default: 5)")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16", help="autocast dtype on CUDA (default: bf16)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--input-size", type=int, default=32, help="latent side (default: 32 = ImageNet 256)")
    p.add_argument("--in-channels", type=int, default=4, help="latent channels (default: 4)")
    p.add_argument("--num-classes", type=int, default=1000, help="classes (default: 1000)")
    p.add_argument("--backend", default="auto", help="DAR aggregation backend: torch | triton | auto (default: auto)")
    p.add_argument("--out", help="also write the results as JSON here")
    args = p.parse_args(argv)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else torch.device(args.device)
    env = environment()
    print(f"device: {env['device']}")
    rows = []
    for r in args.routing:
        try:
            row = bench_one(
                args.model,
                r,
                args.batch,
                args.steps,
                args.warmup,
                args.precision,
                dev,
                args.input_size,
                args.in_channels,
                args.num_classes,
                args.backend,
            )
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        rows.append(row)
        mem = f"{row['peak_mem_gb']:.2f} GiB" if row["peak_mem_gb"] is not None else "n/a (CPU)"
        print(
            f"{args.model} {r:<22} batch {args.batch:<4} {row['sec_per_step'] * 1e3:9.1f} ms/step "
            f"{row['images_per_s']:9.1f} img/s  peak {mem}  ({row['params_m']:.1f}M params)"
        )
    if len(rows) > 1:
        base = rows[0]["sec_per_step"]
        for row in rows[1:]:
            print(f"step time {row['routing']} / {rows[0]['routing']}: {row['sec_per_step'] / base:.3f}x")
    if args.out:
        write_json(args.out, {"rows": rows, "environment": env, "args": vars(args)})
    return 0
