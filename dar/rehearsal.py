"""`python -m dar rehearsal-assets --dest DIR`: stand-ins for the paper path's pretrained assets and data.

The imagenet256 preset runs through the SD VAE (encode at caching, decode at sampling), 4 x 32 x 32
latents, Inception-v3 features against the ADM reference batch and DINOv2 ViT-B/14 for REPA. The
`rehearsal` preset runs exactly that code path at toy size on CPU, on stand-ins this command makes:
real in architecture and file format, deterministic random weights, never to be taken for the real
assets. File names are the real ones (the code under test finds them as it would find the fetched
assets); `REHEARSAL` and `assets.json` in the folder say "random weights, rehearsal only", and every
evaluation reading them records that provenance, so no number made from them is compared with the paper.

    DIR/sd-vae-ft-ema/                      diffusers AutoencoderKL folder (config.json + safetensors): the SD VAE's
                                            blocks (4 down / 4 up, 8x downsampling, 4 latent channels, scale 0.18215)
                                            at 32 channels per block (--vae sd: the exact SD VAE configuration,
                                            83.7M parameters, which decodes one 256 px image in seconds on a CPU)
    DIR/weights-inception-2015-12-05-6726825d.pth   torch-fidelity's InceptionV3 state dict (random weights)
    DIR/dinov2_vitb14_pretrain.pth          DINOv2 ViT-B/14 state dict in the official layout (random weights)
    DIR/imagefolder/<class>/*.jpg           synthetic JPEGs of a few classes, at sizes other than 256 (ADM crop)
    DIR/VIRTUAL_imagenet256_labeled.npz     an ADM reference batch of those images: arr_0 (ADM centre crop to 256)
                                            with mu, sigma, mu_s, sigma_s in the stand-in Inception's features
    DIR/assets.json, DIR/REHEARSAL          provenance of every file
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from dar.assets import ASSETS, MANIFEST, REHEARSAL_MARKER, REHEARSAL_PROVENANCE
from dar.config import parse_with_config
from dar.io import atomic_path, write_json
from dar.provenance import file_sha256

SEED = 20260101  # every stand-in is a function of this seed
VAE_CONFIGS = {
    # the SD VAE's configuration (stabilityai/sd-vae-ft-ema config.json)
    "sd": {"block_out_channels": [128, 256, 512, 512], "norm_num_groups": 32},
    # the same blocks and layout, 32 channels each: ~0.5 s per 256 px decode on 2 CPU cores instead of ~7 s
    "narrow": {"block_out_channels": [32, 32, 32, 32], "norm_num_groups": 32},
}
SIZES = [(320, 288), (300, 420), (612, 459), (257, 333), (200, 240), (512, 384)]  # (W, H): none is 256 x 256


def vae_config(kind: str) -> dict:
    return {
        "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "act_fn": "silu",
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
        "sample_size": 256, "scaling_factor": 0.18215, **VAE_CONFIGS[kind],
    }  # fmt: skip


def make_vae(dest: Path, kind: str = "narrow") -> Path:
    from diffusers.models import AutoencoderKL

    torch.manual_seed(SEED)
    vae = AutoencoderKL(**vae_config(kind)).eval()
    folder = dest / ASSETS["sd-vae-ft-ema"].target
    vae.save_pretrained(folder, safe_serialization=True)
    return folder


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """He-scaled conv / linear weights, identity batch norms: activations stay finite and varied through depth."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1.0)


def make_inception(dest: Path) -> Path:
    """torch-fidelity's InceptionV3 architecture with random weights, saved in its state-dict format."""
    from unittest import mock

    from torch_fidelity import feature_extractor_inceptionv3 as fi

    # its constructor downloads the published weights when given no file: build the layers without loading any
    with (
        mock.patch.object(fi, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(fi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None),
    ):
        net = fi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=None)
    _randomize(net, SEED + 1)
    path = dest / ASSETS["inception-v3-compat"].target
    with atomic_path(path) as tmp:
        torch.save(net.state_dict(), tmp)
    return path


def make_dinov2(dest: Path) -> Path:
    from dar.repa.dinov2 import DinoV2

    torch.manual_seed(SEED + 2)
    net = DinoV2()
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn_like(p) * 0.02)
    path = dest / ASSETS["dinov2-vitb14"].target
    with atomic_path(path) as tmp:
        torch.save(net.state_dict(), tmp)
    return path


def make_imagefolder(root: Path, classes: int = 4, per_class: int = 24) -> Path:
    """Synthetic JPEGs: class c draws stripes at its own angle and hue over a noisy background; sizes vary."""
    from PIL import Image

    rng = np.random.default_rng(SEED + 3)
    for c in range(classes):
        folder = root / f"n{c:08d}"  # synset-like folder names, sorted = labels
        folder.mkdir(parents=True, exist_ok=True)
        angle, hue = math.pi * c / classes, np.array([math.cos(c), math.sin(2 * c), math.cos(3 * c)])
        for i in range(per_class):
            w, h = SIZES[(c + i) % len(SIZES)]
            yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
            phase = rng.uniform(0, 2 * math.pi)
            wave = np.sin(2 * math.pi * (6 + c) * (xx * math.cos(angle) + yy * math.sin(angle)) + phase)
            img = 0.5 + 0.35 * wave[..., None] * hue[None, None] + 0.1 * rng.standard_normal((h, w, 3))
            path = folder / f"img_{i:03d}.JPEG"
            if not path.is_file():
                with atomic_path(path) as tmp:
                    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(tmp, format="JPEG", quality=90)
    return root


def make_reference(dest: Path, imagefolder: Path, inception: Path) -> Path:
    """An ADM reference batch of the ImageFolder's images: arr_0 uint8 NHWC (ADM centre crop to 256) + statistics."""
    from dar.data.imagefolder import ImageFolderDataset
    from dar.metrics.extractors import FEATURE_SPACES, build_extractor, extract_features
    from dar.metrics.frechet import feature_statistics

    ds = ImageFolderDataset(imagefolder, 256)
    images = np.stack(
        [((ds[i][0].numpy().transpose(1, 2, 0) + 1) * 127.5).round().clip(0, 255).astype(np.uint8) for i in range(len(ds))]
    )
    space = FEATURE_SPACES["inception"]
    feats = extract_features(build_extractor(space, inception, "cpu"), images, desc="reference batch", batch_size=32)
    mu, sigma = feature_statistics(feats[space.fid_layer])
    mu_s, sigma_s = feature_statistics(feats[space.sfid_layer])
    path = dest / ASSETS["adm-ref-imagenet256"].target
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, arr_0=images, mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s)  # the ADM batch's keys, no others
    return path


def make_all(dest: Path, vae: str = "narrow", classes: int = 4, per_class: int = 24, log=print) -> dict:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / REHEARSAL_MARKER).write_text(f"{REHEARSAL_PROVENANCE}: made by python -m dar rehearsal-assets\n")
    made = {}
    log(f"[rehearsal] SD VAE stand-in ({vae}) ...")
    made["sd-vae-ft-ema"] = make_vae(dest, vae)
    log("[rehearsal] Inception-v3 stand-in ...")
    made["inception-v3-compat"] = make_inception(dest)
    log("[rehearsal] DINOv2 ViT-B/14 stand-in ...")
    made["dinov2-vitb14"] = make_dinov2(dest)
    log(f"[rehearsal] synthetic ImageFolder: {classes} classes x {per_class} JPEGs ...")
    folder = make_imagefolder(dest / "imagefolder", classes, per_class)
    log("[rehearsal] ADM reference batch ...")
    made["adm-ref-imagenet256"] = make_reference(dest, folder, made["inception-v3-compat"])
    manifest = {}
    for name, path in made.items():
        files = sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
        manifest[name] = {
            "source": f"{REHEARSAL_PROVENANCE} (seed {SEED}; python -m dar rehearsal-assets)",
            "rehearsal": True,
            "files": {str(p.relative_to(dest)): {"sha256": file_sha256(p), "bytes": p.stat().st_size} for p in files},
        }
    manifest["imagefolder"] = {"source": f"synthetic images, {REHEARSAL_PROVENANCE}", "rehearsal": True, "classes": classes}
    write_json(dest / MANIFEST, manifest)
    return made


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar rehearsal-assets", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dest", required=True, help="folder to make the stand-ins in (the rehearsal preset's assets folder)")
    p.add_argument("--vae", choices=sorted(VAE_CONFIGS), default="narrow", help="VAE stand-in width (default: %(default)s)")
    p.add_argument("--classes", type=int, default=4, help="classes of the synthetic ImageFolder (default: %(default)s)")
    p.add_argument("--per-class", type=int, default=24, help="JPEGs per class (default: %(default)s)")
    args = parse_with_config(p, argv)
    if args.classes < 2 or args.per_class < 2:
        print("error: --classes and --per-class must be at least 2", file=sys.stderr)
        return 2
    made = make_all(Path(args.dest), args.vae, args.classes, args.per_class)
    print(f"[rehearsal] {len(made)} stand-in assets and a synthetic ImageFolder in {args.dest}: {REHEARSAL_PROVENANCE}")
    return 0
