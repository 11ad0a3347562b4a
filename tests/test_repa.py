"""REPA: alignment loss, hidden-state capture, frozen encoders, training, resume and errors."""

from __future__ import annotations

import pytest
import torch

from conftest import randomize, tiny_batch, tiny_cfg, tiny_model
from dar.config import ConfigError
from dar.data.cache import CacheConfig
from dar.data.cache import run as cache_run
from dar.repa import HiddenCapture, alignment_loss, build_projector
from dar.repa.dinov2 import DinoV2, load_dinov2_vitb14
from dar.train import checkpoint as ckpt_io
from dar.train import train


def test_alignment_loss_known_values():
    a = torch.randn(2, 5, 8)
    torch.testing.assert_close(alignment_loss(a, 3.0 * a), torch.full((2,), -1.0))  # same direction, any scale
    e1, e2 = torch.zeros(1, 1, 4), torch.zeros(1, 1, 4)
    e1[..., 0], e2[..., 1] = 1.0, 1.0
    torch.testing.assert_close(alignment_loss(e1, e2), torch.zeros(1))  # orthogonal
    torch.testing.assert_close(alignment_loss(a, -a), torch.full((2,), 1.0))
    with pytest.raises(ValueError, match="differ"):
        alignment_loss(a, a[:, :4])


def test_projector_shape_is_repas():
    proj = build_projector(1152, 768)
    assert [m.out_features for m in proj if isinstance(m, torch.nn.Linear)] == [2048, 2048, 768]
    assert sum(isinstance(m, torch.nn.SiLU) for m in proj) == 2


def test_capture_aggregated_is_the_residual_stream_after_block_k():
    model = tiny_model("residual", depth=3).eval()
    randomize(model)
    x, t, y = tiny_batch(model)
    cap = HiddenCapture(2, 3, "aggregated")
    with model.routing.observe(cap):
        model(x, t, y)
    # the residual stream after block 2, written out
    h = model.x_embedder(x) + model.pos_embed
    c = model.t_embedder(t) + model.y_embedder(y, False)
    for blk in model.blocks[:2]:
        sm, cm, gm, sf, cf, gf = blk.adaLN_modulation(c).chunk(6, dim=1)
        h = h + gm.unsqueeze(1) * blk.attn(blk.norm1(h) * (1 + cm.unsqueeze(1)) + sm.unsqueeze(1))
        h = h + gf.unsqueeze(1) * blk.mlp(blk.norm2(h) * (1 + cf.unsqueeze(1)) + sf.unsqueeze(1))
    torch.testing.assert_close(cap.hidden, h, rtol=1e-5, atol=1e-5)


def test_capture_under_dar_aggregated_vs_sublayer_and_last_block():
    model = tiny_model("dar-static-c2-repa", depth=2).eval()
    randomize(model)
    x, t, y = tiny_batch(model)
    seen = {}

    class Peek(HiddenCapture):
        def on_read(self, l, h, sources, alpha):
            seen[("read", l)] = h
            super().on_read(l, h, sources, alpha)

        def on_write(self, l, v):
            seen[("write", l)] = v
            super().on_write(l, v)

    agg, sub, last = Peek(1, 2, "aggregated"), Peek(1, 2, "sublayer"), HiddenCapture(2, 2, "aggregated")
    with model.routing.observe(agg), model.routing.observe(sub), model.routing.observe(last):
        model(x, t, y)
    assert agg.hidden is seen[("read", 3)]  # the aggregated state entering block 2
    assert sub.hidden is seen[("write", 2)]  # block 1's MLP output v_2
    assert last.hidden is not None and last.hidden.shape == agg.hidden.shape  # the final aggregate
    with pytest.raises(ValueError, match="outside the model's blocks"):
        HiddenCapture(3, 2)


def test_dinov2_layout_loads_and_gives_patch_tokens(tmp_path):
    torch.manual_seed(0)
    tiny = DinoV2(dim=64, depth=2, heads=1, patch=14, pretrain_grid=4)
    keys = set(tiny.state_dict())
    for k in (
        "patch_embed.proj.weight",
        "cls_token",
        "pos_embed",
        "mask_token",
        "norm.weight",
        "blocks.1.attn.qkv.weight",
        "blocks.1.ls1.gamma",
        "blocks.1.ls2.gamma",
        "blocks.0.mlp.fc2.bias",
    ):
        assert k in keys, k
    torch.save(tiny.state_dict(), tmp_path / "dino.pth")
    net = load_dinov2_vitb14(tmp_path / "dino.pth")
    out = net.forward_patch_tokens(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 256, 64)  # 224 / 14 = 16 x 16 patch tokens, positions interpolated from 4 x 4
    assert not any(p.requires_grad for p in net.parameters())
    with pytest.raises(FileNotFoundError, match="fetch-assets --only dinov2-vitb14"):
        load_dinov2_vitb14(tmp_path / "missing.pth")


@pytest.fixture(scope="module")
def repa_setup(tmp_path_factory, digits_net_path):
    root = tmp_path_factory.mktemp("repa")
    cache_run(CacheConfig(dataset="digits", out=str(root / "lat"), store_images=True))
    return root, digits_net_path


def repa_cfg(root, weights, out, **kw):
    repa = dict(
        routing="dar-static-c4-repa",
        log_every=3,
        repa=True,
        repa_encoder="digits",
        repa_encoder_weights=str(weights),
        repa_depth=2,
        repa_projector_dim=64,
    )
    return tiny_cfg(root / "lat", out, **{**repa, **kw})


def test_repa_run_trains_checkpoints_projector_and_resumes_exactly(repa_setup, tmp_path):
    root, weights = repa_setup
    from dar.metrics.digits_net import load

    before = {k: v.clone() for k, v in load(weights).state_dict().items()}
    train(repa_cfg(root, weights, tmp_path / "full"))
    train(repa_cfg(root, weights, tmp_path / "split", iterations=3))
    train(repa_cfg(root, weights, tmp_path / "split"))  # resumes from step 3
    a, b = ckpt_io.load(ckpt_io.newest(tmp_path / "full")), ckpt_io.load(ckpt_io.newest(tmp_path / "split"))
    assert a["step"] == b["step"] == 6 and "projector" in a
    for part in ("model", "ema", "projector"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    import json

    lines = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert all(-1.0 <= x["align_loss"] <= 1.0 for x in lines)
    after = load(weights).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the frozen encoder must not change"


def test_encoder_gets_no_gradient(repa_setup):
    root, weights = repa_setup
    from dar.data.latents import LatentCache
    from dar.train.loop import REPATrainer

    cfg = repa_cfg(root, weights, root / "unused")
    data = LatentCache(cfg.data)
    from dar.models import build_model

    model = build_model("SiT-T/2", "dar-static-c4-repa", input_size=8, in_channels=1, num_classes=10)
    trainer = REPATrainer(cfg, model, data, torch.device("cpu"))
    imgs = data.images(torch.arange(4), torch.zeros(4)).requires_grad_(True)
    targets = trainer.encode(imgs)
    v, proj = trainer(torch.randn(4, 1, 8, 8), torch.rand(4), torch.zeros(4, dtype=torch.long))
    (alignment_loss(proj, targets).sum() + v.sum()).backward()
    enc = trainer.encoder[0]
    assert all(p.grad is None and not p.requires_grad for p in enc.parameters())
    assert not targets.requires_grad and imgs.grad is None
    assert all(p.grad is not None for p in trainer.projector.parameters())
    assert not any(n.startswith("encoder") for n, _ in trainer.named_parameters())


def test_token_mismatch_and_missing_images_are_clear_errors(repa_setup, tmp_path):
    root, weights = repa_setup
    torch.save(DinoV2(dim=64, depth=1, heads=1, pretrain_grid=4).state_dict(), tmp_path / "dino.pth")
    with pytest.raises(ConfigError, match=r"dinov2 encoder gives 256 tokens per image but SiT-T/2 has 16"):
        train(repa_cfg(root, weights, tmp_path / "r", repa_encoder="dinov2", repa_encoder_weights=str(tmp_path / "dino.pth")))
    cache_run(CacheConfig(dataset="digits", out=str(tmp_path / "noimg")))
    cfg = repa_cfg(root, weights, tmp_path / "r2", data=str(tmp_path / "noimg"))
    with pytest.raises(ValueError, match="holds no images; REPA needs them"):
        train(cfg)
    with pytest.raises(ConfigError, match="'sublayer' applies to DAR routings only"):
        repa_cfg(root, weights, tmp_path / "r3", routing="residual", repa_state="sublayer").validate()
