"""SiT backbone: registry, shapes, parameter counts, checkpoint layout, errors."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import randomize, tiny_batch, tiny_model
from dar.models import MODELS, build_model
from dar.models.sit import TimestepEmbedder, get_2d_sincos_pos_embed
from dar.params import count_params
from dar.routing import ROUTINGS


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("routing", list(ROUTINGS))
def test_every_registry_entry_runs_forward_and_backward(name, routing):
    # Each registered size/patch with any routing, shrunk to depth 4 / width 32 (L = 8: chunks 1, 4, 8 fit).
    model = build_model(name, routing, depth=4, hidden_size=32, num_heads=4, input_size=16, in_channels=4, num_classes=10)
    randomize(model)
    x, t, y = tiny_batch(model, batch=2)
    out = model(x, t, y)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize(
    "name, routing, expected_m",
    [
        ("SiT-XL/2", "residual", 675.1),  # Table 1: SiT-XL/2
        ("SiT-XL/2", "dar-static-c4", 675.3),  # Table 1: DAR static c4
        ("SiT-XL/2", "dar-dynamic-c4", 750.9),  # Table 1: DAR dynamic c4
        ("SiT-Plus/2", "residual", 752.1),  # Table 1: SiT-Plus
        ("SiT-S/2", "residual", 33.0),  # SiT reference sizes
        ("SiT-B/2", "residual", 130.5),
        ("SiT-L/2", "residual", 458.1),
    ],
)
def test_parameter_counts_match_the_paper(name, routing, expected_m):
    assert abs(count_params(name, routing) / 1e6 - expected_m) < 0.1


def test_parameter_deltas_follow_from_the_aggregator_count():
    base = count_params("SiT-XL/2", "residual")
    d = 1152
    assert count_params("SiT-XL/2", "dar-static-c4") - base == 57 * 2 * d  # query + RMSNorm weight, 57 aggregators
    assert count_params("SiT-XL/2", "dar-dynamic-c4") - base == 57 * (d * d + 2 * d)  # W_q (+bias) + RMSNorm weight
    assert count_params("SiT-XL/2", "dar-dynamic-c4-repa") - base == 56 * (d * d + 2 * d)  # no dedicated final


def official_sit_keys(depth: int) -> set[str]:
    """State-dict keys of the official SiT checkpoints (timm PatchEmbed/Attention/Mlp naming)."""
    keys = {
        "pos_embed",
        "x_embedder.proj.weight", "x_embedder.proj.bias",
        "t_embedder.mlp.0.weight", "t_embedder.mlp.0.bias", "t_embedder.mlp.2.weight", "t_embedder.mlp.2.bias",
        "y_embedder.embedding_table.weight",
        "final_layer.linear.weight", "final_layer.linear.bias",
        "final_layer.adaLN_modulation.1.weight", "final_layer.adaLN_modulation.1.bias",
    }  # fmt: skip
    for i in range(depth):
        for sub in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "adaLN_modulation.1"):
            keys |= {f"blocks.{i}.{sub}.weight", f"blocks.{i}.{sub}.bias"}
    return keys


def test_residual_state_dict_matches_official_sit_xl2_checkpoint():
    with torch.device("meta"):
        model = build_model("SiT-XL/2", "residual")
    sd = model.state_dict()
    assert set(sd) == official_sit_keys(28)
    shapes = {
        "pos_embed": (1, 256, 1152),
        "x_embedder.proj.weight": (1152, 4, 2, 2),
        "y_embedder.embedding_table.weight": (1001, 1152),  # 1000 classes + the null class
        "final_layer.linear.weight": (2 * 2 * 8, 1152),  # learn_sigma: 8 output channels
        "final_layer.adaLN_modulation.1.weight": (2 * 1152, 1152),
        "blocks.0.adaLN_modulation.1.weight": (6 * 1152, 1152),
        "blocks.0.attn.qkv.weight": (3 * 1152, 1152),
        "blocks.0.mlp.fc1.weight": (4 * 1152, 1152),
        "t_embedder.mlp.0.weight": (1152, 256),
    }
    for k, s in shapes.items():
        assert tuple(sd[k].shape) == s, k


def reference_sit_forward(model, x, t, y):
    """The official SiT forward written out: x = x + gate * f(modulate(norm(x)))."""
    h = model.x_embedder(x) + model.pos_embed
    c = model.t_embedder(t) + model.y_embedder(y, False)
    for blk in model.blocks:
        sm, cm, gm, sf, cf, gf = blk.adaLN_modulation(c).chunk(6, dim=1)
        h = h + gm.unsqueeze(1) * blk.attn(blk.norm1(h) * (1 + cm.unsqueeze(1)) + sm.unsqueeze(1))
        h = h + gf.unsqueeze(1) * blk.mlp(blk.norm2(h) * (1 + cf.unsqueeze(1)) + sf.unsqueeze(1))
    shift, scale = model.final_layer.adaLN_modulation(c).chunk(2, dim=1)
    out = model.final_layer.linear(model.final_layer.norm_final(h) * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1))
    return model.unpatchify(out)[:, : model.in_channels]


def test_residual_routing_is_the_reference_sit_and_checkpoints_round_trip(tmp_path):
    model = tiny_model("residual").eval()
    randomize(model)
    x, t, y = tiny_batch(model)
    torch.testing.assert_close(model(x, t, y), reference_sit_forward(model, x, t, y))
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    fresh = tiny_model("residual").eval()
    fresh.load_state_dict(torch.load(tmp_path / "ckpt.pt"), strict=True)
    torch.testing.assert_close(fresh(x, t, y), model(x, t, y), rtol=0, atol=0)
    # A DAR model can start from a SiT checkpoint: only routing parameters are missing.
    dar = tiny_model("dar-static-c2")
    res = dar.load_state_dict(torch.load(tmp_path / "ckpt.pt"), strict=False)
    assert res.unexpected_keys == [] and all(k.startswith("routing.") for k in res.missing_keys)


def test_unpatchify_places_patch_pixels():
    model = tiny_model(learn_sigma=False, input_size=8)  # patch 2, grid 4, C = 4
    img = torch.randn(1, 4, 8, 8)
    p, g = 2, 4
    tokens = torch.zeros(1, g * g, p * p * 4)
    for hh in range(g):
        for ww in range(g):
            for pi in range(p):
                for qi in range(p):
                    for c in range(4):
                        tokens[0, hh * g + ww, (pi * p + qi) * 4 + c] = img[0, c, hh * p + pi, ww * p + qi]
    torch.testing.assert_close(model.unpatchify(tokens), img)


def test_positions_are_frozen_2d_sincos():
    model = tiny_model(hidden_size=32, input_size=8)
    assert not model.pos_embed.requires_grad
    pos = torch.from_numpy(get_2d_sincos_pos_embed(32, 4))
    torch.testing.assert_close(model.pos_embed[0].double(), pos, rtol=1e-6, atol=1e-6)
    # token (row r, col c) = r*4 + c; channel 0 = sin(col * 1), channel 8 = cos(col), channel 16 = sin(row)
    for r, c in [(0, 3), (2, 1), (3, 3)]:
        assert pos[r * 4 + c, 0].item() == pytest.approx(math.sin(c))
        assert pos[r * 4 + c, 8].item() == pytest.approx(math.cos(c))
        assert pos[r * 4 + c, 16].item() == pytest.approx(math.sin(r))


def test_timestep_embedding_known_values():
    emb = TimestepEmbedder.timestep_embedding(torch.tensor([0.0, 0.5]), 8)
    torch.testing.assert_close(emb[0], torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]))
    freqs = torch.exp(-math.log(10000.0) * torch.arange(4) / 4)
    torch.testing.assert_close(emb[1], torch.cat([torch.cos(0.5 * freqs), torch.sin(0.5 * freqs)]))


def test_class_dropout_maps_to_the_null_class():
    model = tiny_model(class_dropout_prob=1.0)
    randomize(model)
    x, t, y = tiny_batch(model)
    model.train()
    dropped = model(x, t, y)
    model.eval()
    null = model(x, t, torch.full_like(y, model.null_class))
    torch.testing.assert_close(dropped, null)
    assert model.null_class == 10


def test_learn_sigma_output_channels():
    with_sigma = tiny_model(learn_sigma=True)
    assert with_sigma.final_layer.linear.out_features == 2 * 2 * 8
    without = tiny_model(learn_sigma=False)
    assert without.final_layer.linear.out_features == 2 * 2 * 4
    x, t, y = tiny_batch(with_sigma)
    assert with_sigma(x, t, y).shape == without(x, t, y).shape == x.shape


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: build_model("SiT-XXL/2"), r"unknown model 'SiT-XXL/2'; registered models: SiT-S/2"),
        (lambda: tiny_model("dar-fancy-c4"), r"unknown routing 'dar-fancy-c4'.*static"),
        (lambda: tiny_model("dense"), r"unknown routing 'dense'"),
        (lambda: tiny_model("dar-static-c3"), r"chunk size S=3 does not divide the L=4.*\[1, 2, 4\]"),
        (lambda: tiny_model(num_heads=5), "not divisible by 5 heads"),
        (lambda: tiny_model(input_size=9), "not divisible by patch size"),
    ],
)
def test_bad_configuration_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_input_shapes():
    model = tiny_model()
    x, t, y = tiny_batch(model)
    with pytest.raises(ValueError, match=r"expects x of shape \[B, 4, 8, 8\]"):
        model(x[:, :3], t, y)
    with pytest.raises(ValueError, match="expects t of shape"):
        model(x, t[:2], y)
    with pytest.raises(ValueError, match="expects y of shape"):
        model(x, t, y[:, None])
