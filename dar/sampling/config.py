"""The sampling job's config: what to sample and how, and which of it is the sample file's identity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dar.config import AT_LEAST_1, NON_NEGATIVE, ConfigError, Range, check_values, identity_fields, opt


@dataclass
class SampleConfig:
    checkpoint: str = opt("", "training checkpoint (.pt) to sample from", identity=False)
    out: str = opt("samples.npz", "output .npz (ADM format); the protocol goes to <out>.json", identity=False)
    sampler: str = opt("ode", "ode (Heun) | sde (Euler-Maruyama) | ode-euler | ode-heun | ode-dopri5 | sde-em")
    nfe: int = opt(250, "function evaluations (fixed-step samplers)", range=AT_LEAST_1)
    cfg_scale: float = opt(1.0, "classifier-free guidance scale w (1.0 = no guidance; the paper: 1.5)", range=NON_NEGATIVE)
    cfg_channels: int | None = opt(3, "guided latent channels: 3 = SiT (channels 0-2), none = all (REPA)", range=AT_LEAST_1)
    cfg_interval: list[float] = opt(
        [], "guidance interval lo,hi in SiT time (t = 1 data), 0 <= lo < hi <= 1; empty = always", range=Range(0, 1)
    )
    num_samples: int = opt(50_000, "samples to generate", range=AT_LEAST_1)
    seed: int = opt(0, "global seed; sample i uses the stream (seed, i)", range=NON_NEGATIVE)
    # batch and shard sizes split the work only: sample i depends on (seed, i) alone
    batch_size: int = opt(64, "samples per forward", identity=False, range=AT_LEAST_1)
    shard_size: int = opt(1000, "samples per resumable shard", identity=False, range=AT_LEAST_1)
    ema: bool = opt(True, "use the EMA weights")
    vae_path: str | None = opt(None, "SD VAE folder for decoding (default: the one the latent cache recorded)", identity=False)
    device: str = opt("auto", "auto | cpu | cuda | cuda:<index>", identity=False, device=True)
    grid: str | None = opt(None, "also write a PNG grid of the first 100 samples here", identity=False)
    restart: bool = opt(False, "discard the shards of an earlier, different sampling run at --out and start over", identity=False)

    def identity(self, checkpoint: dict) -> dict:
        """The sample file's identity: the checkpoint's (dar.train.checkpoint.checkpoint_identity) and the settings."""
        return {"checkpoint": checkpoint, **identity_fields(self)}

    def validate(self) -> None:
        from dar.transport import get_sampler

        check_values(self)
        if not self.checkpoint:
            raise ConfigError("checkpoint: give the training checkpoint to sample from (--checkpoint PATH)")
        if Path(self.out).is_dir():
            raise ConfigError(f"out: {self.out} is a folder; give the .npz file to write")
        if not Path(self.checkpoint).is_file():
            raise ConfigError(f"checkpoint {self.checkpoint} does not exist; train that run first (python -m dar train)")
        if self.cfg_interval and (len(self.cfg_interval) != 2 or self.cfg_interval[0] >= self.cfg_interval[1]):
            raise ConfigError(
                f"cfg_interval: {self.cfg_interval} is not an interval lo,hi with lo < hi (SiT time: guidance applies "
                "where lo <= t <= hi), or nothing to guide everywhere"
            )
        get_sampler(self.sampler, self.nfe)  # raises ValueError naming the valid samplers
