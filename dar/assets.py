"""Every pretrained asset the reproduction needs, in one registry, and the fetch step that downloads them.

Compute nodes often have no internet, and nothing here downloads at run time:
fetch once where the network is, into one folder, and point jobs at it with
`--assets-dir` or the environment variable DAR_ASSETS:

    python -m dar fetch-assets --dest /shared/dar-assets            # everything
    python -m dar fetch-assets --dest /shared/dar-assets --only inception-v3-compat
    python -m dar fetch-assets --dest /shared/dar-assets --list     # what is there

Downloads resume from a `.<file>.part` beside the target (HTTP Range), are
checked against the expected sha256 where one is known (the Inception file's
name carries the first 8 hex digits of its sha256, torch.hub's convention),
and are renamed into place only when complete; `assets.json` in the folder
records the sha256 of every file fetched. Code asks for an asset with
`require_asset(name, assets_dir)`, which names the missing file, the folder
and the exact fetch command.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dar.io import atomic_path, write_json

ENV_VAR = "DAR_ASSETS"
MANIFEST = "assets.json"
FETCH_CMD = "python -m dar fetch-assets"
REHEARSAL_MARKER = "REHEARSAL"  # in an assets folder: every asset there is a random-weight stand-in (dar/rehearsal.py)
REHEARSAL_PROVENANCE = "random weights, rehearsal only"


@dataclass(frozen=True)
class AssetFile:
    path: str  # relative to the assets folder
    url: str
    sha256: str | None = None  # full digest, where known
    sha256_prefix: str | None = None  # leading hex digits, where only those are known


@dataclass(frozen=True)
class Asset:
    name: str  # registry key, --only value
    target: str  # file or folder name inside the assets folder
    files: tuple[AssetFile, ...]
    source: str  # where it comes from
    used_by: str  # what needs it

    @property
    def is_folder(self) -> bool:
        return len(self.files) > 1 or self.files[0].path != self.target


_HF_VAE = "https://huggingface.co/stabilityai/sd-vae-ft-ema/resolve/main"

ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            name="sd-vae-ft-ema",
            target="sd-vae-ft-ema",
            files=(
                AssetFile("sd-vae-ft-ema/config.json", f"{_HF_VAE}/config.json"),
                AssetFile("sd-vae-ft-ema/diffusion_pytorch_model.safetensors", f"{_HF_VAE}/diffusion_pytorch_model.safetensors"),
            ),
            source="diffusers stabilityai/sd-vae-ft-ema (Hugging Face), saved as a local diffusers folder",
            used_by="ImageNet latent caching and decoding samples (dar.data.encoders.SDVAEEncoder)",
        ),
        Asset(
            name="inception-v3-compat",
            target="weights-inception-2015-12-05-6726825d.pth",
            files=(
                AssetFile(
                    "weights-inception-2015-12-05-6726825d.pth",
                    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
                    sha256_prefix="6726825d",
                ),
            ),
            source="torch-fidelity v0.2.0 release (TF Inception 2015-12-05 converted to PyTorch)",
            used_by="FID, sFID, IS, precision/recall in the Inception feature space (dar.metrics.extractors)",
        ),
        Asset(
            name="adm-ref-imagenet256",
            target="VIRTUAL_imagenet256_labeled.npz",
            files=(
                AssetFile(
                    "VIRTUAL_imagenet256_labeled.npz",
                    "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet/256/VIRTUAL_imagenet256_labeled.npz",
                ),
            ),
            source="OpenAI guided-diffusion (ADM) ImageNet 256 reference batch",
            used_by="ImageNet-256 reference statistics and precision/recall images (dar.metrics.reference)",
        ),
        Asset(
            name="dinov2-vitb14",
            target="dinov2_vitb14_pretrain.pth",
            files=(
                AssetFile(
                    "dinov2_vitb14_pretrain.pth", "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth"
                ),
            ),
            source="facebookresearch/dinov2 ViT-B/14 pretrained weights",
            used_by="REPA representation alignment target (DINOv2 ViT-B/14 patch tokens)",
        ),
    )
}


class AssetMissingError(FileNotFoundError):
    """A required asset is not in the assets folder (or no folder is configured)."""


class AssetFetchError(RuntimeError):
    """A download failed or did not match its expected hash."""


# ----------------------------------------------------------------------------- lookup


def resolve_assets_dir(assets_dir: str | os.PathLike | None = None) -> Path:
    """The assets folder: the argument, else $DAR_ASSETS, else an error saying how to set one."""
    value = assets_dir if assets_dir not in (None, "") else os.environ.get(ENV_VAR)
    if not value:
        raise AssetMissingError(
            f"no assets folder configured: pass --assets-dir DIR or set {ENV_VAR}=DIR, "
            f"after fetching the assets there with: {FETCH_CMD} --dest DIR"
        )
    return Path(value).expanduser()


def provenance(path: str | os.PathLike) -> str:
    """What an asset file or folder is: the published asset, or a rehearsal stand-in (its folder holds REHEARSAL)."""
    path = Path(path)
    for folder in (path, *path.parents)[:3]:
        if (folder / REHEARSAL_MARKER).is_file():
            return REHEARSAL_PROVENANCE
    return "published"


def asset_path(name: str, assets_dir: str | os.PathLike | None = None) -> Path:
    return resolve_assets_dir(assets_dir) / _get(name).target


def require_asset(name: str, assets_dir: str | os.PathLike | None = None) -> Path:
    """Path of a fetched asset (file or folder); a clear error naming file, folder and fetch command if absent."""
    asset = _get(name)
    folder = resolve_assets_dir(assets_dir)
    missing = [f.path for f in asset.files if not (folder / f.path).is_file()]
    if missing:
        kind = "folder" if asset.is_folder else "file"
        raise AssetMissingError(
            f"asset {name!r} not found: expected {kind} {asset.target} in assets folder {folder} "
            f"(missing: {', '.join(missing)}; source: {asset.source}). "
            f"Fetch it where the network is with: {FETCH_CMD} --dest {folder} --only {name}"
        )
    return folder / asset.target


def _get(name: str) -> Asset:
    if name not in ASSETS:
        raise KeyError(f"unknown asset {name!r}; registered: {sorted(ASSETS)}")
    return ASSETS[name]


# ----------------------------------------------------------------------------- download


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _verify(digest: str, spec: AssetFile) -> None:
    if spec.sha256 and digest != spec.sha256:
        raise AssetFetchError(f"{spec.path}: sha256 {digest} does not match the expected {spec.sha256}")
    if spec.sha256_prefix and not digest.startswith(spec.sha256_prefix):
        raise AssetFetchError(f"{spec.path}: sha256 {digest} does not start with the expected {spec.sha256_prefix}")


def _download(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Fetch `url` into `part`, resuming from its current size when the server honours Range."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "dar-fetch-assets"} | ({"Range": f"bytes={have}-"} if have else {})
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range past the end: the part file is already complete
            return
        raise
    with response:
        resumed = have and getattr(response, "status", None) == 206
        total = response.headers.get("Content-Length")
        total = int(total) + (have if resumed else 0) if total else None
        from tqdm import tqdm

        bar = tqdm(total=total, initial=have if resumed else 0, unit="B", unit_scale=True, desc=part.name, disable=not progress)
        with open(part, "ab" if resumed else "wb") as f, bar:
            while block := response.read(1 << 20):
                f.write(block)
                bar.update(len(block))


def fetch_asset(asset: Asset, dest: Path, timeout: float = 60.0, progress: bool = False, log=print) -> dict:
    """Download every file of `asset` into `dest` (skipping verified ones); returns its manifest entry."""
    entry = {"source": asset.source, "files": {}}
    for spec in asset.files:
        final = dest / spec.path
        if final.is_file():
            digest = _sha256(final)
            _verify(digest, spec)
            log(f"  {spec.path}: present (sha256 {digest[:12]})")
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            part = final.with_name(f".{final.name}.part")
            log(f"  {spec.path}: downloading {spec.url}")
            try:
                _download(spec.url, part, timeout, progress)
            except (urllib.error.URLError, OSError) as e:
                raise AssetFetchError(
                    f"{spec.path}: download from {spec.url} failed ({e}); rerun where the network is to resume"
                ) from e
            digest = _sha256(part)
            try:
                _verify(digest, spec)
            except AssetFetchError:
                part.unlink(missing_ok=True)  # a corrupt part would only resume into another mismatch
                raise
            with atomic_path(final) as tmp:  # rename the complete download into place; fsync + atomic rename
                os.replace(part, tmp)
            log(f"  {spec.path}: done (sha256 {digest[:12]})")
        entry["files"][spec.path] = {"url": spec.url, "sha256": digest, "bytes": final.stat().st_size}
    return entry


def _update_manifest(dest: Path, name: str, entry: dict) -> None:
    import json

    path = dest / MANIFEST
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    manifest[name] = entry | {"fetched": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(path, manifest)


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog=FETCH_CMD,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dest", default=os.environ.get(ENV_VAR), help=f"assets folder (default: ${ENV_VAR} = %(default)s)")
    p.add_argument(
        "--only",
        action="append",
        choices=sorted(ASSETS),
        metavar="NAME",
        help=f"fetch only this asset, repeatable: {sorted(ASSETS)} (default: all)",
    )
    p.add_argument("--list", action="store_true", help="list the registry and what --dest holds; download nothing")
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout per request, seconds (default: %(default)s)")
    args = p.parse_args(argv)
    if not args.dest:
        p.error(f"--dest is required when {ENV_VAR} is not set")
    dest = Path(args.dest).expanduser()
    names = args.only or list(ASSETS)

    if args.list:
        for name in names:
            a = ASSETS[name]
            have = all((dest / f.path).is_file() for f in a.files)
            print(f"{name:<22} {'present' if have else 'missing':<8} {dest / a.target}\n{'':<22} used by: {a.used_by}")
        return 0

    failed = []
    for name in names:
        print(f"{name} -> {dest / ASSETS[name].target}")
        try:
            _update_manifest(dest, name, fetch_asset(ASSETS[name], dest, args.timeout, sys.stderr.isatty()))
        except AssetFetchError as e:
            print(f"error: {e}", file=sys.stderr)
            failed.append(name)
    if failed:
        print(f"error: failed: {', '.join(failed)}; rerun the same command to resume", file=sys.stderr)
        return 1
    return 0
