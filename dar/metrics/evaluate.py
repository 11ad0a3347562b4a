"""The evaluation job: FID, sFID, IS, precision and recall of one sample file (ADM protocol).

    python -m dar evaluate --samples S.npz --reference REF.npz --features {inception,digits} \\
        [--weights PATH] --num-samples 50000 --out RESULT.json

Inputs: an ADM-style sample file (`arr_0` uint8 NHWC, `labels` int [N]) and its
optional sidecar `S.npz.json` from the sampling job; a reference (an ADM batch
or a `reference-stats` cache, see `reference.py`); a feature space
(`extractors.py`). The first --num-samples images are evaluated in file order.

Metrics (torch-fidelity 0.4.0 metric functions, `fidelity.py`):
    fid, sfid           Frechet distance of the samples' Gaussian statistics to the reference's, float64
    is_mean, is_std     IS over ADM's contiguous chunks of 5,000 (the last one shorter), unbiased logits, no shuffling
    precision, recall   k = 3 manifolds; generated = input1, real (reference images) = input2

The result JSON holds the metrics, the feature space (digits-feature metrics
are never Inception metrics), the protocol (the sidecar verbatim, then
num_samples, reference path + sha256, extractor name + weights sha256,
torch-fidelity version, git commit; a sidecar key that the evaluation also
sets and that differs is kept as `sampling_<key>`), the ADM-formula (scipy
sqrtm) FID/sFID as cross-checks, and the wall time. It is written atomically,
only after every check passed; a bad input exits with status 2 and a message
naming the problem and the fix, and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dar.assets import provenance
from dar.io import atomic_path, write_json
from dar.metrics.checks import EvaluationInputError, check_feature_space_input, load_samples
from dar.metrics.extractors import FEATURE_SPACES, add_extractor_args, extract_features, load_extractor, resolve_weights
from dar.metrics.fidelity import (
    IS_SPLIT_SIZE,
    PRC_NEIGHBORHOOD,
    fid_from_statistics,
    inception_score,
    is_chunks,
    precision_recall,
)
from dar.metrics.frechet import feature_statistics, frechet_distance
from dar.metrics.reference import check_reference, load_reference
from dar.provenance import environment, file_sha256, git_commit, package_versions

METRIC_KEYS = ("fid", "sfid", "is_mean", "is_std", "precision", "recall")


def _merge_protocol(sidecar: dict | None, ours: dict) -> dict:
    """The sidecar verbatim, then the evaluation's keys; a differing sidecar value moves to `sampling_<key>`."""
    protocol = dict(sidecar or {})
    for key, value in ours.items():
        if key in protocol and protocol[key] != value:
            protocol[f"sampling_{key}"] = protocol[key]
        protocol[key] = value
    return protocol


def reference_features(ref, space, extractor, weights_sha: str, cache_dir: str | None, kw: dict) -> np.ndarray:
    """The precision/recall features of an ADM batch's images, kept in `cache_dir` under the batch's and the
    extractor's sha256: every cell evaluated against the same batch reads them instead of extracting them again."""
    path = Path(cache_dir) / f"{ref.sha256[:16]}-{weights_sha[:16]}-{space.prc_layer}.npy" if cache_dir else None
    if path is not None and path.is_file():
        try:
            feats = np.load(path)
            if feats.shape[0] == len(ref.images):
                return feats
        except (OSError, ValueError):
            pass  # damaged: made again below
    feats = extract_features(extractor, ref.images, desc="reference", **kw)[space.prc_layer]
    if path is not None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, feats)
    return feats


def evaluate(args: argparse.Namespace) -> dict:
    """Check every input, extract features, compute the metrics; returns the result (raises EvaluationInputError)."""
    t0 = time.perf_counter()
    space = FEATURE_SPACES[args.features]
    progress = True  # a bar on a terminal, ETA lines in a log file (dar/logs.py)
    out = Path(args.out)
    if out.is_dir():
        raise EvaluationInputError(f"--out {out} is a folder; give a .json file path")

    if args.num_samples <= PRC_NEIGHBORHOOD:
        raise EvaluationInputError(
            f"--num-samples must be more than {PRC_NEIGHBORHOOD} (precision/recall use k = {PRC_NEIGHBORHOOD} neighbours), "
            f"got {args.num_samples}"
        )

    # Inputs: samples, reference, weights; all checked before any feature is computed.
    samples = load_samples(args.samples, args.num_samples)
    ref = load_reference(args.reference)
    if tuple(samples.images.shape[1:]) != ref.image_shape:
        h, w, c = samples.images.shape[1:]
        rh, rw, rc = ref.image_shape
        raise EvaluationInputError(
            f"samples are {h}x{w}x{c} but reference {ref.path} holds {rh}x{rw}x{rc} images: "
            f"use a reference at the samples' resolution, or sample at {rh}x{rw}"
        )
    check_feature_space_input(samples.images.shape, space, f"sample file {samples.path}")
    weights, weights_sha = resolve_weights(space, args)
    extractor = load_extractor(space, weights, args.device)
    probe = extract_features(extractor, samples.images[:2], device=args.device)
    check_reference(ref, space, weights_sha, {k: v.shape[1] for k, v in probe.items()})
    if ref.count <= PRC_NEIGHBORHOOD:
        raise EvaluationInputError(f"reference {ref.path} has {ref.count} images; precision/recall with k = 3 need more")

    # Features and metrics.
    kw = dict(batch_size=args.batch_size, device=args.device, progress=progress)
    feats = extract_features(extractor, samples.images, desc="samples", **kw)
    if ref.pr_features is not None:
        ref_pr = ref.pr_features  # (M, D) cached by reference-stats
    else:  # an ADM batch: its images through the same extractor, as the ADM evaluator does (once per batch and weights)
        ref_pr = reference_features(ref, space, extractor, weights_sha, args.feature_cache, kw)

    mu, sigma = feature_statistics(feats[space.fid_layer])
    mu_s, sigma_s = feature_statistics(feats[space.sfid_layer])
    is_mean, is_std = inception_score(feats[space.isc_layer], IS_SPLIT_SIZE)
    precision, recall = precision_recall(feats[space.prc_layer], ref_pr, PRC_NEIGHBORHOOD)
    metrics = {
        "fid": fid_from_statistics(mu, sigma, ref.mu, ref.sigma),
        "sfid": fid_from_statistics(mu_s, sigma_s, ref.mu_s, ref.sigma_s),
        "is_mean": is_mean,
        "is_std": is_std,
        "precision": precision,
        "recall": recall,
    }
    checks = {}  # the ADM evaluator's own sqrtm formula beside torch-fidelity's eigenvalue one
    if args.adm_cross_check:
        checks = {
            "fid_adm_sqrtm": frechet_distance(mu, sigma, ref.mu, ref.sigma),
            "sfid_adm_sqrtm": frechet_distance(mu_s, sigma_s, ref.mu_s, ref.sigma_s),
        }
    if not all(np.isfinite(v) for v in (*metrics.values(), *checks.values())):
        raise RuntimeError(f"non-finite metric: {metrics} {checks}")

    ours = {
        "num_samples": args.num_samples,
        "samples": {
            "path": str(samples.path),
            "sha256": file_sha256(samples.path),
            "images_in_file": samples.total,
            "image_shape": list(samples.images.shape[1:]),
            "labels": samples.labels is not None,
        },
        "sidecar": str(samples.path) + ".json" if samples.sidecar is not None else None,
        "reference": {**ref.describe(), "provenance": provenance(ref.path)},
        "feature_extractor": {
            "name": space.extractor,
            "feature_space": space.name,
            "weights": str(weights),
            "weights_sha256": weights_sha,
            "provenance": provenance(weights),  # "published", or "random weights, rehearsal only" for a stand-in
            "layers": {"fid": space.fid_layer, "sfid": space.sfid_layer, "is": space.isc_layer, "prc": space.prc_layer},
        },
        "metric_settings": {
            "is_split_size": IS_SPLIT_SIZE,
            "is_splits": len(is_chunks(args.num_samples)),
            "is_shuffle": False,
            "prc_neighborhood": PRC_NEIGHBORHOOD,
            "prc_input1": "generated",
            "prc_input2": "reference",
        },
        "torch_fidelity": package_versions()["torch-fidelity"],
        "git_commit": git_commit(),
    }
    return {
        "metrics": metrics,
        "feature_space": space.name,
        "feature_space_label": space.label,
        "protocol": _merge_protocol(samples.sidecar, ours),
        "checks": checks,
        "warnings": samples.warnings,
        "environment": environment(),
        "wall_seconds": round(time.perf_counter() - t0, 3),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dar evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--samples", required=True, help="sample .npz: arr_0 uint8 NHWC, labels int [N]; sidecar <file>.json optional")
    p.add_argument("--reference", required=True, help="ADM reference batch .npz or a `python -m dar reference-stats` cache")
    p.add_argument(
        "--num-samples", type=int, default=50_000, help="evaluate the first this many samples (default: %(default)s, ADM)"
    )
    p.add_argument("--out", required=True, help="result JSON (written atomically, only on success)")
    p.add_argument(
        "--adm-cross-check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also compute FID/sFID with the ADM evaluator's scipy sqrtm, recorded under checks (default: on; "
        "about 19 s per 2048-dim evaluation on a CPU core)",
    )
    p.add_argument(
        "--feature-cache",
        default=None,
        help="folder that keeps an ADM reference batch's precision/recall features between evaluations (default: none)",
    )
    add_extractor_args(p)
    return p


def evaluation_args(**values) -> argparse.Namespace:
    """The evaluation's settings as typed values (for callers such as the cell job): the parser's defaults, then `values`."""
    args = argparse.Namespace(**{a.dest: a.default for a in parser()._actions if a.dest != "help"})
    unknown = set(values) - set(vars(args))
    if unknown:
        raise TypeError(f"unknown evaluation settings {sorted(unknown)}")
    vars(args).update(values)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    try:
        result = evaluate(args)
    except EvaluationInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_json(args.out, result)
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    m = result["metrics"]
    name = "Inception" if result["feature_space"] == "inception" else "digits-feature"
    print(
        f"{name} metrics of {args.num_samples} samples: FID {m['fid']:.4f}  sFID {m['sfid']:.4f}  "
        f"IS {m['is_mean']:.4f} +- {m['is_std']:.4f}  precision {m['precision']:.4f}  recall {m['recall']:.4f}  -> {args.out}"
    )
    return 0
