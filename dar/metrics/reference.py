"""Reference statistics for FID / sFID and reference features for precision / recall.

Two kinds of reference file, told apart by their keys:

    adm-batch  an ADM reference batch (e.g. VIRTUAL_imagenet256_labeled.npz): `arr_0` uint8 NHWC
               images plus precomputed Inception statistics `mu, sigma` (pool_3, 2048-d) and
               `mu_s, sigma_s` (mixed_6/conv[:7], 2023-d). Its statistics are used as they are for
               FID / sFID; its images (10k for ImageNet 256) go through the extractor for
               precision / recall, as in the ADM evaluator.
    dar-cache  written by `python -m dar reference-stats` from a dataset in one feature space:
               `mu, sigma, mu_s, sigma_s` (float64), `pr_features` (float32), the image shape, the
               feature space, the extractor's weights sha256, and `content_sha256` = sha256 over
               the format tag, feature space, weights sha256, image shape and image bytes. A rerun
               with the same content is a no-op; any change (images, weights) recomputes.

Every evaluation records the reference's file sha256 (and content hash for caches),
and refuses a cache made in another feature space or with other weights.

    python -m dar reference-stats --dataset digits-train --features digits \\
        --weights results/digits_features/digits_net.pt --out results/reference/digits-train.npz
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dar.config import parse_with_config
from dar.io import write_npz
from dar.metrics.checks import EvaluationInputError, check_feature_space_input, check_images, load_npz
from dar.metrics.extractors import FEATURE_SPACES, FeatureSpace
from dar.metrics.fidelity import PRC_NEIGHBORHOOD
from dar.provenance import file_sha256

CACHE_FORMAT = "dar-reference-v1"
ADM_KEYS = ("arr_0", "mu", "sigma", "mu_s", "sigma_s")


# ----------------------------------------------------------------------------- datasets


def _digits(split: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from dar.data import digits

        return digits.to_uint8(digits.load_split(split)[0])  # (N, 8, 8, 1) uint8

    return load


DATASETS: dict[str, Callable[[], np.ndarray]] = {
    "digits-train": _digits("train"),  # 1500 images, the split the digits models train on
    "digits-heldout": _digits("heldout"),  # 297 images
}


def load_dataset_images(dataset: str) -> np.ndarray:
    """uint8 NHWC images of a named dataset, or of an .npz file's `arr_0`."""
    if dataset in DATASETS:
        return DATASETS[dataset]()
    if dataset.endswith(".npz"):
        arrays = load_npz(dataset, "dataset")
        if "arr_0" not in arrays:
            raise EvaluationInputError(f"dataset {dataset} has no 'arr_0' images (keys: {sorted(arrays)})")
        return check_images(arrays["arr_0"], f"dataset {dataset}")
    raise EvaluationInputError(f"unknown dataset {dataset!r}: choose one of {sorted(DATASETS)} or a path to an .npz with arr_0")


# ----------------------------------------------------------------------------- reference files


@dataclass
class Reference:
    path: Path
    kind: str  # "adm-batch" | "dar-cache"
    sha256: str  # of the file
    image_shape: tuple[int, int, int]  # (H, W, C) of the reference images
    mu: np.ndarray  # float64 [D]      FID statistics
    sigma: np.ndarray  # float64 [D, D]
    mu_s: np.ndarray  # float64 [Ds]   sFID statistics
    sigma_s: np.ndarray  # float64 [Ds, Ds]
    images: np.ndarray | None = None  # adm-batch: uint8 NHWC, for precision / recall
    pr_features: np.ndarray | None = None  # dar-cache: float32 [M, D]
    feature_space: str | None = None  # dar-cache only; an ADM batch does not say (Inception by convention)
    weights_sha256: str | None = None  # dar-cache only
    content_sha256: str | None = None  # dar-cache only
    count: int = 0  # reference images

    def describe(self) -> dict:
        out = {"path": str(self.path), "sha256": self.sha256, "kind": self.kind, "count": self.count}
        if self.kind == "dar-cache":
            out |= {"content_sha256": self.content_sha256, "feature_space": self.feature_space}
        return out


def load_reference(path: str | Path) -> Reference:
    path = Path(path)
    arrays = load_npz(path, "reference")
    stats = {k: arrays[k].astype(np.float64) for k in ("mu", "sigma", "mu_s", "sigma_s") if k in arrays}
    if str(arrays.get("format", "")) == CACHE_FORMAT:
        shape = tuple(int(v) for v in arrays["image_shape"])
        return Reference(
            path, "dar-cache", file_sha256(path), shape, **stats,
            pr_features=arrays["pr_features"],
            feature_space=str(arrays["feature_space"]),
            weights_sha256=str(arrays["weights_sha256"]),
            content_sha256=str(arrays["content_sha256"]),
            count=int(arrays["count"]),
        )  # fmt: skip
    if all(k in arrays for k in ADM_KEYS):
        images = check_images(arrays["arr_0"], f"reference batch {path}")
        return Reference(path, "adm-batch", file_sha256(path), tuple(images.shape[1:]), **stats, images=images, count=len(images))
    raise EvaluationInputError(
        f"reference {path} is neither an ADM reference batch (keys {', '.join(ADM_KEYS)}) nor a cache written by "
        f"python -m dar reference-stats (it has keys {sorted(arrays)})"
    )


def check_reference(ref: Reference, space: FeatureSpace, weights_sha256: str, dims: dict[str, int]) -> None:
    """The reference must live in the same feature space, with the same weights and feature sizes."""
    fix = f"compute a matching one with: python -m dar reference-stats --features {space.name} --weights <weights> --out <file>"
    if ref.kind == "dar-cache":
        if ref.feature_space != space.name:
            raise EvaluationInputError(
                f"reference {ref.path} holds {ref.feature_space} statistics but --features is {space.name}; {fix}"
            )
        if ref.weights_sha256 != weights_sha256:
            raise EvaluationInputError(
                f"reference {ref.path} was computed with {space.name} weights sha256 {ref.weights_sha256[:12]}..., "
                f"but the weights given have sha256 {weights_sha256[:12]}...; {fix}"
            )
    for key, layer in (("mu", space.fid_layer), ("mu_s", space.sfid_layer)):
        have, want = getattr(ref, key).shape, (dims[layer],)
        if have != want:
            what = "an ADM (Inception) batch" if ref.kind == "adm-batch" else "a cache"
            raise EvaluationInputError(
                f"reference {ref.path} ({what}) has {key} of size {have[0]}, but {space.name} '{layer}' features are "
                f"{want[0]}-d: the reference is from another feature space; {fix}"
            )
    if ref.pr_features is not None and ref.pr_features.shape[1:] != (dims[space.prc_layer],):
        raise EvaluationInputError(f"reference {ref.path}: precision/recall features have the wrong size; {fix}")


def content_sha256(images: np.ndarray, space: FeatureSpace, weights_sha256: str) -> str:
    h = hashlib.sha256()
    header = {"format": CACHE_FORMAT, "feature_space": space.name, "weights_sha256": weights_sha256}
    header |= {"shape": list(images.shape), "dtype": str(images.dtype)}
    h.update(json.dumps(header, sort_keys=True).encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()


def compute_reference(
    images: np.ndarray, space: FeatureSpace, extractor, weights_sha256: str, source: str, **extract_kwargs
) -> dict[str, np.ndarray]:
    """The arrays of a dar-cache reference: statistics in float64, PR features, provenance."""
    from dar.metrics.extractors import extract_features
    from dar.metrics.frechet import feature_statistics

    feats = extract_features(extractor, images, desc=f"reference {source}", **extract_kwargs)
    mu, sigma = feature_statistics(feats[space.fid_layer])
    mu_s, sigma_s = feature_statistics(feats[space.sfid_layer])
    return {
        "format": np.array(CACHE_FORMAT),
        "mu": mu, "sigma": sigma, "mu_s": mu_s, "sigma_s": sigma_s,
        "pr_features": feats[space.prc_layer].astype(np.float32),
        "image_shape": np.array(images.shape[1:], dtype=np.int64),
        "count": np.array(len(images), dtype=np.int64),
        "feature_space": np.array(space.name),
        "weights_sha256": np.array(weights_sha256),
        "content_sha256": np.array(content_sha256(images, space, weights_sha256)),
        "source": np.array(source),
    }  # fmt: skip


def _cached_content(path: Path) -> str | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            return str(f["content_sha256"]) if str(f["format"]) == CACHE_FORMAT else None
    except Exception:  # unreadable or foreign: treat as absent and recompute
        return None


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    from dar.metrics.extractors import add_extractor_args, load_extractor, resolve_weights

    p = argparse.ArgumentParser(
        prog="python -m dar reference-stats",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dataset",
        default="digits-train",
        help=f"one of {sorted(DATASETS)}, or an .npz with arr_0 uint8 NHWC (default: %(default)s)",
    )
    p.add_argument("--out", required=True, help="reference .npz to write (skipped when it is up to date)")
    add_extractor_args(p)
    p.add_argument("--force", action="store_true", help="recompute even when --out is up to date")
    args = parse_with_config(p, argv)

    space = FEATURE_SPACES[args.features]
    try:
        images = load_dataset_images(args.dataset)
        check_feature_space_input(images.shape, space, f"dataset {args.dataset}")
        if len(images) <= PRC_NEIGHBORHOOD:
            raise EvaluationInputError(f"dataset {args.dataset} has {len(images)} images; statistics need more")
        weights, weights_sha = resolve_weights(space, args)
        out = Path(args.out)
        content = content_sha256(images, space, weights_sha)
        if not args.force and out.is_file() and _cached_content(out) == content:
            print(f"reference {out} is up to date (content sha256 {content[:12]})")
            return 0
        extractor = load_extractor(space, weights, args.device)
        arrays = compute_reference(
            images, space, extractor, weights_sha, args.dataset,
            batch_size=args.batch_size, device=args.device, progress=True,
        )  # fmt: skip
    except EvaluationInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_npz(out, **arrays)
    print(
        f"reference {out}: {len(images)} images of {args.dataset} in {space.name} features "
        f"(FID {arrays['mu'].size}-d, sFID {arrays['mu_s'].size}-d), content sha256 {content[:12]}, "
        f"file sha256 {file_sha256(out)[:12]}"
    )
    return 0
