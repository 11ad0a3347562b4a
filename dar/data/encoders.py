"""Latent encoders: images in [-1, 1] <-> model latents.

    sd-vae    the Stable Diffusion VAE (diffusers AutoencoderKL, stabilityai/sd-vae-ft-ema),
              latents = sample(posterior) * VAE_SCALE; loaded from a local folder only
    identity  the image is its own latent (digits, pixel space)

The cache stores the posterior moments (mean, std) so that training draws a
fresh posterior sample each time, as the reference does from its stored
distribution; the identity encoder has std = 0. `VAE_SCALE` is defined here
and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

VAE_SCALE = 0.18215  # SD VAE latent scale (SiT / DiT)
VAE_ASSET = "sd-vae-ft-ema"  # name in dar.assets


class IdentityEncoder:
    name = "identity"
    scale = 1.0
    downsample = 1

    def __init__(self, channels: int = 1) -> None:
        self.latent_channels = channels

    def moments(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return images, torch.zeros_like(images)

    def decode(self, latents: Tensor) -> Tensor:
        return latents

    def describe(self) -> dict:
        return {"name": self.name, "scale": self.scale}


class SDVAEEncoder:
    """The SD VAE from a local diffusers folder (fetched by `python -m dar fetch-assets`)."""

    name = "sd-vae"
    scale = VAE_SCALE
    downsample = 8
    latent_channels = 4

    def __init__(self, path: str | Path, device: str | torch.device = "cpu") -> None:
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"SD VAE not found: looked for a diffusers folder with config.json at {path}. "
                f"Fetch it where the network is with: python -m dar fetch-assets --only {VAE_ASSET} --dest <assets dir>"
            )
        from diffusers.models import AutoencoderKL

        self.path = path
        # low_cpu_mem_usage=False said explicitly: accelerate is not a dependency, and diffusers warns when it guesses
        self.vae = AutoencoderKL.from_pretrained(path, local_files_only=True, low_cpu_mem_usage=False).to(device).eval()
        self.device = torch.device(device)

    @torch.no_grad()
    def moments(self, images: Tensor) -> tuple[Tensor, Tensor]:
        dist = self.vae.encode(images.to(self.device)).latent_dist
        return dist.mean, dist.std

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        return self.vae.decode(latents.to(self.device) / self.scale).sample

    def describe(self) -> dict:
        return {"name": self.name, "scale": self.scale, "path": str(self.path)}
