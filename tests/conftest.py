"""Shared tiny fixtures."""

from __future__ import annotations

import logging
import os

import pytest
import torch

if not torch.cuda.is_available():
    # Triton fixes interpreter vs compiled mode when first imported; on CPU runs the kernel tests
    # need the interpreter, whichever test module happens to import Triton first.
    os.environ.setdefault("TRITON_INTERPRET", "1")

from dar.models import build_model

TINY = dict(depth=2, hidden_size=32, num_heads=4, input_size=8, in_channels=4, num_classes=10)


def tiny_model(routing: str = "residual", **overrides):
    """A 2-block SiT on 8x8x4 inputs (16 tokens at patch 2)."""
    cfg = {**TINY, **overrides}
    torch.manual_seed(0)
    return build_model("SiT-S/2", routing, **cfg)


def randomize(module: torch.nn.Module, seed: int = 0, std: float = 0.2) -> None:
    """Overwrite every trainable parameter with N(0, std^2) so no zero-init hides a bug."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)


def tiny_batch(model, batch: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, model.in_channels, model.input_size, model.input_size, generator=g)
    t = torch.rand(batch, generator=g)
    y = torch.randint(0, model.num_classes, (batch,), generator=g)
    return x, t, y


def tiny_cfg(cache, out, **kw):
    """A 6-iteration fp32 CPU SiT-T/2 training config on `cache`, checkpointing at 3; `kw` overrides."""
    from dar.train import TrainConfig

    base = dict(
        data=str(cache),
        out=str(out),
        model="SiT-T/2",
        global_batch=16,
        iterations=6,
        ckpt_every=3,
        log_every=2,
        lr=1e-3,
        precision="fp32",
        device="cpu",
        deterministic=True,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _fresh_logging():
    """Each test starts with the `dar` logger as a library user finds it: `python -m dar` configures it (a stderr
    handler, dar/logs.py) when a test calls the CLI, and that configuration ends with the test."""
    yield
    logger = logging.getLogger("dar")
    for h in [h for h in logger.handlers if getattr(h, "_dar", False)]:
        logger.removeHandler(h)
    logger.setLevel(logging.NOTSET)


@pytest.fixture(scope="session")
def digits_cache(tmp_path_factory):
    """The digits latent cache (pixel space), made once per test session."""
    from dar.data.cache import CacheConfig, run

    out = tmp_path_factory.mktemp("latents") / "digits"
    run(CacheConfig(dataset="digits", out=str(out)))
    return out


@pytest.fixture(scope="session")
def digits_net_path(tmp_path_factory):
    """Weights of the digits feature network, trained once per session (~5 s on 2 CPU cores)."""
    from dar.metrics import digits_net

    cfg = digits_net.TrainConfig()
    path = tmp_path_factory.mktemp("digits_net") / digits_net.WEIGHTS_NAME
    digits_net.save(digits_net.train(cfg), path, cfg)
    return path
