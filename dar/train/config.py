"""Training configuration: one typed dataclass and its validation.

The paper's setups are the training runs of the grid presets (dar/presets/*.yaml,
`python -m dar train --preset imagenet256 --run static-c4`); any key can be
overridden by a config file or a flag. The resolved config is saved as
`config.json` in the run folder, and the fields marked identity=True (with the
data's identity) are the run's identity, recorded in every checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from dar.config import AT_LEAST_1, FRACTION, NON_NEGATIVE, POSITIVE, ConfigError, Range, check_values, identity_fields, opt


@dataclass
class TrainConfig:
    # --- what to train
    data: str = opt("results/latents/digits", "latent cache folder (python -m dar cache-latents)", identity=False)
    out: str = opt("results/runs/debug", "run folder: checkpoints, metrics.jsonl, config.json", identity=False)
    model: str = opt("SiT-T/2", "registered model name (python -m dar params lists them)")
    routing: str = opt(
        "residual", "routing: residual | skip | dar-<static|explicit|dynamic>-c<S>[-repa] | a routing-zoo method (dar.routing)"
    )
    width_match: str | None = opt(
        None,
        "widen this residual model to the parameter count of that routing, e.g. mhc-n4 (the SiT-Plus construction, "
        "dar/models/matched.py)",
    )
    routing_backend: str = opt(
        "auto",
        "DAR aggregation backend: torch | triton | auto (triton on CUDA)",
        identity=False,
        choices=("torch", "triton", "auto"),
    )
    learn_sigma: bool = opt(True, "predict 2C channels like the reference SiT (the extra C are unused)")
    class_dropout: float = opt(0.1, "probability of dropping the label to the null class (CFG)", range=FRACTION)
    # --- how long, what to keep
    # (the run length is not part of the run's identity: the learning rate is constant, so step s of a
    # 600-step run and of a 1000-step run are the same state, and lengthening a run continues it)
    iterations: int = opt(
        2000, "optimizer steps in total (the run length; resuming = rerunning)", identity=False, range=AT_LEAST_1
    )
    milestones: list[int] = opt(
        [], "steps whose checkpoints are kept for sampling/diagnostics (the run's table cells)", identity=False
    )
    ckpt_every: int = opt(500, "steps between resume checkpoints (checkpoints/latest.pt)", identity=False, range=AT_LEAST_1)
    log_every: int = opt(
        50, "steps between metric records (metrics.jsonl) and heartbeat log lines", identity=False, range=AT_LEAST_1
    )
    tensorboard: bool = opt(False, "also write the metrics as TensorBoard scalars in <out>/tensorboard", identity=False)
    # --- optimisation (SiT recipe; the paper: global batch 1024, lr 1e-4, bf16)
    global_batch: int = opt(128, "global batch per optimizer step, independent of the number of processes", range=AT_LEAST_1)
    micro_batch: int | None = opt(
        None, "max samples per process per forward (gradient accumulation above it)", identity=False, range=AT_LEAST_1
    )
    lr: float = opt(1e-4, "AdamW learning rate (constant, no warm-up)", range=Range(0, 1, lo_open=True))
    weight_decay: float = opt(0.0, "AdamW weight decay", range=NON_NEGATIVE)
    adam_betas: list[float] = opt([0.9, 0.999], "AdamW betas", range=FRACTION)
    grad_clip: float | None = opt(None, "max global grad norm (None: no clipping, as SiT)", range=POSITIVE)
    ema_decay: float = opt(0.9999, "EMA decay (EMA weights kept in fp32; 0 = no averaging)", range=Range(0, 1))
    precision: str = opt("bf16", "bf16 (autocast on CUDA) or fp32; CPU always runs fp32", choices=("bf16", "fp32"))
    seed: int = opt(0, "seed of initialisation, data order, noise and times", range=NON_NEGATIVE)
    device: str = opt("auto", "auto | cpu | cuda | cuda:<index>", identity=False, device=True)
    compile: bool = opt(False, "torch.compile the model", identity=False)
    deterministic: bool = opt(False, "torch.use_deterministic_algorithms (exact resume tests)", identity=False)
    restart: bool = opt(
        False,
        "set the run folder's checkpoints and metrics aside (into <out>/replaced-<time>/) and train from scratch",
        identity=False,
    )
    # --- REPA (App. C.1: DINOv2-B, lambda 0.5, the hidden state after block 8); needs a cache with images
    repa: bool = opt(False, "add REPA's alignment loss (the latent cache must hold images: --store-images)")
    repa_lambda: float = opt(0.5, "weight of the alignment loss", range=NON_NEGATIVE)
    repa_depth: int = opt(8, "align the hidden state after this block (1-based)", range=AT_LEAST_1)
    repa_state: str = opt("aggregated", "under DAR: 'aggregated' (state entering the next block) or 'sublayer' (last output)")
    repa_encoder: str = opt("dinov2", "frozen target encoder: dinov2 (ImageNet) or digits")
    repa_encoder_weights: str | None = opt(
        None,
        "weights file of the encoder (dinov2_vitb14_pretrain.pth or digits_net.pt); its sha256 is checked on resume",
        identity=False,
    )
    repa_projector_dim: int = opt(2048, "hidden width of the projector MLP", range=AT_LEAST_1)

    def identity(self, data: dict) -> dict:
        """What changes this run's weights: the identity fields, REPA's only when REPA is on, and the data's
        identity (the latent cache's, dar.data.cache.CacheConfig.data_identity)."""
        out = identity_fields(self)
        if not self.repa:
            out = {k: v for k, v in out.items() if not k.startswith("repa_")}
        if self.width_match is None:  # absent from every identity recorded before the field existed
            del out["width_match"]
        return {**out, "data": data}

    def validate(self) -> None:
        from dar.models import MODELS, SIZES
        from dar.routing import check_routing

        check_values(self)
        if self.model not in MODELS:
            raise ConfigError(f"model: unknown {self.model!r}; registered: {', '.join(MODELS)}")
        size = SIZES[MODELS[self.model][0]]
        depth = size.depth
        try:
            check_routing(self.routing, size.hidden_size, depth)
        except ValueError as e:
            raise ConfigError(f"routing: {e} (model {self.model})") from None
        if self.width_match is not None:
            if self.routing != "residual":
                raise ConfigError(f"width_match: a width-matched control is a residual model; routing is {self.routing!r}")
            try:
                check_routing(self.width_match, size.hidden_size, depth)
            except ValueError as e:
                raise ConfigError(f"width_match: {e}") from None
        bad = [m for m in self.milestones if not 1 <= m <= self.iterations]
        if bad:
            raise ConfigError(f"milestones {bad} lie outside 1..iterations={self.iterations}")
        if len(self.adam_betas) != 2:
            raise ConfigError("adam_betas needs two values, e.g. 0.9,0.999")
        if self.repa:
            from dar.repa import ENCODERS, REPA_STATES

            if self.repa_state not in REPA_STATES:
                raise ConfigError(f"repa_state: {self.repa_state!r} is not one of {REPA_STATES}")
            if self.repa_encoder not in ENCODERS:
                raise ConfigError(f"repa_encoder: {self.repa_encoder!r} is not one of {ENCODERS}")
            if not self.repa_encoder_weights:
                raise ConfigError("repa_encoder_weights: REPA needs the encoder's weights file (see python -m dar fetch-assets)")
            if self.repa_state == "sublayer" and not self.routing.startswith("dar-"):
                raise ConfigError("repa_state: 'sublayer' applies to DAR routings only; the residual stream is 'aggregated'")
        if self.repa and self.repa_depth > depth:
            raise ConfigError(f"repa_depth: {self.repa_depth} is past the {depth} blocks of {self.model}")
