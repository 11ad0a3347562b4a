"""`python -m dar sample`: N samples from a checkpoint as an ADM `.npz`.

    python -m dar sample --checkpoint results/runs/x/checkpoints/step_0002000.pt \\
        --sampler ode --nfe 250 --cfg-scale 1.5 --num-samples 50000 --out samples.npz

Output: `samples.npz` with `arr_0` (uint8 [N, H, W, C]) and `labels` ([N]),
the ADM evaluator's format, plus `samples.npz.json` with the full protocol
(checkpoint, iteration, sampler, NFE, guidance, seeds, decoder, commit) and
the file's identity and fingerprint (dar/fingerprint.py): the checkpoint's
identity (its run's fingerprint and step) and the sampling settings.

Samples are made in shards of `--shard-size` under `samples.npz.shards/`, each
written atomically and named by the sample indices it holds; process r of
WORLD_SIZE makes shards s with s % WORLD_SIZE == r, a rerun skips finished
shards, and the final file is assembled (and written atomically) by whichever
process finds every shard done. The shard folder's `manifest.json` records the
identity and the checkpoint's sha256: a rerun under another identity or from
another checkpoint file is refused (`--restart` discards the shards), and a
rerun with another --shard-size makes its own shards. Sample i uses only its
own random stream, so the file does not depend on the number of processes,
the shard size or the batch size.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from dar import logs
from dar.config import ConfigError, job_parser, run_job
from dar.distributed import pick_device
from dar.errors import NonFiniteError
from dar.fingerprint import IdentityMismatch, differences, fingerprint
from dar.io import write_json, write_npz
from dar.provenance import environment
from dar.sampling.config import SampleConfig
from dar.sampling.grid import save_grid
from dar.sampling.loop import SampleSettings, generate
from dar.transport import get_sampler

log = logs.get("sample")


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


def partition(num_samples: int, shard_size: int) -> list[tuple[int, int]]:
    """The shards' index ranges [lo, hi): shard s holds samples s * shard_size ..."""
    return [(lo, min(lo + shard_size, num_samples)) for lo in range(0, num_samples, shard_size)]


def shard_path(shards: Path, lo: int, hi: int) -> Path:
    """A shard is named by the samples it holds, so shards of another --shard-size are never taken for these."""
    return shards / f"shard_{lo:08d}_{hi:08d}.npz"


def claim_shards(shards: Path, record: dict, restart: bool, world: int) -> None:
    """Reuse the shard folder only if it was begun under the same identity and checkpoint; else refuse (or --restart)."""
    manifest = shards / MANIFEST
    if restart and shards.exists():
        if world > 1:
            raise ConfigError(f"--restart with {world} processes: remove {shards} first, then rerun without --restart")
        shutil.rmtree(shards)
    if manifest.is_file():
        recorded = json.loads(manifest.read_text())
        if differences(recorded, record):
            raise IdentityMismatch(
                "sample shard folder",
                shards,
                recorded,
                record,
                ["sample into another file (--out)", "pass --restart to discard these shards and sample afresh"],
            )
        return
    if shards.is_dir() and any(shards.glob("shard_*")):
        raise ConfigError(
            f"sample shard folder {shards} holds shards but no {MANIFEST} (written before shards recorded what made "
            "them), so they are not reused: pass --restart to discard them"
        )
    write_json(manifest, record)


def _shard_ok(path: Path, fp: str, count: int) -> bool:
    """A finished shard of this sampling run: readable, made under fingerprint `fp`, holding `count` samples."""
    if not path.is_file():
        return False
    with np.load(path) as f:
        if str(f["fingerprint"]) != fp:
            raise ConfigError(
                f"shard {path} was made under fingerprint {f['fingerprint']} but its folder's manifest says {fp}: "
                "the folder mixes two sampling runs; pass --restart to discard it"
            )
        return len(f["labels"]) == count


def run(cfg: SampleConfig) -> Path:
    cfg.validate()
    from dar.train import checkpoint as ckpt_io
    from dar.train.checkpoint import checkpoint_identity, load_for_inference

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = pick_device(cfg.device)
    out = Path(cfg.out)
    model, ckpt = load_for_inference(cfg.checkpoint, ema=cfg.ema)
    ckpt_sha = ckpt_io.sha256(cfg.checkpoint)  # hashed once: load_for_inference verified it with the same cache
    identity = cfg.identity(checkpoint_identity(ckpt, ckpt_sha))
    fp = fingerprint(identity)
    record = {"identity": identity, "fingerprint": fp, "inputs": {"checkpoint_sha256": ckpt_sha}}
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
    claim_shards(shards, record, cfg.restart, world)
    parts = partition(cfg.num_samples, cfg.shard_size)
    todo = [
        (lo, hi)
        for s, (lo, hi) in enumerate(parts)
        if s % world == rank and not _shard_ok(shard_path(shards, lo, hi), fp, hi - lo)
    ]
    t0 = time.perf_counter()
    bar = logs.Progress(sum(hi - lo for lo, hi in todo), f"sample {out.name}", unit="img", log=log)
    for lo, hi in todo:
        imgs, labels, nfes = [], [], []
        try:
            for x, y, nfe in generate(model, decode, settings, range(lo, hi), cfg.batch_size, device):
                imgs.append(x)
                labels.append(y)
                nfes.append(nfe)
                bar.update(len(y))
        except NonFiniteError as e:
            raise NonFiniteError(f"sampling from {cfg.checkpoint} (cfg scale {cfg.cfg_scale:g}): {e}") from None
        write_npz(
            shard_path(shards, lo, hi),
            arr_0=np.concatenate(imgs),
            labels=np.concatenate(labels),
            nfe=np.array(nfes),
            fingerprint=np.array(fp),
        )
    bar.close()
    files = [shard_path(shards, lo, hi) for lo, hi in parts]
    if not all(f.is_file() for f in files):
        log.info("rank %d: my shards are done; waiting for other ranks to finish theirs in %s", rank, shards)
        return out
    loaded = [np.load(f) for f in files]
    images = np.concatenate([p["arr_0"] for p in loaded])
    if len(images) != cfg.num_samples or any(str(p["fingerprint"]) != fp for p in loaded):
        raise ConfigError(f"the shards in {shards} do not add up to {cfg.num_samples} samples of this run; pass --restart")
    nfe_used = sorted({int(n) for p in loaded for n in p["nfe"]})
    write_npz(out, arr_0=images, labels=np.concatenate([p["labels"] for p in loaded]))
    protocol = {
        **record,
        "checkpoint": str(Path(cfg.checkpoint).resolve()),
        "iteration": int(ckpt["step"]),
        "model": ckpt["config"]["model"],
        "routing": ckpt["config"]["routing"],
        "run_fingerprint": ckpt.get("fingerprint"),
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
        save_grid(images[:100], cfg.grid, ncol=10, upscale=4 if model.input_size * 8 <= 64 else 1)
    shutil.rmtree(shards, ignore_errors=True)
    return out


def print_result(cfg: SampleConfig, out: Path) -> None:
    if out.is_file():
        print(f"[sample] wrote {out} ({cfg.num_samples} samples)")


MANIFEST = "manifest.json"


def main(argv: list[str] | None = None) -> int:
    args = job_parser("python -m dar sample", __doc__, SampleConfig).parse_args(argv)
    return run_job(SampleConfig, args, run, print_result)
