"""The routing zoo (dar/routing/{attnres,denseformer,hyper,mhc,laurel,value}.py): each method's
identity at init where its paper claims one, the coincidences with DAR, parameter-count formulas,
gradients to every mixing parameter, Sinkhorn's doubly stochastic matrices, and the harness's
hooks (observers, REPA capture, CFG batches, bf16)."""

from __future__ import annotations

import pytest
import torch

from conftest import randomize, tiny_batch, tiny_model
from dar.models import build_model
from dar.params import count_params
from dar.repa.align import HiddenCapture
from dar.routing import ZOO, AlphaRecorder, Observer, parse_routing
from dar.routing.denseformer import dwa_sources
from dar.routing.mhc import SINKHORN_ITERS, sinkhorn
from dar.transport.guidance import guided_velocity

DEPTH = 4  # L = 8 sublayers: N = 8 blocks and rank 16 > width 32 are excluded below where they do not fit
ZOO_TINY = [n for n in ZOO if n != "laurel-lr-r16"] + ["laurel-lr-r4", "dwa-k2-p2", "attnres-block-n2"]


def zoo_model(routing: str, **kw):
    return tiny_model(routing, depth=DEPTH, **kw).eval()  # eval: no random label dropout between compared calls


def backbone_from(model, reference) -> None:
    """Copy every backbone tensor of `reference` into `model` (the routing's own parameters stay)."""
    missing, unexpected = model.load_state_dict(reference.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("routing.") for k in missing), (missing, unexpected)


def random_backbone(seed: int = 0):
    ref = zoo_model("residual")
    randomize(ref, seed=seed)  # adaLN gates and the head nonzero: every sublayer contributes
    return ref


def test_names_round_trip_and_labels():
    for name, spec in ZOO.items():
        assert parse_routing(name) == spec and spec.name == name and spec.is_zoo
    assert parse_routing("dwa-k2-p3").label == "DenseFormer 2x3"
    assert parse_routing("laurel-lr-r4").n == 4 and parse_routing("hc-dynamic-n2").variant == "dynamic"
    with pytest.raises(ValueError, match="routing-zoo method"):
        parse_routing("hc-n4")


@pytest.mark.parametrize("routing", ZOO_TINY)
def test_forward_backward_reaches_every_mixing_parameter(routing):
    model = zoo_model(routing)
    randomize(model)
    x, t, y = tiny_batch(model)
    out = model(x, t, y)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    # sublayer 1 of AttnRes attends over v_0 alone: a softmax over one source is constant, its parameters get no gradient
    lone = "routing.aggregators.0." if routing.startswith("attnres") else None
    dead = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad
        and (p.grad is None or (n.startswith("routing.") and not p.grad.any()))
        and not (lone and n.startswith(lone))
    ]
    assert not dead, f"parameters without gradient: {dead}"


@pytest.mark.parametrize("routing", ZOO_TINY)
def test_samples_do_not_mix_across_the_batch(routing):
    # CFG runs [x; x] with labels [y; null] as one batch: each sample's output must depend on that sample alone.
    model = zoo_model(routing).eval()
    randomize(model)
    x, t, y = tiny_batch(model, batch=4)
    with torch.no_grad():
        whole = model(x, t, y)
        parts = torch.cat([model(x[i : i + 1], t[i : i + 1], y[i : i + 1]) for i in range(4)])
        guided = guided_velocity(model, y, scale=1.5)(x, t)
        null = torch.full_like(y, model.null_class)
        cond, uncond = model(x, t, y), model(x, t, null)
    torch.testing.assert_close(whole, parts, rtol=1e-4, atol=1e-5)
    expect = uncond + 1.5 * (cond - uncond)
    torch.testing.assert_close(guided[:, :3], expect[:, :3], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("routing", ["dwa", "dwa-k2-p2", "hc-static-n4", "hc-dynamic-n4", "mhc-n4", "laurel-rw", "laurel-lr-r4"])
def test_starts_as_the_residual_model(routing):
    # DenseFormer (alpha_ii = 1), static HC (A_m one-hot, A_r = I, B = 1), dynamic HC (W = 0), mHC (rows of H_res sum
    # to one, H_pre sums to one, H_post = 1) and LAuReL (alpha = beta = 1; B = 0) are the residual model at init.
    ref = random_backbone()
    model = zoo_model(routing)
    backbone_from(model, ref)
    x, t, y = tiny_batch(model)
    with torch.no_grad():
        want, got = ref(x, t, y), model(x, t, y)
    if routing.startswith("dwa") or routing.startswith("laurel"):
        assert torch.equal(got, want)  # the same ops, weights 1 and 0: bit for bit
    else:
        # HC / mHC: the head reads the sum of n equal copies, n h; SiT's final LayerNorm removes the scale up to its eps
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_hc_and_mhc_start_reading_copy_l_mod_n():
    # HC: A_m = e_{(l-1) mod n}; mHC: H_pre = 1 - eps on copy (l-1) mod n. Equal copies at init hide this from the
    # output check above, so the maps are checked directly.
    from dar.routing.mhc import MHC_PRE_EPS

    hc, mhc = zoo_model("hc-static-n4").routing, zoo_model("mhc-n4").routing
    stream = torch.randn(1, 2, 4, hc.dim)
    for i, (c, m) in enumerate(zip(hc.connections, mhc.connections)):
        assert torch.equal(c.a_m, torch.nn.functional.one_hot(torch.tensor(i % 4), 4).float())
        assert torch.equal(c.a_r, torch.eye(4)) and torch.equal(c.b, torch.ones(4))
        pre, post, _ = m.maps(stream)
        want = torch.full((4,), MHC_PRE_EPS / 3)
        want[i % 4] = 1 - MHC_PRE_EPS
        torch.testing.assert_close(pre[0, 0], want, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(post, torch.ones_like(post))


def test_a_trained_mixing_weight_changes_the_output():
    # the identity checks above compare something that moves: perturb one DWA weight, the output changes
    ref = random_backbone()
    model = zoo_model("dwa")
    backbone_from(model, ref)
    x, t, y = tiny_batch(model)
    with torch.no_grad():
        model.routing.alphas[1][0] = 0.5
        assert not torch.allclose(model(x, t, y), ref(x, t, y))


def test_full_attnres_is_dar_static_c1_with_its_temperature():
    # Same source sets (dense) and dedicated final aggregator; logits w . k (AttnRes) vs q . k / sqrt(d) (DAR).
    ref = random_backbone()
    attn, dar = zoo_model("attnres"), zoo_model("dar-static-c1")
    backbone_from(attn, ref)
    backbone_from(dar, ref)
    x, t, y = tiny_batch(attn)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, t, y), dar(x, t, y), rtol=0, atol=1e-6)  # at init both are uniform
        randomize(dar.routing, seed=3, std=0.5)
        d = attn.hidden_size
        for a, b in zip(
            [*attn.routing.aggregators, attn.routing.final_aggregator], [*dar.routing.aggregators, dar.routing.final_aggregator]
        ):
            a.query.copy_(b.query / d**0.5)  # w_AttnRes = w_DAR / sqrt(d)
            a.norm_weight.copy_(b.norm_weight)
        torch.testing.assert_close(attn(x, t, y), dar(x, t, y), rtol=1e-5, atol=1e-5)
        attn.routing.aggregators[3].query.mul_(d**0.5)  # DAR's parameters without the rescale: a different model
        assert not torch.allclose(attn(x, t, y), dar(x, t, y), atol=1e-4)


def test_block_attnres_stream_by_hand():
    # N = 2 blocks of S = 4 sublayers (depth 4): sublayer l attends over b_0 = v_0, the completed block sums and the
    # running sum of its own block; the head over b_0, b_1, b_2. Written out with the one aggregation (Eq. 5).
    from dar.routing import aggregate
    from dar.routing.attnres import BlockAttnResRouting

    routing = BlockAttnResRouting(6, 4, blocks=2)
    randomize(routing, seed=7, std=0.5)
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(2, 3, 6, generator=g)
    vs = {l: torch.randn(2, 3, 6, generator=g) for l in range(1, 9)}
    stream = routing.start(x0, torch.zeros(2, 6))

    def attend(agg, srcs):
        return aggregate(srcs, agg.query * 6**0.5, agg.norm_weight)

    with torch.no_grad():
        for l in range(1, 9):
            first = 1 if l <= 4 else 5
            done = [x0] + ([sum(vs[i] for i in range(1, 5))] if l > 4 else [])
            partial = [sum(vs[i] for i in range(first, l))] if l > first else []
            torch.testing.assert_close(stream.read(l), attend(routing.aggregators[l - 1], done + partial))
            stream.write(l, vs[l])
        blocks = [x0, sum(vs[i] for i in range(1, 5)), sum(vs[i] for i in range(5, 9))]
        torch.testing.assert_close(stream.read_final(), attend(routing.final_aggregator, blocks))


def test_block_attnres_blocks_hold_whole_sit_blocks():
    from dar.routing.attnres import default_blocks

    assert [default_blocks(d) for d in (8, 12, 24, 28)] == [8, 6, 8, 7]  # the divisor of the depth nearest 8
    assert zoo_model("attnres-block").routing.num_blocks == 4 and parse_routing("attnres-block").name == "attnres-block"
    with pytest.raises(ValueError, match="do not divide the depth 4"):
        zoo_model("attnres-block-n8")


def test_block_attnres_sources_are_block_sums():
    model = zoo_model("attnres-block-n2")  # S = 4 sublayers per block
    randomize(model)
    x, t, y = tiny_batch(model)
    rec = AlphaRecorder()
    with torch.no_grad(), model.routing.observe(rec):
        model(x, t, y)
    assert rec.weights[1][0] == (0,)  # first sublayer: the embedding alone
    assert rec.weights[3][0] == (0, 2)  # b_0 and the partial sum of v_1, v_2
    assert rec.weights[5][0] == (0, 4)  # b_0, b_1 (complete after sublayer 4); block 2's partial empty
    assert rec.weights["final"][0] == (0, 4, 8)
    with pytest.raises(ValueError, match="valid N"):
        zoo_model("attnres-block-n3")
    from dar.config import ConfigError
    from dar.train.config import TrainConfig

    with pytest.raises(ConfigError, match="routing: Block AttnRes: N=3"):  # caught when the config is validated
        TrainConfig(model="SiT-T/2", routing="attnres-block-n3").validate()


def test_dwa_parameter_count_is_the_papers_formula():
    d = 28  # SiT-XL/2 depth
    base = count_params("SiT-XL/2", "residual")
    assert count_params("SiT-XL/2", "dwa") - base == d * (d + 3) // 2  # dense DenseFormer: d (d + 3) / 2 scalars
    k, p = 2, 4
    expect = sum(i // k + 1 for i in range(1, d + 1) if i % p == 0)  # |{j <= i : j = i mod k}| per DWA module
    assert count_params("SiT-XL/2", f"dwa-k{k}-p{p}") - base == expect
    assert dwa_sources(5, 2) == (1, 3, 5) and dwa_sources(4, 1) == (0, 1, 2, 3, 4)


def test_zoo_parameter_counts_follow_their_formulas():
    d, L, depth = 1152, 56, 28
    base = count_params("SiT-XL/2", "residual")
    extra = {r: count_params("SiT-XL/2", r) - base for r in ZOO}
    n = 4
    assert extra["attnres"] == (L + 1) * 2 * d  # pseudo-query and key-norm weight per aggregator
    assert extra["attnres-block"] == (L + 1) * 2 * d
    assert extra["hc-static-n4"] == L * (n * n + 2 * n)  # (n + 1)^2 less the fixed zero
    assert extra["hc-dynamic-n4"] == L * (n * n + 2 * n + d * (n + 2) + 2 + d)
    assert extra["mhc-n4"] == L * (n * d + n * d * (2 * n + n * n) + 3 + 2 * n + n * n)
    assert extra["laurel-rw"] == 2 * L
    assert extra["laurel-lr-r16"] == L * 2 * 16 * d
    assert extra["value-residual"] == 2 * (depth - 1)


def test_sinkhorn_projects_onto_doubly_stochastic_matrices():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 4, 4, generator=g) * 2
    m = sinkhorn(logits)
    assert (m >= 0).all()
    torch.testing.assert_close(m.sum(-2), torch.ones(64, 4), rtol=0, atol=1e-6)  # columns: normalised last
    row_err = (m.sum(-1) - 1).abs().max()
    assert SINKHORN_ITERS == 20 and row_err < 0.05  # rows: within tolerance at the paper's 20 iterations
    assert (sinkhorn(logits, iters=1).sum(-1) - 1).abs().max() > row_err  # fewer iterations, farther
    torch.testing.assert_close(sinkhorn(logits, iters=500).sum(-1), torch.ones(64, 4), rtol=0, atol=1e-5)  # converges


def test_mhc_residual_maps_are_doubly_stochastic_for_a_trained_connection():
    model = zoo_model("mhc-n4")
    randomize(model.routing, seed=2, std=0.3)
    conn = model.routing.connections[3]
    stream = torch.randn(2, 5, 4, model.hidden_size)
    pre, post, res = conn.maps(stream)
    assert (pre > 0).all() and (pre < 1).all() and (post > 0).all() and (post < 2).all()
    torch.testing.assert_close(res.sum(-2), torch.ones(2, 5, 4), rtol=0, atol=1e-5)
    torch.testing.assert_close(res.sum(-1), torch.ones(2, 5, 4), rtol=0, atol=1e-3)


def test_value_residual_mixes_first_layer_values():
    ref = random_backbone()
    model = zoo_model("value-residual")
    backbone_from(model, ref)
    x, t, y = tiny_batch(model)
    with torch.no_grad():
        assert not torch.allclose(model(x, t, y), ref(x, t, y), atol=1e-5)  # lambda = 0.5, 0.5: values averaged
        model.routing.lambdas.copy_(torch.tensor([0.0, 1.0]).expand_as(model.routing.lambdas))
        torch.testing.assert_close(model(x, t, y), ref(x, t, y), rtol=0, atol=1e-6)  # lambda = (0, 1): residual SiT


def test_value_residual_mixer_by_hand():
    # block 1 keeps its values V_1; block b > 1 mixes lambda[b-2, 0] V_1 + lambda[b-2, 1] V_b, each block its own pair
    from dar.routing.value import ValueResidualRouting

    routing = ValueResidualRouting(8, 4)
    with torch.no_grad():
        routing.lambdas.copy_(torch.arange(6.0).view(3, 2) + 1)
    stream = routing.start(torch.zeros(1, 2, 8), torch.zeros(1, 8))
    v1, v = torch.randn(1, 2, 2, 4), torch.randn(1, 2, 2, 4)
    assert torch.equal(stream.value_mixer(1)(v1), v1)
    for block in (2, 3, 4):
        lam = routing.lambdas[block - 2]
        torch.testing.assert_close(stream.value_mixer(2 * block - 1)(v), lam[0] * v1 + lam[1] * v)


@pytest.mark.parametrize("form", ["rw", "lr"])
def test_laurel_update_by_hand(form):
    # RW: x' = alpha_l v + beta_l x; LR: x' = v + x + B_l A_l x, every sublayer with its own parameters
    from dar.routing.laurel import LaurelRouting

    routing = LaurelRouting(8, 2, form=form, rank=3)
    randomize(routing, seed=9, std=0.7)
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(2, 3, 8, generator=g)
    stream, x = routing.start(x0, torch.zeros(2, 8)), x0
    with torch.no_grad():
        for l in range(1, 5):
            torch.testing.assert_close(stream.read(l), x)
            v = torch.randn(2, 3, 8, generator=g)
            stream.write(l, v)
            if form == "rw":
                x = routing.alpha[l - 1] * v + routing.beta[l - 1] * x
            else:
                x = v + x + x @ routing.down[l - 1].T @ routing.up[l - 1].T
        torch.testing.assert_close(stream.read_final(), x)


def test_dwa_observers_see_its_weights():
    model = zoo_model("dwa")
    rec = AlphaRecorder()
    x, t, y = tiny_batch(model)
    with torch.no_grad(), model.routing.observe(rec):
        model(x, t, y)
    sources, alpha = rec.weights[3]  # the read after block 1's DWA: X_0, X_1 = sublayer indices 0, 2
    assert sources == (0, 2) and torch.equal(alpha, torch.tensor([[0.0, 1.0]]).expand(3, 2))
    assert rec.weights["final"][0] == (0, 2, 4, 6, 8)


@pytest.mark.parametrize("routing", ZOO_TINY)
def test_repa_capture_and_bf16(routing):
    model = zoo_model(routing)
    randomize(model)
    x, t, y = tiny_batch(model)
    cap = HiddenCapture(depth=2, model_depth=DEPTH)
    with model.routing.observe(cap):
        out = model(x, t, y)
    assert cap.hidden is not None and cap.hidden.shape == (3, 16, model.hidden_size)
    out.square().mean().backward()
    states = []

    class Keep(Observer):
        def on_read(self, l, h, sources, alpha):
            states.append(h.dtype)

    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad(), model.routing.observe(Keep()):
        low = model(x, t, y)
    assert torch.isfinite(low).all()
    assert set(states) == {torch.float32}, states  # the stream stays fp32 under bf16 autocast, as the residual one
    torch.testing.assert_close(low.float(), out.detach(), rtol=0.1, atol=0.1)


@pytest.mark.parametrize("routing", ["attnres", "hc-dynamic-n4", "mhc-n4", "dwa"])
def test_every_sit_size_builds(routing):
    for name in ("SiT-S/2", "SiT-B/4", "SiT-XL/2"):
        with torch.device("meta"):
            model = build_model(name, routing)
        assert model.routing.num_sublayers == 2 * model.depth


def _hand_hc_maps(conn, H):
    """HC's maps written out (Zhu et al. Sec. 3): static A_m, A_r, B plus s * tanh(H_bar W) when dynamic."""
    if not conn.dynamic:
        return conn.a_m.expand(*H.shape[:2], -1), conn.a_r.expand(*H.shape[:2], -1, -1), conn.b.expand(*H.shape[:2], -1)
    Hb = H * torch.rsqrt(H.pow(2).mean(-1, keepdim=True) + 1e-6) * conn.norm_weight
    a_m = conn.s_a * torch.tanh(torch.einsum("btnd,d->btn", Hb, conn.w_m)) + conn.a_m
    a_r = conn.s_a * torch.tanh(torch.einsum("btjd,di->btji", Hb, conn.w_r)) + conn.a_r
    b = conn.s_b * torch.tanh(torch.einsum("btnd,d->btn", Hb, conn.w_b)) + conn.b
    return a_m, a_r, b


@pytest.mark.parametrize("dynamic", [False, True])
def test_hyper_connection_update_by_hand(dynamic):
    # h = A_m^T H and H' = B^T v + A_r^T H, i.e. h = sum_j A_m[j] H_j and H'_i = B_i v + sum_j A_r[j, i] H_j
    from dar.routing.hyper import HyperRouting

    routing = HyperRouting(8, 2, n=3, dynamic=dynamic)
    randomize(routing, seed=4, std=0.5)
    g = torch.Generator().manual_seed(1)
    stream = routing.start(torch.zeros(2, 5, 8), torch.zeros(2, 8))
    H = torch.randn(2, 5, 3, 8, generator=g)
    stream.H = H
    v = torch.randn(2, 5, 8, generator=g)
    with torch.no_grad():
        a_m, a_r, b = _hand_hc_maps(routing.connections[0], H)
        h = stream.read(1)
        stream.write(1, v)
    for bi in range(2):
        for ti in range(5):
            want_h = sum(a_m[bi, ti, j] * H[bi, ti, j] for j in range(3))
            torch.testing.assert_close(h[bi, ti], want_h, rtol=1e-5, atol=1e-6)
            for i in range(3):
                want = b[bi, ti, i] * v[bi, ti] + sum(a_r[bi, ti, j, i] * H[bi, ti, j] for j in range(3))
                torch.testing.assert_close(stream.H[bi, ti, i], want, rtol=1e-5, atol=1e-6)


def test_mhc_update_by_hand():
    # x_{l+1} = H_res x_l + H_post^T F(H_pre x_l): input sum_j H_pre[j] x_j, copy i gets sum_j H_res[i, j] x_j + H_post[i] v
    from dar.routing.mhc import ManifoldRouting

    routing = ManifoldRouting(8, 2, n=3)
    randomize(routing, seed=6, std=0.3)
    g = torch.Generator().manual_seed(2)
    stream = routing.start(torch.zeros(2, 5, 8), torch.zeros(2, 8))
    x = torch.randn(2, 5, 3, 8, generator=g)
    stream.x = x
    v = torch.randn(2, 5, 8, generator=g)
    conn = routing.connections[0]
    with torch.no_grad():
        flat = x.reshape(2, 5, 24)
        xt = flat * torch.rsqrt(flat.pow(2).mean(-1, keepdim=True) + 1e-6) * conn.norm_weight
        z = xt @ conn.phi
        pre = torch.sigmoid(conn.gates[0] * z[..., :3] + conn.b_pre)
        post = 2 * torch.sigmoid(conn.gates[1] * z[..., 3:6] + conn.b_post)
        res = sinkhorn(conn.gates[2] * z[..., 6:].reshape(2, 5, 3, 3) + conn.b_res)
        h = stream.read(1)
        stream.write(1, v)
    for bi in range(2):
        for ti in range(5):
            torch.testing.assert_close(h[bi, ti], sum(pre[bi, ti, j] * x[bi, ti, j] for j in range(3)), rtol=1e-5, atol=1e-6)
            for i in range(3):
                want = post[bi, ti, i] * v[bi, ti] + sum(res[bi, ti, i, j] * x[bi, ti, j] for j in range(3))
                torch.testing.assert_close(stream.x[bi, ti, i], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dilation, period", [(2, 1), (1, 2), (2, 2)])
def test_dwa_average_by_hand(dilation, period):
    # Y_i = sum_{j in J_i} alpha_{i,j} X_j after blocks i with p | i (else Y_i = X_i), X_j the block outputs
    from dar.routing.denseformer import DWARouting

    routing = DWARouting(4, 4, dilation=dilation, period=period)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for w in routing.alphas:
            w.copy_(torch.randn(w.shape, generator=g))
    x0 = torch.randn(1, 2, 4, generator=g)
    vs = [torch.randn(1, 2, 4, generator=g) for _ in range(8)]
    stream = routing.start(x0, torch.zeros(1, 4))
    X, h = [x0], x0
    modules = iter(routing.alphas)
    with torch.no_grad():
        for i in range(1, 5):  # by hand: block i adds its two sublayer outputs, then the DWA if p | i
            for s in (0, 1):
                torch.testing.assert_close(stream.read(2 * i - 1 + s), h)
                stream.write(2 * i - 1 + s, vs[2 * i - 2 + s])
                h = h + vs[2 * i - 2 + s]
            X.append(h)
            if i % period == 0:
                h = sum(a * X[j] for a, j in zip(next(modules), dwa_sources(i, dilation)))
        torch.testing.assert_close(stream.read_final(), h)
    assert all(x is None for x in stream.x)  # each block output is let go after the last DWA that reads it


@pytest.mark.parametrize("routing", ["hc-static-n4", "hc-dynamic-n4", "mhc-n4"])
def test_multi_stream_routings_show_observers_their_mixing_maps(routing):
    from dar.routing import MixRecorder

    model = zoo_model(routing)
    x, t, y = tiny_batch(model)
    with torch.no_grad(), model.routing.observe(MixRecorder()) as rec:
        model(x, t, y)
    assert sorted(rec.maps) == list(range(1, 2 * DEPTH + 1))
    if routing.startswith("hc"):
        a_m, a_r = rec.maps[3]["A_m"], rec.maps[3]["A_r"]
        want = torch.tensor([0.0, 0.0, 1.0, 0.0])  # sublayer 3 reads copy 2 at init
        torch.testing.assert_close(a_m if a_m.dim() == 1 else a_m[0], want, rtol=0, atol=0 if a_m.dim() == 1 else 1e-6)
        assert a_r.shape[-2:] == (4, 4)
    else:
        res = rec.maps[5]["H_res"]  # [B, 4, 4], token-averaged: doubly stochastic stays doubly stochastic
        torch.testing.assert_close(res.sum(-1), torch.ones(3, 4), rtol=0, atol=1e-5)
        assert rec.maps[5]["H_pre"].shape == (3, 4)
