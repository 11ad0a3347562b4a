"""`python -m dar sample`: N samples from a checkpoint as an ADM `.npz`.

    python -m dar sample --checkpoint results/runs/x/checkpoints/step_0002000.pt \\
        --sampler ode --nfe 250 --cfg-scale 1.5 --num-samples 50000 --out samples.npz

Output: `samples.npz` with `arr_0` (uint8 [N, H, W, C]) and `labels` ([N]),
the ADM evaluator's format, plus `samples.npz.json` with the full protocol
(checkpoint, iteration, sampler, NFE, guidance, seeds, decoder, commit).

Samples are made in shards of `--shard-size` under `samples.npz.shards/`, each
written atomically; process r of WORLD_SIZE makes shards s with s % WORLD_SIZE
== r, a rerun skips finished shards, and the final file is assembled (and
written atomically) by whichever process finds every shard done. Sample i uses
only its own random stream, so the file does not depend on the number of
processes or the batch size.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dar.config import ConfigError, job_parser, opt, run_job
from dar.io import write_json, write_npz
from dar.provenance import environment
from dar.sampling.grid import save_grid
from dar.sampling.loop import SampleSettings, generate
from dar.transport import get_sampler


@dataclass
class SampleConfig:
    checkpoint: str = opt("", "training checkpoint (.pt) to sample from")
    out: str = opt("samples.npz", "output .npz (ADM format); the protocol goes to <out>.json")
    sampler: str = opt("ode", "ode (Heun) | sde (Euler-Maruyama) | ode-euler | ode-heun | ode-dopri5 | sde-em")
    nfe: int = opt(250, "function evaluations (fixed-step samplers)")
    cfg_scale: float = opt(1.0, "classifier-free guidance scale w (1.0 = no guidance; the paper: 1.5)")
    cfg_channels: int | None = opt(3, "guided latent channels: 3 = SiT (channels 0-2), none = all (REPA)")
    cfg_interval: list[float] = opt([], "guidance interval lo,hi in SiT time (t = 1 data); empty = always")
    num_samples: int = opt(50_000, "samples to generate")
    seed: int = opt(0, "global seed; sample i uses the stream (seed, i)")
    batch_size: int = opt(64, "samples per forward")
    shard_size: int = opt(1000, "samples per resumable shard")
    ema: bool = opt(True, "use the EMA weights")
    vae_path: str | None = opt(None, "SD VAE folder for decoding (default: the one the latent cache recorded)")
    device: str = opt("auto", "auto | cpu | cuda")
    grid: str | None = opt(None, "also write a PNG grid of the first 100 samples here")

    def validate(self) -> None:
        if not self.checkpoint:
            raise ConfigError("checkpoint: give the training checkpoint to sample from (--checkpoint PATH)")
        if not Path(self.checkpoint).is_file():
            raise ConfigError(f"checkpoint {self.checkpoint} does not exist; train that run first (python -m dar train)")
        if self.num_samples < 1 or self.batch_size < 1 or self.shard_size < 1:
            raise ConfigError("num_samples, batch_size and shard_size must be >= 1")
        if self.cfg_interval and len(self.cfg_interval) != 2:
            raise ConfigError("cfg_interval needs two values lo,hi (or nothing)")
        get_sampler(self.sampler, self.nfe)  # raises ValueError naming the valid samplers


def make_decoder(latent: dict, vae_path: str | None, device: torch.device):
    enc = latent["encoder"]
    if enc["name"] == "identity":
        return lambda x: x, enc
    if enc["name"] == "sd-vae":
        from dar.data.encoders import SDVAEEncoder

        if not (vae_path or enc.get("path")):
            raise ValueError(
                "this checkpoint's latents are SD-VAE latents: pass --vae-path (python -m dar fetch-assets --only sd-vae-ft-ema)"
            )
        vae = SDVAEEncoder(vae_path or enc["path"], device)
        return vae.decode, {**enc, "path": str(vae.path)}
    raise ValueError(f"checkpoint was trained on latents of unknown encoder {enc['name']!r}")


def shard_dir(out: Path) -> Path:
    return out.with_name(out.name + ".shards")


def run(cfg: SampleConfig) -> Path:
    cfg.validate()
    from dar.train.checkpoint import load_for_inference

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if cfg.device == "auto":
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    out = Path(cfg.out)
    model, ckpt = load_for_inference(cfg.checkpoint, ema=cfg.ema)
    model = model.to(device)
    decode, decoder_desc = make_decoder(ckpt["latent"], cfg.vae_path, device)
    settings = SampleSettings(
        sampler=get_sampler(cfg.sampler, cfg.nfe),
        cfg_scale=cfg.cfg_scale,
        cfg_channels=cfg.cfg_channels,
        cfg_interval=tuple(cfg.cfg_interval) if cfg.cfg_interval else None,
        seed=cfg.seed,
    )
    shards = shard_dir(out)
    num_shards = (cfg.num_samples + cfg.shard_size - 1) // cfg.shard_size
    todo = [s for s in range(num_shards) if s % world == rank and not (shards / f"shard_{s:05d}.npz").is_file()]
    t0 = time.perf_counter()
    from tqdm import tqdm

    total = sum(min(cfg.shard_size, cfg.num_samples - s * cfg.shard_size) for s in todo)
    bar = tqdm(total=total, desc=f"sample rank {rank}", unit="img", disable=not sys.stderr.isatty())
    for s in todo:
        indices = range(s * cfg.shard_size, min((s + 1) * cfg.shard_size, cfg.num_samples))
        imgs, labels, nfes = [], [], []
        for x, y, nfe in generate(model, decode, settings, indices, cfg.batch_size, device):
            imgs.append(x)
            labels.append(y)
            nfes.append(nfe)
            bar.update(len(y))
        write_npz(shards / f"shard_{s:05d}.npz", arr_0=np.concatenate(imgs), labels=np.concatenate(labels), nfe=np.array(nfes))
    bar.close()
    files = [shards / f"shard_{s:05d}.npz" for s in range(num_shards)]
    if not all(f.is_file() for f in files):
        print(f"[sample] rank {rank}: my shards are done; waiting for other ranks to finish theirs in {shards}")
        return out
    parts = [np.load(f) for f in files]
    nfe_used = sorted({int(n) for p in parts for n in p["nfe"]})
    write_npz(out, arr_0=np.concatenate([p["arr_0"] for p in parts]), labels=np.concatenate([p["labels"] for p in parts]))
    protocol = {
        "checkpoint": str(Path(cfg.checkpoint).resolve()),
        "iteration": int(ckpt["step"]),
        "model": ckpt["config"]["model"],
        "routing": ckpt["config"]["routing"],
        "ema": cfg.ema,
        "sampler": settings.sampler.name,
        "sampler_alias": cfg.sampler,
        "nfe": cfg.nfe,
        "nfe_used": nfe_used,
        "cfg_scale": cfg.cfg_scale,
        "cfg_channels": "all" if cfg.cfg_channels is None else cfg.cfg_channels,
        "cfg_interval": cfg.cfg_interval or None,
        "num_samples": cfg.num_samples,
        "seed": cfg.seed,
        "seeds": f"sample i uses stream (seed={cfg.seed}, i) for i in 0..{cfg.num_samples - 1}",
        "class_labels": "uniform over classes, one draw per sample from its own stream",
        "decoder": decoder_desc,
        "world_size": world,
        "wall_seconds_last_rank": time.perf_counter() - t0,
        "environment": environment(),
    }
    write_json(out.with_name(out.name + ".json"), protocol)
    if cfg.grid:
        save_grid(np.load(out)["arr_0"][:100], cfg.grid, ncol=10, upscale=4 if model.input_size * 8 <= 64 else 1)
    shutil.rmtree(shards, ignore_errors=True)
    return out


def print_result(cfg: SampleConfig, out: Path) -> None:
    if out.is_file():
        print(f"[sample] wrote {out} ({cfg.num_samples} samples)")


def main(argv: list[str] | None = None) -> int:
    args = job_parser("python -m dar sample", __doc__, SampleConfig).parse_args(argv)
    return run_job(SampleConfig, args, run, print_result)
