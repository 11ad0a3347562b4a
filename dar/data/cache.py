"""Latent caching job: encode a dataset once, in shards, resumably.

    python -m dar cache-latents --dataset digits --out results/latents/digits
    python -m dar cache-latents --dataset imagefolder --root /data/imagenet/train \\
        --encoder sd-vae --vae-path $DAR_ASSETS/sd-vae-ft-ema --out results/latents/imagenet256

Layout of the output folder:

    shard_00000/moments.npy   [n, 2, 2, C, h, w]: (image, its horizontal flip) x (mean, std)
    shard_00000/labels.npy    [n] int64
    shard_00000/indices.npy   [n] int64, positions in the dataset
    shard_00000/images.npy    [n, H, W, C] uint8 clean images (only with --store-images, for REPA)
    index.json                dataset, encoder, preprocessing, shapes, shard list, content hashes, identity
    manifest.json             the identity of the cache (written first; a rerun under another identity is refused)

Storing both the image's and its flip's posterior keeps flip augmentation
exact. Each shard is written to a temporary folder and renamed, so a shard
folder that exists is complete: a rerun skips it. With several processes
(torch.distributed / submitit ranks, RANK and WORLD_SIZE in the environment)
shard s is written by rank s % WORLD_SIZE only, so ranks never write the same
file (the multi-GPU caching of a reference implementation overwrote files). The
index is written last, by whichever rank finds every shard complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dar import logs
from dar.config import AT_LEAST_1, NON_NEGATIVE, ConfigError, Range, job_parser, opt, run_job
from dar.data.encoders import IdentityEncoder, SDVAEEncoder
from dar.distributed import pick_device
from dar.errors import DiskFullError
from dar.fingerprint import IdentityMismatch, fingerprint
from dar.io import free_bytes, is_disk_full, write_json
from dar.provenance import git_commit

log = logs.get("cache")

INDEX = "index.json"
MANIFEST = "manifest.json"  # the identity of the cache being written, checked before any shard is reused
FORMAT = 2  # 2: the index records the data's identity


@dataclass
class CacheConfig:
    dataset: str = opt(
        "digits",
        "dataset: 'digits' (embedded, train split) or 'imagefolder' (ImageNet-style tree)",
        choices=("digits", "imagefolder"),
    )
    root: str | None = opt(None, "ImageFolder root (dataset=imagefolder)")
    image_size: int = opt(256, "ADM centre-crop size (dataset=imagefolder)", range=Range(8))
    encoder: str = opt("identity", "latent encoder: 'identity' (digits) or 'sd-vae'", choices=("identity", "sd-vae"))
    vae_path: str | None = opt(None, "local diffusers folder of the SD VAE (encoder=sd-vae)", identity=False)
    out: str = opt("results/latents/digits", "output folder", identity=False)
    shard_size: int = opt(4096, "images per shard", range=AT_LEAST_1)
    batch_size: int = opt(64, "images per encoder call", identity=False, range=AT_LEAST_1)
    workers: int = opt(4, "data-loading worker processes (dataset=imagefolder)", identity=False, range=NON_NEGATIVE)
    store_images: bool = opt(False, "also keep the preprocessed images (uint8) for encoders that need the clean image (REPA)")
    device: str = opt("auto", "'auto' (cuda:LOCAL_RANK if available), 'cpu' or 'cuda'", identity=False, device=True)

    def data_identity(self) -> dict:
        """What the training data is (part of every run's identity): dataset, its root and crop, encoder."""
        out = {"dataset": self.dataset, "encoder": self.encoder}
        if self.dataset == "imagefolder":
            out.update(root=self.root, image_size=self.image_size)
        return out

    def identity(self) -> dict:
        """The cache folder's identity: the data's, plus its layout (shard size) and whether it keeps images."""
        return {**self.data_identity(), "shard_size": self.shard_size, "store_images": self.store_images}


class _DigitsSource(torch.utils.data.Dataset):
    def __init__(self) -> None:
        from dar.data.digits import load_split

        self.images, self.labels = load_split("train")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


def _source(cfg: CacheConfig):
    if cfg.dataset == "digits":
        from dar.data import digits

        return _DigitsSource(), {"name": "digits", "split": "train", "preprocessing": "pixels/8 - 1"}, digits.NUM_CLASSES
    if cfg.dataset == "imagefolder":
        from dar.data.imagefolder import ImageFolderDataset

        if not cfg.root:
            raise ConfigError("dataset=imagefolder needs --root pointing at the ImageFolder train tree")
        ds = ImageFolderDataset(cfg.root, cfg.image_size)
        desc = {
            "name": "imagefolder",
            "root": str(Path(cfg.root).resolve()),
            "preprocessing": f"adm_center_crop({cfg.image_size})",
        }
        return ds, desc, len(ds.classes)
    raise ConfigError(f"unknown dataset {cfg.dataset!r}; choose 'digits' or 'imagefolder'")


def _encoder(cfg: CacheConfig, device: torch.device):
    if cfg.encoder == "identity":
        return IdentityEncoder(channels=1 if cfg.dataset == "digits" else 3)
    if cfg.encoder == "sd-vae":
        if not cfg.vae_path:
            raise ConfigError("encoder=sd-vae needs --vae-path (a local diffusers folder; see python -m dar fetch-assets)")
        return SDVAEEncoder(cfg.vae_path, device)
    raise ConfigError(f"unknown encoder {cfg.encoder!r}; choose 'identity' or 'sd-vae'")


def shard_name(s: int) -> str:
    return f"shard_{s:05d}"


def _write_shard(out: Path, s: int, arrays: dict[str, np.ndarray]) -> None:
    final = out / shard_name(s)
    tmp = out / f".{shard_name(s)}.tmp-{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr)
        os.replace(tmp, final)  # atomic: a shard folder that exists is complete
    except OSError as e:
        if is_disk_full(e):
            raise DiskFullError(final, free_bytes(final)) from e
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # never left behind, whatever stopped the write


def _remove_stale_tmp(out: Path) -> None:
    """Shard folders a killed writer on this host left half-written (.shard_*.tmp-<host>-<pid>, process gone);
    another node's are never touched (the folder is shared by every rank of a multi-node job)."""
    host = socket.gethostname()
    for tmp in out.glob(f".shard_*.tmp-{host}-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(tmp, ignore_errors=True)


def content_sha256(out: Path, shards: list[str]) -> str:
    """Digest of the cache's latents and labels in dataset order, independent of the shard layout (and of
    whether images are kept): two caches of the same data hash alike however they are sharded."""
    moments, labels = hashlib.sha256(), hashlib.sha256()
    for s in shards:
        moments.update(np.ascontiguousarray(np.load(out / s / "moments.npy", mmap_mode="r")).tobytes())
        labels.update(np.ascontiguousarray(np.load(out / s / "labels.npy")).astype(np.int64).tobytes())
    return hashlib.sha256((moments.hexdigest() + labels.hexdigest()).encode()).hexdigest()


def _claim(out: Path, cfg: CacheConfig) -> None:
    """Record the cache's identity in <out>/manifest.json, or refuse a folder begun under another identity."""
    manifest = out / MANIFEST
    if manifest.is_file():
        recorded = json.loads(manifest.read_text())
        if recorded.get("identity") != cfg.identity():
            raise IdentityMismatch(
                "latent cache",
                out,
                recorded.get("identity"),
                cfg.identity(),
                [f"cache into another folder (--out), or remove {out} and rerun"],
            )
        return
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(
            f"latent cache {out} holds files but no {MANIFEST} (written before caches recorded their identity): "
            f"remove {out} and rerun, or cache into another folder (--out)"
        )
    write_json(manifest, {"identity": cfg.identity(), "fingerprint": fingerprint(cfg.identity())})


def run(cfg: CacheConfig) -> Path:
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = pick_device(cfg.device)
    ds, desc, num_classes = _source(cfg)
    enc = _encoder(cfg, device)
    out = Path(cfg.out)
    _claim(out, cfg)
    _remove_stale_tmp(out)
    n = len(ds)
    num_shards = (n + cfg.shard_size - 1) // cfg.shard_size
    mine = [s for s in range(num_shards) if s % world == rank and not (out / shard_name(s)).is_dir()]
    dtype = np.float32 if enc.name == "identity" else np.float16
    bar = logs.Progress(sum(min(cfg.shard_size, n - s * cfg.shard_size) for s in mine), "cache", unit="img", log=log)
    for s in mine:
        idx = np.arange(s * cfg.shard_size, min((s + 1) * cfg.shard_size, n))
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(ds, idx.tolist()),
            batch_size=cfg.batch_size,
            num_workers=cfg.workers if cfg.dataset == "imagefolder" else 0,
        )
        moments, labels, images = [], [], []
        for x, y in loader:
            x = x.to(device)
            m, sd = enc.moments(x)
            mf, sf = enc.moments(x.flip(-1))  # horizontal flip of the preprocessed crop
            moments.append(torch.stack([torch.stack([m, sd], 1), torch.stack([mf, sf], 1)], 1).cpu().numpy().astype(dtype))
            labels.append(y.numpy().astype(np.int64))
            if cfg.store_images:  # uint8 NHWC, the clean image as the ADM convention stores it
                images.append((127.5 * x.float() + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
            bar.update(len(y))
        arrays = {"moments": np.concatenate(moments), "labels": np.concatenate(labels), "indices": idx.astype(np.int64)}
        if cfg.store_images:
            arrays["images"] = np.concatenate(images)
        _write_shard(out, s, arrays)
    bar.close()
    if all((out / shard_name(s)).is_dir() for s in range(num_shards)):
        shape = list(np.load(out / shard_name(0) / "moments.npy", mmap_mode="r").shape[3:])
        write_json(
            out / INDEX,
            {
                "format": FORMAT,
                "dataset": desc,
                "num_images": n,
                "num_classes": num_classes,
                "encoder": enc.describe(),
                "latent_shape": shape,
                "dtype": np.dtype(dtype).name,
                "shard_size": cfg.shard_size,
                "images": cfg.store_images,
                "shards": [shard_name(s) for s in range(num_shards)],
                "content_sha256": content_sha256(out, [shard_name(s) for s in range(num_shards)]),
                "identity": cfg.data_identity(),
                "cache_identity": cfg.identity(),
                "fingerprint": fingerprint(cfg.identity()),
                "git_commit": git_commit(),
            },
        )
    return out


def print_result(cfg: CacheConfig, out: Path) -> None:
    done = (out / INDEX).is_file()
    print(f"latent cache {'complete' if done else 'partial (other ranks still writing)'}: {out}")


def main(argv: list[str] | None = None) -> int:
    args = job_parser("python -m dar cache-latents", __doc__, CacheConfig).parse_args(argv)
    return run_job(CacheConfig, args, run, print_result)
