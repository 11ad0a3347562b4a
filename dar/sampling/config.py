"""The sampling job's config: what to sample and how, and which of it is the sample file's identity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dar.config import ConfigError, identity_fields, opt


@dataclass
class SampleConfig:
    checkpoint: str = opt("", "training checkpoint (.pt) to sample from", identity=False)
    out: str = opt("samples.npz", "output .npz (ADM format); the protocol goes to <out>.json", identity=False)
    sampler: str = opt("ode", "ode (Heun) | sde (Euler-Maruyama) | ode-euler | ode-heun | ode-dopri5 | sde-em")
    nfe: int = opt(250, "function evaluations (fixed-step samplers)")
    cfg_scale: float = opt(1.0, "classifier-free guidance scale w (1.0 = no guidance; the paper: 1.5)")
    cfg_channels: int | None = opt(3, "guided latent channels: 3 = SiT (channels 0-2), none = all (REPA)")
    cfg_interval: list[float] = opt([], "guidance interval lo,hi in SiT time (t = 1 data); empty = always")
    num_samples: int = opt(50_000, "samples to generate")
    seed: int = opt(0, "global seed; sample i uses the stream (seed, i)")
    # batch and shard sizes split the work only: sample i depends on (seed, i) alone
    batch_size: int = opt(64, "samples per forward", identity=False)
    shard_size: int = opt(1000, "samples per resumable shard", identity=False)
    ema: bool = opt(True, "use the EMA weights")
    vae_path: str | None = opt(None, "SD VAE folder for decoding (default: the one the latent cache recorded)", identity=False)
    device: str = opt("auto", "auto | cpu | cuda", identity=False)
    grid: str | None = opt(None, "also write a PNG grid of the first 100 samples here", identity=False)
    restart: bool = opt(False, "discard the shards of an earlier, different sampling run at --out and start over", identity=False)

    def identity(self, checkpoint: dict) -> dict:
        """The sample file's identity: the checkpoint's (dar.train.checkpoint.checkpoint_identity) and the settings."""
        return {"checkpoint": checkpoint, **identity_fields(self)}

    def validate(self) -> None:
        from dar.transport import get_sampler

        if not self.checkpoint:
            raise ConfigError("checkpoint: give the training checkpoint to sample from (--checkpoint PATH)")
        if not Path(self.checkpoint).is_file():
            raise ConfigError(f"checkpoint {self.checkpoint} does not exist; train that run first (python -m dar train)")
        if self.num_samples < 1 or self.batch_size < 1 or self.shard_size < 1:
            raise ConfigError("num_samples, batch_size and shard_size must be >= 1")
        if self.cfg_interval and len(self.cfg_interval) != 2:
            raise ConfigError("cfg_interval needs two values lo,hi (or nothing)")
        get_sampler(self.sampler, self.nfe)  # raises ValueError naming the valid samplers
