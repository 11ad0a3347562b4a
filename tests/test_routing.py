"""DAR, skip and residual routing inside the model, against forwards written from the equations."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import randomize, tiny_batch, tiny_model
from dar.routing import AlphaRecorder, parse_routing
from dar.routing.aggregate import RMS_EPS


def eq5(sources, q, w):
    """Eq. 5 with a stack (a different code path from the library's), returns (h, alpha)."""
    V = torch.stack(sources)  # [N, B, T, D]
    k = w * V * torch.rsqrt(V.pow(2).mean(-1, keepdim=True) + RMS_EPS)
    if q.dim() == 2:
        q = q[:, None]
    a = torch.softmax((q * k).sum(-1) / math.sqrt(V.shape[-1]), dim=0)
    return (a.unsqueeze(-1) * V).sum(0), a


def manual_dar_forward(model, x, t, y, sets, final_set, final_agg):
    """SiT with DAR written out: v_0 = embedding, h_l = Eq. 5 over sets[l], v_l = gated sublayer output."""
    e = model.t_embedder(t)
    c = e + model.y_embedder(y, False)
    v = [model.x_embedder(x) + model.pos_embed]

    def query(agg, prev):
        if agg.query_kind == "static":
            return agg.query
        if agg.query_kind == "explicit":
            return agg.query + e  # w_l + e(t)
        return agg.query_proj(prev)  # W_q v_{l-1}

    for k, blk in enumerate(model.blocks):
        mods = blk.adaLN_modulation(c).chunk(6, dim=1)
        for j, (f, norm) in enumerate([(blk.attn, blk.norm1), (blk.mlp, blk.norm2)]):
            l = 2 * k + j + 1
            agg = model.routing.aggregators[l - 1]
            h, _ = eq5([v[i] for i in sets[l]], query(agg, v[l - 1]), agg.norm_weight)
            shift, scale, gate = mods[3 * j : 3 * j + 3]
            v.append(gate.unsqueeze(1) * f(norm(h) * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)))
    h, _ = eq5([v[i] for i in final_set], query(final_agg, v[-1]), final_agg.norm_weight)
    shift, scale = model.final_layer.adaLN_modulation(c).chunk(2, dim=1)
    out = model.final_layer.linear(model.final_layer.norm_final(h) * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1))
    return model.unpatchify(out)[:, : model.in_channels]


@pytest.mark.parametrize("query", ["static", "explicit", "dynamic"])
def test_dense_S1_equals_the_all_source_definition(query):
    model = tiny_model(f"dar-{query}-c1", depth=3).eval()
    randomize(model)
    x, t, y = tiny_batch(model)
    L = 6
    sets = {l: list(range(l)) for l in range(1, L + 1)}  # S_l = {v_0, .., v_{l-1}} (Eq. 5)
    expected = manual_dar_forward(model, x, t, y, sets, list(range(L + 1)), model.routing.final_aggregator)
    torch.testing.assert_close(model(x, t, y), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("query", ["static", "dynamic"])
def test_chunked_S4_depth4_matches_worked_source_sets(query):
    model = tiny_model(f"dar-{query}-c4", depth=4).eval()
    randomize(model)
    x, t, y = tiny_batch(model)
    # L = 8, chunks {1..4}, {5..8}; summaries c_0 = v_0, c_1 = v_4 (Eq. 7), final Eq. 11.
    sets = {1: [0], 2: [0, 1], 3: [0, 1, 2], 4: [0, 1, 2, 3], 5: [0, 4], 6: [0, 4, 5], 7: [0, 4, 5, 6], 8: [0, 4, 5, 6, 7]}
    expected = manual_dar_forward(model, x, t, y, sets, [0, 4, 5, 6, 7, 8], model.routing.final_aggregator)
    torch.testing.assert_close(model(x, t, y), expected, rtol=1e-5, atol=1e-5)


def test_repa_final_reuses_the_last_mlp_aggregator():
    model = tiny_model("dar-dynamic-c2-repa", depth=2).eval()
    randomize(model)
    assert model.routing.final_aggregator is None
    x, t, y = tiny_batch(model)
    sets = {1: [0], 2: [0, 1], 3: [0, 2], 4: [0, 2, 3]}
    expected = manual_dar_forward(model, x, t, y, sets, [0, 2, 3, 4], model.routing.aggregators[-1])
    torch.testing.assert_close(model(x, t, y), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("query", ["static", "explicit", "dynamic"])
def test_routing_is_uniform_at_init(query):
    model = tiny_model(f"dar-{query}-c2", depth=3).eval()
    randomize(model)  # nonzero sublayer outputs, so uniformity comes from the zero queries
    model.routing.reset_parameters()
    if query == "explicit":
        torch.nn.init.zeros_(model.t_embedder.mlp[2].weight)
        torch.nn.init.zeros_(model.t_embedder.mlp[2].bias)
    x, t, y = tiny_batch(model)
    with model.routing.observe(AlphaRecorder()) as rec:
        model(x, t, y)
    assert len(rec.weights) == 6 + 1
    for sources, alpha in rec.weights.values():
        torch.testing.assert_close(alpha, torch.full_like(alpha, 1 / len(sources)))


def test_fresh_explicit_model_has_zero_timestep_embedding():
    model = tiny_model("dar-explicit-c2")
    assert model.t_embedder(torch.rand(4)).abs().max() == 0  # e(t) = 0 at init (Sec. 4.2)
    assert tiny_model("dar-static-c2").t_embedder(torch.rand(4)).abs().max() > 0


def test_explicit_with_zero_e_t_equals_static_for_any_input():
    static, explicit = tiny_model("dar-static-c2", depth=3).eval(), tiny_model("dar-explicit-c2", depth=3).eval()
    randomize(static, seed=3)
    explicit.load_state_dict(static.state_dict())  # same parameter names and shapes
    for m in (static, explicit):
        torch.nn.init.zeros_(m.t_embedder.mlp[2].weight)
        torch.nn.init.zeros_(m.t_embedder.mlp[2].bias)
    for seed in range(3):
        x, t, y = tiny_batch(static, seed=seed)
        with static.routing.observe(AlphaRecorder()) as ra, explicit.routing.observe(AlphaRecorder()) as rb:
            out_s, out_e = static(x, t, y), explicit(x, t, y)
        # equal up to float rounding: the static logits are one matrix-vector product, the per-sample ones a sum
        torch.testing.assert_close(out_s, out_e, rtol=1e-6, atol=1e-6)
        for l in ra.weights:
            torch.testing.assert_close(ra.weights[l][1], rb.weights[l][1], rtol=1e-6, atol=1e-7)


def test_explicit_weights_change_with_t_static_queries_do_not():
    model = tiny_model("dar-explicit-c2", depth=2).eval()
    randomize(model, seed=4, std=0.5)
    agg = model.routing.aggregators[1]
    x, _, y = tiny_batch(model, batch=2)
    qs = [agg.make_query(None, model.t_embedder(torch.full((2,), tt))) for tt in (0.05, 0.95)]
    assert (qs[0] - qs[1]).abs().max() > 1e-3  # q_l(t) = w_l + e(t) depends on t
    weights = []
    for tt in (0.05, 0.95):
        with model.routing.observe(AlphaRecorder()) as rec:
            model(x, torch.full((2,), tt), y)
        weights.append(rec.weights[4][1])
    assert (weights[0] - weights[1]).abs().max() > 1e-3
    static = tiny_model("dar-static-c2", depth=2)
    assert static.routing.aggregators[1].make_query(None, torch.randn(2, 32)).shape == (32,)  # no t anywhere


@pytest.mark.parametrize("routing", ["residual", "skip", "dar-static-c2", "dar-dynamic-c1"])
def test_observing_does_not_change_the_forward(routing):
    model = tiny_model(routing, depth=2).eval()
    randomize(model)
    x, t, y = tiny_batch(model)
    plain = model(x, t, y)
    with model.routing.observe(AlphaRecorder()):
        observed = model(x, t, y)
    torch.testing.assert_close(plain, observed, rtol=0, atol=0)


def manual_skip_forward(model, x, t, y):
    """U-ViT: in-blocks push their output, out-blocks pop and fuse W[h; skip] + b before running (Eq. 3-4)."""
    h = model.x_embedder(x) + model.pos_embed
    c = model.t_embedder(t) + model.y_embedder(y, False)
    D, n = model.depth, model.depth // 2
    saved = []
    for k, blk in enumerate(model.blocks):
        if k >= D - n:
            h = model.routing.fuse[k - (D - n)](torch.cat([h, saved.pop()], dim=-1))
        sm, cm, gm, sf, cf, gf = blk.adaLN_modulation(c).chunk(6, dim=1)
        h = h + gm.unsqueeze(1) * blk.attn(blk.norm1(h) * (1 + cm.unsqueeze(1)) + sm.unsqueeze(1))
        h = h + gf.unsqueeze(1) * blk.mlp(blk.norm2(h) * (1 + cf.unsqueeze(1)) + sf.unsqueeze(1))
        if k < n:
            saved.append(h)
    shift, scale = model.final_layer.adaLN_modulation(c).chunk(2, dim=1)
    out = model.final_layer.linear(model.final_layer.norm_final(h) * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1))
    return model.unpatchify(out)[:, : model.in_channels]


@pytest.mark.parametrize("depth", [4, 5])
def test_skip_routing_pairs_blocks_like_uvit(depth):
    model = tiny_model("skip", depth=depth).eval()
    randomize(model)
    x, t, y = tiny_batch(model)
    torch.testing.assert_close(model(x, t, y), manual_skip_forward(model, x, t, y), rtol=1e-5, atol=1e-5)


def test_skip_routing_starts_as_residual():
    skip, res = tiny_model("skip", depth=4).eval(), tiny_model("residual", depth=4).eval()
    randomize(res)
    skip.load_state_dict(res.state_dict(), strict=False)  # fuse keeps its [I | 0] init
    x, t, y = tiny_batch(res)
    torch.testing.assert_close(skip(x, t, y), res(x, t, y), rtol=1e-6, atol=1e-6)


def test_inference_frees_sources_no_one_reads():
    model = tiny_model("dar-static-c2", depth=3).eval()
    randomize(model)
    x, t, y = tiny_batch(model)
    stream = model.routing.start(model.x_embedder(x) + model.pos_embed, model.t_embedder(t))
    c = model.t_embedder(t) + model.y_embedder(y, False)
    for k, blk in enumerate(model.blocks):
        blk(stream, c, k)
    alive = [i for i, v in enumerate(stream.v) if v is not None]
    assert alive == [0, 2, 4, 5, 6]  # summaries c_0..c_2 = v_0, v_2, v_4 and the last chunk v_5, v_6


def test_spec_names_round_trip():
    for name in ["residual", "skip", "dar-static-c4", "dar-explicit-c1", "dar-dynamic-c8-repa"]:
        assert parse_routing(name).name == name
    assert parse_routing("dar-static-c4").label == "Static c4"


@pytest.mark.parametrize("routing", ["dar-static-c2", "dar-explicit-c1", "dar-dynamic-c2"])
def test_stream_normalising_each_source_once_equals_normalising_every_read(routing, monkeypatch):
    """The stream's per-source RMSNorm cache (the fast CPU path) against normalising on every read, as the path
    without the cache does: outputs and every parameter's gradient agree."""
    import dar.routing.adaptive as adaptive

    def forward_backward(cache):
        monkeypatch.setattr(adaptive, "uses_kernel", lambda backend, x: not cache)
        model = tiny_model(routing, depth=3)
        model.routing.set_backend("torch")
        randomize(model)
        x, t, y = tiny_batch(model)
        stream = model.routing.start(torch.zeros(1, 1, 1), torch.zeros(1, 1))
        assert (stream.xhat is not None) == cache
        out = model(x, t, y)
        out.square().sum().backward()
        return out, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    fast, slow = forward_backward(True), forward_backward(False)
    torch.testing.assert_close(fast[0], slow[0], rtol=1e-5, atol=1e-6)
    assert fast[1].keys() == slow[1].keys() and any("aggregators" in n for n in fast[1])
    for name, grad in fast[1].items():  # fp32 rounding of sums taken in another order: relative to the gradient's scale
        err = (grad - slow[1][name]).abs().max() / grad.abs().max().clamp_min(1e-12)  # (a one-source read: grad 0)
        assert err < 1e-5, f"{name}: {err:.2e}"
