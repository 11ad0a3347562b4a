"""Reading the latent cache for training.

`LatentCache(folder)` memory-maps every shard and returns, for a list of
dataset positions and per-sample flip choices and noise, the training latents

    z = (mean + std * eps) * scale          (a fresh posterior sample)

The randomness (which positions, which flip, eps) is supplied by the caller,
so it can be a function of the global sample index and the step only: the
same run then sees the same data on 1 or 32 GPUs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from dar.data.cache import FORMAT, INDEX
from dar.errors import DataError


class LatentCache:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        index_path = self.folder / INDEX
        if not index_path.is_file():
            raise FileNotFoundError(
                f"latent cache {self.folder} is missing or incomplete (no {INDEX}); "
                f"run: python -m dar cache-latents --out {self.folder} (a rerun finishes a partial cache)"
            )
        self.index = json.loads(index_path.read_text())
        if self.index.get("format") != FORMAT:
            raise DataError(
                f"latent cache {self.folder} has format {self.index.get('format')}, expected {FORMAT} (this version "
                f"records the data's identity); rebuild it: remove {self.folder} and rerun python -m dar cache-latents"
            )
        self.identity = self.index["identity"]  # the data's identity, part of every run's identity
        self.content_sha256 = self.index["content_sha256"]  # digest of every shard's arrays
        self.moments = [np.load(self.folder / s / "moments.npy", mmap_mode="r") for s in self.index["shards"]]
        self.labels = torch.from_numpy(np.concatenate([np.load(self.folder / s / "labels.npy") for s in self.index["shards"]]))
        self.offsets = np.cumsum([0] + [len(m) for m in self.moments])
        if self.offsets[-1] != self.index["num_images"]:
            raise DataError(
                f"latent cache {self.folder}: shards hold {self.offsets[-1]} images, index says {self.index['num_images']}"
            )
        self.num_classes = int(self.index["num_classes"])
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes):
            # label num_classes is the model's null (CFG) class and a negative one indexes from the end: never data
            raise DataError(
                f"latent cache {self.folder}: labels span {int(self.labels.min())}..{int(self.labels.max())} but its "
                f"index says num_classes = {self.num_classes} (labels must lie in 0..{self.num_classes - 1}); rebuild it"
            )
        self.has_images = bool(self.index.get("images", False))
        shards = self.index["shards"] if self.has_images else []
        self.images_ = [np.load(self.folder / s / "images.npy", mmap_mode="r") for s in shards]
        self.scale = float(self.index["encoder"]["scale"])
        self.latent_shape = tuple(self.index["latent_shape"])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def gather(self, positions: torch.Tensor, flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Moments (mean, std) [n, C, h, w] float32 for the given positions and flip choices."""
        pos = positions.cpu().numpy()
        fl = flip.cpu().numpy().astype(np.int64)
        shard = np.searchsorted(self.offsets, pos, side="right") - 1
        out = np.empty((len(pos), 2, *self.latent_shape), dtype=np.float32)
        for s in np.unique(shard):
            sel = np.nonzero(shard == s)[0]
            local = pos[sel] - self.offsets[s]
            out[sel] = self.moments[s][local, fl[sel]]
        t = torch.from_numpy(out)
        return t[:, 0], t[:, 1]

    def images(self, positions: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Clean images [n, C, H, W] in [-1, 1] (horizontally flipped where flip = 1), for REPA's encoder."""
        if not self.has_images:
            raise DataError(
                f"latent cache {self.folder} holds no images; REPA needs them: rebuild it with "
                f"python -m dar cache-latents --store-images true --out {self.folder}"
            )
        pos = positions.cpu().numpy()
        shard = np.searchsorted(self.offsets, pos, side="right") - 1
        out = np.stack([self.images_[s][p - self.offsets[s]] for s, p in zip(shard, pos)])
        x = torch.from_numpy(out).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return torch.where(flip.cpu().view(-1, 1, 1, 1).bool(), x.flip(-1), x)

    def latents(self, positions: torch.Tensor, flip: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        mean, std = self.gather(positions, flip)
        return (mean.to(eps.device) + std.to(eps.device) * eps) * self.scale
