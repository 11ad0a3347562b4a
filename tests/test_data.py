"""Datasets and the latent cache: ImageFolder, digits, sharding, resume, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from dar.config import ConfigError
from dar.data.cache import FORMAT, CacheConfig, run
from dar.data.digits import HELDOUT, load_split
from dar.data.imagefolder import DatasetError, ImageFolderDataset, center_crop_arr
from dar.data.latents import LatentCache


def make_tree(root, classes=("b_cls", "a_cls", "c_cls"), per_class=3, size=(40, 30)):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"img{i}.png")
    return root


def test_digits_split_is_fixed_and_disjoint():
    xtr, _ = load_split("train")
    xho, _ = load_split("heldout")
    assert xtr.shape == (1797 - HELDOUT, 1, 8, 8) and xho.shape == (HELDOUT, 1, 8, 8)
    assert xtr.min() == -1 and xtr.max() == 1
    x2, _ = load_split("train")
    torch.testing.assert_close(xtr, x2)
    # no held-out image appears in train (compare raw bytes)
    train_set = {bytes(x.numpy().tobytes()) for x in xtr}
    assert sum(bytes(x.numpy().tobytes()) in train_set for x in xho) < 10  # digits has a few exact duplicates


def test_imagefolder_labels_from_sorted_folders_and_adm_crop(tmp_path):
    ds = ImageFolderDataset(make_tree(tmp_path / "tree"), image_size=16)
    assert ds.classes == ["a_cls", "b_cls", "c_cls"] and len(ds) == 9
    x, y = ds[0]
    assert x.shape == (3, 16, 16) and -1 <= x.min() and x.max() <= 1 and y == 0
    # centre crop of a wide image: a vertical stripe pattern keeps its centre column
    arr = np.zeros((20, 60, 3), dtype=np.uint8)
    arr[:, 30:] = 255
    out = center_crop_arr(Image.fromarray(arr), 10)
    assert out.shape == (10, 10, 3) and out[:, :4].max() < 40 and out[:, 6:].min() > 215


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nope")
    tree = make_tree(tmp_path / "tree")
    (tree / "d_empty").mkdir()
    with pytest.raises(DatasetError, match=r"d_empty holds no images"):
        ImageFolderDataset(tree)
    (tree / "d_empty").rmdir()
    (tree / "a_cls" / "img0.png").write_bytes(b"not an image")
    ds = ImageFolderDataset(tree, image_size=16)
    with pytest.raises(DatasetError, match=r"cannot read image .*img0.png"):
        ds[0]


def test_corrupt_image_leaves_no_finished_cache(tmp_path):
    tree = make_tree(tmp_path / "tree")
    (tree / "b_cls" / "img1.png").write_bytes(b"\x89PNG broken")
    cfg = CacheConfig(dataset="imagefolder", root=str(tree), image_size=16, out=str(tmp_path / "cache"), shard_size=4, workers=0)
    with pytest.raises(DatasetError, match=r"img1\.png"):
        run(cfg)
    assert not (tmp_path / "cache" / "index.json").exists()
    with pytest.raises(FileNotFoundError, match="missing or incomplete"):
        LatentCache(tmp_path / "cache")


def test_cache_stores_image_and_flip_and_resumes(tmp_path):
    tree = make_tree(tmp_path / "tree")
    out = tmp_path / "cache"
    cfg = CacheConfig(dataset="imagefolder", root=str(tree), image_size=16, out=str(out), shard_size=4, workers=0)
    run(cfg)
    index = json.loads((out / "index.json").read_text())
    assert index["num_images"] == 9 and len(index["shards"]) == 3 and index["num_classes"] == 3
    cache = LatentCache(out)
    ds = ImageFolderDataset(tree, 16)
    mean, std = cache.gather(torch.tensor([5, 5]), torch.tensor([0, 1]))
    torch.testing.assert_close(mean[0], ds[5][0])  # identity encoder: latent = image
    torch.testing.assert_close(mean[1], ds[5][0].flip(-1))  # exact horizontal flip
    assert std.abs().max() == 0 and cache.labels[5] == ds[5][1]
    # resume: a finished shard is not rewritten
    mtime = (out / "shard_00001" / "moments.npy").stat().st_mtime_ns
    run(cfg)
    assert (out / "shard_00001" / "moments.npy").stat().st_mtime_ns == mtime


def test_cache_records_its_identity_and_refuses_a_folder_of_another(tmp_path):
    from dar.fingerprint import IdentityMismatch, fingerprint

    tree = make_tree(tmp_path / "tree")
    out = tmp_path / "cache"
    cfg = CacheConfig(dataset="imagefolder", root=str(tree), image_size=16, out=str(out), shard_size=4, workers=0)
    run(cfg)
    index = json.loads((out / "index.json").read_text())
    assert index["identity"] == {"dataset": "imagefolder", "encoder": "identity", "root": str(tree), "image_size": 16}
    assert index["fingerprint"] == fingerprint(cfg.identity()) and len(index["content_sha256"]) == 64
    assert LatentCache(out).content_sha256 == index["content_sha256"]
    # another crop or shard size into the same folder would mix two caches' shards: refused, naming the field
    for change, field in (({"image_size": 8}, "image_size: 16 recorded there, 8 now"), ({"shard_size": 5}, "shard_size")):
        with pytest.raises(IdentityMismatch, match=field):
            run(CacheConfig(**{**cfg.__dict__, **change}))
    # settings that only split the work are not part of the identity
    run(CacheConfig(**{**cfg.__dict__, "batch_size": 3}))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "shard_00000").mkdir()  # a cache begun before caches recorded their identity
    with pytest.raises(ConfigError, match=r"no manifest\.json"):
        run(CacheConfig(dataset="digits", out=str(tmp_path / "old")))


def test_a_failed_shard_write_leaves_no_temporary_folder(tmp_path, monkeypatch):
    import errno

    from dar.data import cache
    from dar.errors import DiskFullError

    real, calls = np.save, []

    def save(path, arr):
        calls.append(path)
        if len(calls) == 2:  # the second array of the first shard: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, arr)

    monkeypatch.setattr(cache.np, "save", save)
    with pytest.raises(DiskFullError, match=r"no space left on device while writing .*shard_00000"):
        run(CacheConfig(dataset="digits", out=str(tmp_path / "c"), shard_size=500))
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["manifest.json"], "no half-written shard, no .tmp folder"
    monkeypatch.setattr(cache.np, "save", real)
    import socket

    (tmp_path / "c" / f".shard_00001.tmp-{socket.gethostname()}-999999999").mkdir()  # one a killed writer left behind
    (tmp_path / "c" / ".shard_00002.tmp-othernode-1").mkdir()  # another node's, maybe being written: left alone
    run(CacheConfig(dataset="digits", out=str(tmp_path / "c"), shard_size=500))
    assert [p.name for p in (tmp_path / "c").glob(".shard_*")] == [".shard_00002.tmp-othernode-1"]
    assert LatentCache(tmp_path / "c").identity["dataset"] == "digits"


def test_ranks_write_disjoint_shards_and_match_one_process(tmp_path, monkeypatch):
    base = dict(dataset="digits", shard_size=256)
    run(CacheConfig(**base, out=str(tmp_path / "one")))
    for rank in (1, 0):  # rank 1 finishes first; rank 0 then finds every shard and writes the index
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        run(CacheConfig(**base, out=str(tmp_path / "two")))
        if rank == 1:
            written = sorted(p.name for p in (tmp_path / "two").glob("shard_*"))
            assert written == ["shard_00001", "shard_00003", "shard_00005"]
            assert not (tmp_path / "two" / "index.json").exists()
    a, b = LatentCache(tmp_path / "one"), LatentCache(tmp_path / "two")
    pos = torch.arange(len(a))
    torch.testing.assert_close(a.gather(pos, pos % 2)[0], b.gather(pos, pos % 2)[0], rtol=0, atol=0)
    assert torch.equal(a.labels, b.labels)


def test_missing_vae_names_the_fetch_command(tmp_path):
    from dar.data.encoders import SDVAEEncoder

    with pytest.raises(FileNotFoundError, match="fetch-assets --only sd-vae-ft-ema"):
        SDVAEEncoder(tmp_path / "no-vae")


def test_latent_cache_draws_posterior_samples(tmp_path):
    out = tmp_path / "c"
    (out / "shard_00000").mkdir(parents=True)
    moments = np.zeros((2, 2, 2, 1, 2, 2), dtype=np.float32)
    moments[:, :, 0] = 3.0  # mean
    moments[:, :, 1] = 0.5  # std
    np.save(out / "shard_00000" / "moments.npy", moments)
    np.save(out / "shard_00000" / "labels.npy", np.array([0, 1]))
    np.save(out / "shard_00000" / "indices.npy", np.array([0, 1]))
    (out / "index.json").write_text(
        json.dumps(
            {
                "format": FORMAT,
                "shards": ["shard_00000"],
                "identity": {"dataset": "handmade", "encoder": "identity"},
                "content_sha256": "0" * 64,
                "num_images": 2,
                "num_classes": 2,
                "encoder": {"scale": 0.18215},
                "latent_shape": [1, 2, 2],
            }
        )
    )
    cache = LatentCache(out)
    eps = torch.ones(2, 1, 2, 2)
    torch.testing.assert_close(
        cache.latents(torch.tensor([0, 1]), torch.tensor([0, 1]), eps), torch.full((2, 1, 2, 2), 3.5 * 0.18215)
    )
    assert os.path.isdir(out)
