"""The one sampling loop: previews for the report and the 50K metric runs both call it.

For a block of global sample indices it draws, from each sample's own stream
(`rng.PerSampleRNG`), the class label and the starting noise, integrates the
(guided) velocity with the named sampler, decodes the latents to images in
[-1, 1] and converts them to uint8 as DiT/SiT write sample files (to_uint8_nhwc).
Non-finite latents or images are an error (NonFiniteError), never a file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dar.errors import NonFiniteError
from dar.sampling.rng import PerSampleRNG
from dar.transport import SamplerSpec, guided_velocity, sample


@dataclass(frozen=True)
class SampleSettings:
    sampler: SamplerSpec
    cfg_scale: float = 1.0
    cfg_channels: int | None = 3  # SiT guides latent channels 0-2; None = all (REPA)
    cfg_interval: tuple[float, float] | None = None  # in SiT time (t = 1 data)
    seed: int = 0


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] [B, C, H, W] -> uint8 [B, H, W, C] with clamp(127.5 x + 128, 0, 255), as DiT's and SiT's
    sample_ddp.py write their sample files. (ADM's own image_sample.py truncates ((x + 1) * 127.5) instead:
    up to one level lower on a pixel; the ADM evaluator reads either.)"""
    return (127.5 * images.float() + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def check_finite(x: torch.Tensor, what: str, indices: Sequence[int]) -> None:
    """Non-finite values would become pixel 0 in the uint8 conversion: a wrong file that looks finished."""
    bad = (~torch.isfinite(x)).flatten(1).any(1)
    if bad.any():
        rows = [indices[i] for i in torch.nonzero(bad).flatten().tolist()]
        raise NonFiniteError(
            f"{what} of {len(rows)} sample(s) (indices {rows[:5]}{'...' if len(rows) > 5 else ''}) hold NaN or infinity: "
            "the weights are diverged or the guidance settings blow the velocity up; nothing is written"
        )


@torch.no_grad()
def generate(
    model,
    decode,
    settings: SampleSettings,
    indices: Sequence[int],
    batch_size: int,
    device: torch.device,
    labels: Sequence[int] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Yields (uint8 images [b, H, W, C], labels [b], NFE used) for `indices` in batches.

    `labels`, when given, fixes the classes (e.g. one row per class in a preview grid);
    otherwise each sample draws its class uniformly from its own stream.
    """
    C, S = model.in_channels, model.input_size
    for lo in range(0, len(indices), batch_size):
        idx = list(indices[lo : lo + batch_size])
        rng = PerSampleRNG(settings.seed, idx, device)
        y = rng.randint(model.num_classes) if labels is None else torch.as_tensor(labels[lo : lo + batch_size], device=device)
        z = rng.randn((C, S, S))
        velocity = guided_velocity(model, y, settings.cfg_scale, settings.cfg_channels, settings.cfg_interval)
        res = sample(settings.sampler, velocity, z, noise=rng.randn_like)
        check_finite(res.x, "the sampled latents", idx)
        images = decode(res.x)
        check_finite(images, "the decoded images", idx)
        yield to_uint8_nhwc(images), y.cpu().numpy().astype(np.int64), res.nfe
