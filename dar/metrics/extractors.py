"""Feature spaces for the metrics, as torch-fidelity 0.4.0 feature extractors.

    inception  torch-fidelity's TF-compatible InceptionV3 ('inception-v3-compat' weights,
               weights-inception-2015-12-05-6726825d.pth) loaded from a local file, plus the
               sFID map: the ADM evaluator reads `mixed_6/conv:0`, the ReLU output of the first
               1x1 conv of the TF graph's `mixed_6` block = torch-fidelity's `Mixed_6d.branch1x1`
               (its BasicConv2d returns relu(bn(conv(x)))), a [N, 192, 17, 17] map of which ADM
               keeps channels [:7] in NHWC and flattens in (h, w, c) order: 17 * 17 * 7 = 2023-d.
               FID and precision/recall use '2048' (pool_3), IS 'logits_unbiased' (pool_3 @ W).
    digits     the digits classifier of `digits_net.py` (penultimate 64-d for FID and PR, logits for
               IS, conv1's 8x8 map through the same sFID flattening = 448-d). Its numbers are
               digits-feature metrics, not Inception metrics.

Both are registered with `torch_fidelity.register_feature_extractor` (by
`register_extractors()`, not on import) and built through torch-fidelity's
`create_feature_extractor`. Both take uint8 NCHW batches, as torch-fidelity's
extractors do; `extract_features` converts the NHWC sample files.
"""

from __future__ import annotations

import argparse
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from dar.metrics.checks import EvaluationInputError

SFID_CHANNELS = 7  # ADM evaluator: spatial[..., :7]
SFID_LAYER = "sfid"  # our feature name for the flattened spatial map, in both extractors


def spatial_flatten(fmap: Tensor, channels: int = SFID_CHANNELS) -> Tensor:
    """[N, C, H, W] -> [N, H * W * channels]: NHWC, first `channels` channels, flattened in (h, w, c) order (ADM sFID)."""
    return fmap.permute(0, 2, 3, 1)[..., :channels].reshape(fmap.shape[0], -1)


# ----------------------------------------------------------------------------- feature spaces


@dataclass(frozen=True)
class FeatureSpace:
    name: str  # CLI name and the result's "feature_space"
    extractor: str  # torch-fidelity registry name
    fid_layer: str  # features for FID (and their Gaussian statistics)
    sfid_layer: str  # features for sFID
    isc_layer: str  # logits for IS
    prc_layer: str  # features for precision / recall
    channels: int  # image channels the extractor takes
    image_size: int | None  # required H = W, or None for any (Inception resizes to 299)
    weights_asset: str | None  # dar.assets name of the default weights, if any
    weights_hint: str  # how to obtain the weights
    label: str  # how a report names these metrics

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys([self.fid_layer, self.sfid_layer, self.isc_layer, self.prc_layer]))


FEATURE_SPACES: dict[str, FeatureSpace] = {
    "inception": FeatureSpace(
        name="inception",
        extractor="dar-inception-v3",
        fid_layer="2048",
        sfid_layer=SFID_LAYER,
        isc_layer="logits_unbiased",
        prc_layer="2048",
        channels=3,
        image_size=None,
        weights_asset="inception-v3-compat",
        weights_hint="fetch them with: python -m dar fetch-assets --only inception-v3-compat --dest <assets dir>",
        label="Inception-V3 (ADM protocol: FID pool_3, sFID mixed_6/conv[:7], IS, PR k=3)",
    ),
    "digits": FeatureSpace(
        name="digits",
        extractor="dar-digits",
        fid_layer="features",
        sfid_layer=SFID_LAYER,
        isc_layer="logits",
        prc_layer="features",
        channels=1,
        image_size=8,
        weights_asset=None,
        weights_hint="create them with: python -m dar digits-features --out DIR (then --weights DIR/digits_net.pt)",
        label="digits-classifier features (digits FID/sFID/IS/PR; NOT Inception metrics)",
    ),
}


# ----------------------------------------------------------------------------- extractors


def _require_weights_path(path: str | None, what: str, fix: str) -> Path:
    if path is None:
        raise FileNotFoundError(f"{what} needs a local weights file (nothing is downloaded at run time); {fix}")
    return Path(path)


class _DarExtractor(FeatureExtractorBase):
    """torch-fidelity's class-level queries, answered from the class attributes each extractor sets."""

    PROVIDED_FEATURES: ClassVar[tuple[str, ...]]
    DEFAULT_LAYERS: ClassVar[dict[str, str]]  # metric -> feature name
    INPUT_SHAPE: ClassVar[tuple[int, int, int]]  # (C, H, W) of the uint8 compile dummy

    @classmethod
    def get_provided_features_list(cls):
        return cls.PROVIDED_FEATURES

    @classmethod
    def get_default_feature_layer_for_metric(cls, metric):
        return cls.DEFAULT_LAYERS[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @classmethod
    def get_dummy_input_for_compile(cls):
        return torch.zeros(1, *cls.INPUT_SHAPE, dtype=torch.uint8)


class InceptionSFID(_DarExtractor):
    """torch-fidelity's InceptionV3 with the extra 'sfid' feature hooked from Mixed_6d.branch1x1."""

    PROVIDED_FEATURES = ("64", "192", "768", "2048", "logits_unbiased", "logits", SFID_LAYER)
    DEFAULT_LAYERS: ClassVar[dict[str, str]] = {"isc": "logits_unbiased", "fid": "2048", "kid": "2048", "prc": "2048"}
    INPUT_SHAPE = (3, 4, 4)

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None, **kwargs):
        super().__init__(name, features_list)
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = _require_weights_path(
            feature_extractor_weights_path,
            "the Inception extractor",
            "fetch it with: python -m dar fetch-assets --only inception-v3-compat --dest <assets dir>",
        )
        inner = [f for f in features_list if f != SFID_LAYER] or ["768"]  # '768' is the first output past Mixed_6d
        self.inception = FeatureExtractorInceptionV3(
            "inception-v3-compat",
            inner,
            feature_extractor_weights_path=str(path),
            feature_extractor_internal_dtype=kwargs.get("feature_extractor_internal_dtype"),
        )
        self._inner = inner
        self._spatial: Tensor | None = None
        self.inception.Mixed_6d.branch1x1.register_forward_hook(self._keep_spatial)

    def _keep_spatial(self, module, inputs, output: Tensor) -> None:
        self._spatial = output  # (N, 192, 17, 17), after BN + ReLU

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        out = dict(zip(self._inner, self.inception(x)))  # runs through Mixed_6d, so the hook fired
        if SFID_LAYER in self.features_list:
            out[SFID_LAYER] = spatial_flatten(self._spatial).to(torch.float32)  # (N, 2023)
        self._spatial = None
        return tuple(out[f] for f in self.features_list)


class DigitsFeatures(_DarExtractor):
    """The digits classifier as a torch-fidelity extractor: 'features' [N, 64], 'logits' [N, 10], 'sfid' [N, 448]."""

    PROVIDED_FEATURES = ("features", "logits", SFID_LAYER)
    DEFAULT_LAYERS: ClassVar[dict[str, str]] = {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}
    INPUT_SHAPE = (1, 8, 8)

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None, **kwargs):
        super().__init__(name, features_list)
        from dar.metrics import digits_net

        path = _require_weights_path(
            feature_extractor_weights_path, "the digits extractor", f"create it with: {digits_net.CREATE_CMD}"
        )
        self.net = digits_net.load(path)
        self._to_input = digits_net.uint8_to_input

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1:] == (1, 8, 8)):
            raise ValueError(f"digits extractor expects uint8 [N, 1, 8, 8], got {getattr(x, 'dtype', type(x))} {tuple(x.shape)}")
        spatial, features, logits = self.net(self._to_input(x))
        out = {"features": features, "logits": logits, SFID_LAYER: spatial_flatten(spatial)}
        return tuple(out[f] for f in self.features_list)


_EXTRACTOR_CLASSES = {"dar-inception-v3": InceptionSFID, "dar-digits": DigitsFeatures}


def register_extractors() -> None:
    """Register our extractors with torch-fidelity (idempotent)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    for name, cls in _EXTRACTOR_CLASSES.items():
        if name not in FEATURE_EXTRACTORS_REGISTRY:
            register_feature_extractor(name, cls)


def build_extractor(space: FeatureSpace, weights: str | Path, device: str = "cpu") -> FeatureExtractorBase:
    """The feature space's extractor, through torch-fidelity's registry, with all its metric layers."""
    from torch_fidelity.utils import create_feature_extractor

    register_extractors()
    extractor = create_feature_extractor(
        space.extractor, space.layers, cuda=False, feature_extractor_weights_path=str(weights), verbose=False
    )
    return extractor.to(device)


@torch.no_grad()
def extract_features(
    extractor: FeatureExtractorBase,
    images: np.ndarray,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = False,
    desc: str = "features",
) -> dict[str, np.ndarray]:
    """uint8 NHWC images [N, H, W, C] -> {layer: float32 [N, D]} for every layer the extractor was built with."""
    from dar import logs

    out: dict[str, list[np.ndarray]] = {f: [] for f in extractor.get_requested_features_list()}
    # progress: a bar on a terminal, else a line with the ETA every 30 s (dar/logs.py); off, nothing is shown
    with logs.Progress(len(images) if progress else 0, desc, unit="img", log=logs.get("metrics")) as bar:
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
            batch = batch.permute(0, 3, 1, 2).contiguous().to(device)  # (B, C, H, W) uint8
            feats = extractor.convert_features_tuple_to_dict(extractor(batch))
            for name, value in feats.items():
                out[name].append(value.float().cpu().numpy())
            bar.update(len(batch))
    return {name: np.concatenate(chunks) for name, chunks in out.items()}


# ----------------------------------------------------------------------------- CLI helpers (evaluate, reference-stats)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def add_extractor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--features", required=True, choices=sorted(FEATURE_SPACES),
        help="feature space: 'inception' (ADM protocol, ImageNet) or 'digits' (digits classifier; not Inception metrics)",
    )  # fmt: skip
    p.add_argument(
        "--weights", default=None,
        help="extractor weights file: digits_net.pt from `python -m dar digits-features`, or torch-fidelity's Inception "
        ".pth (default: none for digits; for inception the inception-v3-compat asset in --assets-dir)",
    )  # fmt: skip
    p.add_argument(
        "--assets-dir", default=os.environ.get("DAR_ASSETS"), help="assets folder (default: $DAR_ASSETS = %(default)s)"
    )
    p.add_argument(
        "--device",
        type=_device,
        default=default_device(),
        help="device for feature extraction: cpu | cuda | cuda:N (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size", type=_positive_int, default=64, help="images per feature-extraction batch (default: %(default)s, as ADM)"
    )


def _device(text: str) -> str:
    from dar.config import ConfigError, check_device

    try:
        check_device("--device", text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--device: ")) from None
    return default_device() if text == "auto" else text


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def resolve_weights(space: FeatureSpace, args: argparse.Namespace) -> tuple[Path, str]:
    """(weights path, sha256) from --weights, else the space's asset; a missing file is an EvaluationInputError."""
    from dar.assets import AssetMissingError, require_asset
    from dar.provenance import file_sha256

    if args.weights:
        path = Path(args.weights)
    elif space.weights_asset:
        try:
            path = require_asset(space.weights_asset, args.assets_dir)
        except AssetMissingError as e:
            raise EvaluationInputError(f"{e} (or pass --weights PATH)") from e
    else:
        raise EvaluationInputError(f"--features {space.name} needs --weights: the extractor's weights; {space.weights_hint}")
    if not path.is_file():
        raise EvaluationInputError(f"{space.name} extractor weights {path} not found; {space.weights_hint}")
    return path, file_sha256(path)


def load_extractor(space: FeatureSpace, weights: Path, device: str) -> FeatureExtractorBase:
    """`build_extractor`, with an unreadable or foreign weights file reported as an EvaluationInputError."""
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise EvaluationInputError(f"--device {device} was given but no CUDA device is visible here; use --device cpu")
    try:
        return build_extractor(space, weights, device)
    except (OSError, RuntimeError, ValueError, KeyError, pickle.UnpicklingError) as e:
        raise EvaluationInputError(
            f"could not load {space.name} extractor weights from {weights}: {e}; {space.weights_hint}"
        ) from e
