"""Validation of evaluation inputs: sample files, their sidecars, image arrays.

Every problem a user can cause (a float array, NCHW layout, too few samples,
a reference of another resolution, ...) raises `EvaluationInputError` with a
message naming the problem and the fix; the CLIs print it without a traceback,
exit non-zero and write nothing.

Sample files follow the ADM convention: an .npz with `arr_0` uint8 NHWC images,
converted from model space with clamp(127.5 x + 128, 0, 255)
(`dar.data.digits.to_uint8`), plus `labels` int [N]. The sampling job may write a
sidecar `<file>.npz.json` with its protocol (checkpoint, sampler, NFE, cfg, seeds).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dar.errors import HarnessError

TO_UINT8 = "clamp(127.5 * x + 128, 0, 255).astype(uint8) (dar.data.digits.to_uint8)"


class EvaluationInputError(HarnessError, ValueError):
    """A user-fixable problem with an evaluation input; the message says what and how to fix it."""


@dataclass
class SampleFile:
    path: Path
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray | None  # int64 [N], or None when the file has none
    total: int  # images in the file (>= N evaluated)
    sidecar: dict | None  # the sampling job's protocol, verbatim
    warnings: list[str] = field(default_factory=list)


def load_npz(path: str | Path, what: str) -> dict[str, np.ndarray]:
    """All arrays of an .npz, or a clear error (missing, empty, not an npz, pickled objects)."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationInputError(f"{what} {path} does not exist")
    if path.stat().st_size == 0:
        raise EvaluationInputError(f"{what} {path} is empty (0 bytes): a write that never finished; make it again")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise EvaluationInputError(f"{what} {path} is not a readable .npz file ({e}); write it with numpy.savez") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise EvaluationInputError(
            f"{what} {path} holds a single {type(loaded).__name__} (a .npy), not an .npz of named arrays; "
            "write it with numpy.savez(path, arr_0=images, labels=labels)"
        )
    try:
        with loaded as f:
            return {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise EvaluationInputError(f"{what} {path} is damaged ({e}); make it again") from None


def check_images(images: np.ndarray, what: str) -> np.ndarray:
    """Images must be uint8 NHWC with 1 or 3 channels and not look like [0, 1] data cast to uint8."""
    if images.ndim != 4:
        raise EvaluationInputError(f"{what}: expected images [N, H, W, C], got an array of shape {images.shape}")
    if images.dtype != np.uint8:
        hint = ""
        if np.issubdtype(images.dtype, np.floating) and images.size:
            lo, hi = float(np.nanmin(images)), float(np.nanmax(images))
            hint = f" (values in [{lo:.3g}, {hi:.3g}])"
        raise EvaluationInputError(
            f"{what}: images have dtype {images.dtype}{hint}, but sample files hold uint8 pixels 0..255; "
            f"convert model outputs in [-1, 1] with {TO_UINT8}"
        )
    if images.shape[-1] not in (1, 3):
        if images.shape[1] in (1, 3):
            raise EvaluationInputError(
                f"{what}: shape {images.shape} looks like NCHW; sample files are NHWC: use images.transpose(0, 2, 3, 1)"
            )
        raise EvaluationInputError(f"{what}: expected 1 or 3 channels last (NHWC), got shape {images.shape}")
    if len(images) == 0:
        raise EvaluationInputError(f"{what}: no images")
    lo, hi = int(images.min()), int(images.max())
    if lo == hi:
        raise EvaluationInputError(
            f"{what}: all {len(images)} images are blank (every pixel is {lo}); a sampler whose outputs were NaN or "
            "infinite writes such files (they convert to 0): check the checkpoint and the sampling settings, and resample"
        )
    if hi <= 1:
        raise EvaluationInputError(
            f"{what}: every pixel is 0 or 1, as if images in [0, 1] were cast to uint8; convert with {TO_UINT8}"
        )
    return images


def load_samples(path: str | Path, num_samples: int) -> SampleFile:
    """Read and check a sample file; keep its first `num_samples` images (file order, which IS splits follow)."""
    path = Path(path)
    if num_samples < 2:
        raise EvaluationInputError(f"--num-samples must be at least 2, got {num_samples}")
    arrays = load_npz(path, "sample file")
    if "arr_0" not in arrays:
        raise EvaluationInputError(f"sample file {path} has no 'arr_0' (keys: {sorted(arrays)}); save images as arr_0")
    images = check_images(arrays["arr_0"], f"sample file {path}")
    total = len(images)
    if total < num_samples:
        raise EvaluationInputError(
            f"sample file {path} holds {total} images but --num-samples is {num_samples}: "
            f"sample at least {num_samples} images or lower --num-samples"
        )
    labels = arrays.get("labels", arrays.get("arr_1"))
    warnings: list[str] = []
    if labels is not None:
        if labels.shape != (total,) or not np.issubdtype(labels.dtype, np.integer):
            raise EvaluationInputError(
                f"sample file {path}: labels must be integers [N] = [{total}], got {labels.dtype} {labels.shape}"
            )
        labels = labels[:num_samples].astype(np.int64)
        if len(np.unique(labels)) > 1 and np.all(np.diff(labels) >= 0):
            warnings.append(
                "samples are sorted by class: IS uses contiguous splits in file order (ADM protocol), "
                "so a class-sorted file scores differently from a seed-ordered one"
            )
    return SampleFile(path, images[:num_samples], labels, total, load_sidecar(path), warnings)


def load_sidecar(samples_path: Path) -> dict | None:
    """The sampling job's protocol `<samples>.json` next to the sample file, or None when there is none."""
    sidecar = samples_path.with_name(samples_path.name + ".json")
    if not sidecar.is_file():
        return None
    try:
        obj = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EvaluationInputError(f"sidecar {sidecar} is not valid JSON ({e}); fix or delete it") from e
    if not isinstance(obj, dict):
        raise EvaluationInputError(f"sidecar {sidecar} must hold a JSON object, got {type(obj).__name__}")
    return obj


def check_feature_space_input(shape: tuple[int, ...], space, what: str) -> None:
    """Images [N, H, W, C] must suit the feature space (channels, and the fixed size of the digits net)."""
    _, h, w, c = shape
    if c != space.channels:
        raise EvaluationInputError(
            f"{what} has {c} channel(s) but the {space.name} feature space takes {space.channels}; "
            f"choose --features {'digits' if c == 1 else 'inception'} or convert the images"
        )
    if space.image_size is not None and (h, w) != (space.image_size, space.image_size):
        raise EvaluationInputError(
            f"{what} is {h}x{w} but the {space.name} feature space takes {space.image_size}x{space.image_size} images"
        )
