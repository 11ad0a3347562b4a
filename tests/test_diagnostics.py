"""Diagnostics (Figs. 2, 3, 5, chunk-size theory): known answers on hand-made models, the job, the workflow rules."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from conftest import randomize, tiny_batch, tiny_model
from dar import grid
from dar.diagnostics import chunk_theory, flow, importance, probe
from dar.diagnostics.job import main as diagnose_main
from dar.diagnostics.pairs import Pairs, t_grid
from dar.grid import GridError
from dar.plan import Plan
from dar.routing.residual import ResidualRouting

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# A hand-made block stack on the routing interface
# ---------------------------------------------------------------------------


class ToyStack(nn.Module):
    """Tokens are pixels (D = C); v_0 = scale * tokens of x_t; sublayer l writes a_l * h_l; the head returns the final read.

    Linear and tiny, so every statistic has a closed form. `scale` (= 1) is a parameter only so that autograd
    reaches the block outputs.
    """

    def __init__(self, a: list[float], channels: int = 2) -> None:
        super().__init__()
        self.a = a
        self.depth = len(a) // 2
        self.scale = nn.Parameter(torch.ones(()))
        self.routing = ResidualRouting(channels, self.depth)

    def forward(self, x, t, y):
        B, C, H, W = x.shape
        h0 = self.scale * x.flatten(2).transpose(1, 2)  # [B, HW, C]
        stream = self.routing.start(h0, torch.zeros(B, C))
        for l in range(1, 2 * self.depth + 1):
            stream.write(l, self.a[l - 1] * stream.read(l))
        return stream.read_final().transpose(1, 2).reshape(B, C, H, W)


def random_pairs(n: int, shape=(2, 3, 3), seed: int = 0) -> Pairs:
    g = torch.Generator().manual_seed(seed)
    return Pairs(
        x1=torch.randn(n, *shape, generator=g), x0=torch.randn(n, *shape, generator=g), y=torch.zeros(n, dtype=torch.long)
    )


def tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


# ---------------------------------------------------------------------------
# Fig. 2: flow statistics
# ---------------------------------------------------------------------------


def test_rms_and_cosine_of_known_fields():
    assert torch.allclose(flow.token_rms(torch.full((2, 3, 8), -3.0)), torch.full((2, 3), 3.0))
    z = torch.randn(2, 5, 8)
    assert torch.allclose(flow.token_cosine(z, 4.0 * z), torch.ones(2, 5))
    assert torch.allclose(flow.token_cosine(z, -z), -torch.ones(2, 5))


def test_identical_consecutive_blocks_give_cosine_one_and_constant_rms():
    model = ToyStack([0.0] * 6, channels=2)  # every sublayer writes 0: z_1 = z_2 = z_3 = v_0
    pairs = random_pairs(5)
    pairs.x1.fill_(2.0)
    pairs.x0.fill_(-2.0)  # x_t = 4t - 2: a constant field of RMS |4t - 2|
    s = flow.flow_stats(model, pairs, [0.0, 0.25, 1.0], batch_size=2, device="cpu")
    for i, t in enumerate(s["t"]):
        assert s["rms"][i] == pytest.approx([abs(4 * t - 2)] * 3, abs=1e-6)
        assert s["cos"][i] == pytest.approx([1.0, 1.0], abs=1e-6)


def test_untrained_sit_blocks_are_identical():
    """adaLN-Zero: every block of a fresh SiT writes zeros, so all z_k equal v_0 (cos 1, equal RMS)."""
    model = tiny_model("residual")
    pairs = random_pairs(4, shape=(4, 8, 8))
    s = flow.flow_stats(model, pairs, [0.5], batch_size=4, device="cpu")
    with torch.no_grad():
        v0 = model.x_embedder(next(pairs.batches(0.5, 4, "cpu"))[0]) + model.pos_embed
    assert s["cos"][0] == pytest.approx([1.0] * (model.depth - 1), abs=1e-6)
    assert s["rms"][0] == pytest.approx([flow.token_rms(v0).mean().item()] * model.depth, rel=1e-5)


def test_gradient_rms_matches_the_closed_form_and_not_the_batch_size():
    model = ToyStack([0.0] * 4, channels=2)  # output = z_2 = v_0 = x_t tokens, and dz_2/dz_1 = I
    pairs = random_pairs(7)
    ts = [0.0, 0.3, 1.0]
    a = flow.flow_stats(model, pairs, ts, batch_size=3, device="cpu")
    b = flow.flow_stats(model, pairs, ts, batch_size=7, device="cpu")
    P = pairs.x1[0].numel()
    for i, t in enumerate(ts):
        xt = t * pairs.x1 + (1 - t) * pairs.x0
        ut = pairs.x1 - pairs.x0
        grad = 2 * (tokens(xt) - tokens(ut)) / (len(pairs) * P)  # dL/d output, L = mean over pairs and dims
        expected = flow.token_rms(grad).mean().item()
        assert a["grad_rms"][i] == pytest.approx([expected, expected], rel=1e-5)
        assert a["grad_rms"][i] == pytest.approx(b["grad_rms"][i], rel=1e-6)
        assert a["loss"][i] == pytest.approx(((xt - ut) ** 2).mean().item(), rel=1e-6)


def test_at_t_and_early_blocks():
    stats = {"t": [0.0, 0.5, 1.0], "loss": [1, 2, 3], "rms": [[1], [2], [3]], "grad_rms": [[1], [2], [3]], "cos": [[], [], []]}
    assert flow.at_t(stats, 1.0)["rms"] == [3] and flow.at_t(stats, 0.1)["t"] == 0.0
    assert flow.early_blocks(28) == 5 and flow.early_blocks(8) == 1


# ---------------------------------------------------------------------------
# Fig. 3: measurement-only gates and routing weights
# ---------------------------------------------------------------------------


def test_gated_forward_is_bitwise_identical_to_the_residual_forward():
    model = tiny_model("residual")
    randomize(model, seed=3)
    x, t, y = tiny_batch(model, batch=3)
    with torch.no_grad():
        plain = model(x, t, y)
    original = model.routing
    with importance.gated_residual(model) as routing:
        gated = model(x, t, y)
        assert set(routing.gates) == {*range(1, 5), "final"}
        assert all(bool((g == 1).all()) and g.requires_grad for g in routing.gates.values())
    assert model.routing is original
    assert torch.equal(plain, gated.detach())
    assert torch.equal(plain.view(torch.int32), gated.detach().view(torch.int32))  # bit for bit


def test_gates_refuse_non_residual_models():
    with pytest.raises(ValueError, match="residual baseline"), importance.gated_residual(tiny_model("dar-static-c2")):
        pass


def test_gate_gradients_equal_the_analytic_ones_on_a_two_block_toy():
    a = [0.5, -0.3, 0.8, 0.2]  # two blocks, four linear sublayers v_l = a_l h_l
    model = ToyStack(a, channels=2)
    pairs = random_pairs(5)
    ts = [0.2, 0.9]
    got = importance.gate_gradients(model, pairs, ts, batch_size=2, device="cpu")
    P, N, L = pairs.x1[0].numel(), len(pairs), len(a)
    for j, t in enumerate(ts):
        xt = tokens(t * pairs.x1 + (1 - t) * pairs.x0)
        ut = tokens(pairs.x1 - pairs.x0)
        v = [xt]  # forward: h_l = v_0 + ... + v_{l-1}, v_l = a_l h_l, head input = v_0 + ... + v_L
        for l in range(1, L + 1):
            v.append(a[l - 1] * sum(v[:l]))
        out = sum(v)
        lam_final = 2 * (out - ut) / (N * P)  # dL/d(head input)
        lam = {}  # dL/dh_l by hand: v_l feeds every later sublayer and the head
        for l in range(L, 0, -1):
            lam[l] = a[l - 1] * (lam_final + sum(lam[k] for k in range(l + 1, L + 1)))
        for l in range(1, L + 1):
            for i in range(l):
                want = (lam[l] * v[i]).sum().item()
                assert got["layers"][str(l)]["values"][i][j] == pytest.approx(want, rel=1e-5, abs=1e-9)
        for i in range(L + 1):
            assert got["layers"]["final"]["values"][i][j] == pytest.approx((lam_final * v[i]).sum().item(), rel=1e-5)
    # closed form for the last sublayer: lam_4 = a_4 lam_final, so dL/dg_{i->4} = a_4 dL/dg_{i->head}
    g4, gf = np.asarray(got["layers"]["4"]["values"]), np.asarray(got["layers"]["final"]["values"])
    assert np.allclose(g4, a[3] * gf[:4], rtol=1e-5)
    again = importance.gate_gradients(model, pairs, ts, batch_size=5, device="cpu")  # batch-size independent
    assert np.allclose(again["layers"]["2"]["values"], got["layers"]["2"]["values"], rtol=1e-6)


def test_untrained_static_dar_routes_uniformly():
    model = tiny_model("dar-static-c2")  # zero-init queries: alpha = 1 / |S_l| everywhere
    pairs = random_pairs(3, shape=(4, 8, 8))
    got = importance.routing_weights(model, pairs, [0.0, 1.0], batch_size=2, device="cpu")
    for key, m in got["layers"].items():
        n = len(m["sources"])
        assert np.allclose(m["values"], 1.0 / n), key
    assert got["layers"]["3"]["sources"] == [0, 2]  # chunk 2 of S = 2: c_0, c_1
    assert importance.default_layers(56) == [15, 55] and importance.default_layers(16) == [5, 15]


# ---------------------------------------------------------------------------
# Fig. 5: ridge probe
# ---------------------------------------------------------------------------


def test_ridge_from_moments_equals_sklearn():
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    g = torch.Generator().manual_seed(0)
    X = torch.randn(300, 6, generator=g, dtype=torch.float64) * torch.tensor([1, 10, 0.1, 1, 5, 2.0]) + 50
    X[:, 3] = 7.0  # a constant feature (std 0)
    y = X[:, 0] * 0.3 - X[:, 1] * 0.05 + torch.randn(300, generator=g, dtype=torch.float64)
    test = torch.zeros(300, dtype=torch.bool)
    test[::4] = True
    p = probe.RidgeProbe()
    for s in range(0, 300, 64):  # accumulated over batches
        p.add(X[s : s + 64], y[s : s + 64], test[s : s + 64])
    ref = make_pipeline(StandardScaler(), Ridge(alpha=3.0)).fit(X[~test].numpy(), y[~test].numpy())
    assert p.r2(3.0) == pytest.approx(r2_score(y[test].numpy(), ref.predict(X[test].numpy())), abs=1e-9)
    assert p.r2(3.0, "train") == pytest.approx(r2_score(y[~test].numpy(), ref.predict(X[~test].numpy())), abs=1e-9)


def probe_on(features_of_t, pairs=40, ts=11, seed=0) -> float:
    g = torch.Generator().manual_seed(seed)
    test = probe.pair_split(pairs, 0.25, seed)
    p = probe.RidgeProbe()
    for t in t_grid(ts):
        tt = torch.full((pairs,), t)
        p.add(features_of_t(tt, g), tt, test)
    return p.r2(1.0)


def test_probe_r2_is_one_on_a_linear_feature_and_zero_on_noise():
    def linear_feature(t, g):  # [3t + small noise, pure noise]
        return torch.stack([3 * t + 0.01 * torch.randn(t.shape, generator=g), torch.randn(t.shape, generator=g)], 1)

    linear = probe_on(linear_feature)
    noise = probe_on(lambda t, g: torch.randn(t.shape[0], 4, generator=g))
    assert linear > 0.999
    assert abs(noise) < 0.1


def test_pair_split_is_disjoint_and_deterministic():
    a, b = probe.pair_split(40, 0.25, seed=1), probe.pair_split(40, 0.25, seed=1)
    assert torch.equal(a, b) and int(a.sum()) == 10
    assert not torch.equal(a, probe.pair_split(40, 0.25, seed=2))
    with pytest.raises(ValueError):
        probe.pair_split(1, 0.5)


def test_timestep_probe_on_a_tiny_sit():
    model = tiny_model("dar-dynamic-c2")
    randomize(model, seed=1, std=0.05)
    pairs = random_pairs(12, shape=(4, 8, 8))
    r = probe.timestep_probe(model, pairs, t_grid(4), batch_size=5, device="cpu", test_fraction=0.25)
    assert r["blocks"] == [1, 2] and len(r["attn"]) == len(r["mlp"]) == len(r["mlp_query_input"]) == 2
    assert r["num_test_pairs"] == 3 and r["features"] == {"aggregated": 32, "xt": 256, "xt_pooled": 16}
    assert all(math.isfinite(v) and v <= 1 for v in [*r["attn"], *r["mlp"], r["xt"], r["xt_pooled"]])
    assert probe.patch_pool(torch.ones(2, 4, 8, 8), 2).shape == (2, 16)


# ---------------------------------------------------------------------------
# Chunk-size theory
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("L", [8, 16, 56, 200])
@pytest.mark.parametrize("alpha", [0.1, 0.4, 0.55, 0.7, 0.9])
def test_closed_form_minimiser_matches_numeric_minimisation(L, alpha):
    s = chunk_theory.s_star(L, alpha)
    assert chunk_theory.numeric_minimiser(L, alpha) == pytest.approx(s, abs=1e-5)
    below, above = np.linspace(0.05 * s, s, 50), np.linspace(s, L, 50)
    assert np.all(np.diff(chunk_theory.cost(below, L, alpha)) < 0)  # Proposition 1: decreasing, then increasing
    assert np.all(np.diff(chunk_theory.cost(above, L, alpha)) > 0)


def test_paper_band_for_sit_xl():
    """L = 56: the paper quotes S* in [3.7, 4.9] for alpha in [0.4, 0.7]. Eq. 9 gives 4.90 at alpha = 0.4 (the upper
    end agrees) but 3.14 at alpha = 0.7; the quoted lower end 3.7 is S* at alpha = 0.6. S = 4 lies in both bands."""
    lo, hi = chunk_theory.band(56, 0.4, 0.7)
    assert round(hi, 1) == 4.9 and round(lo, 2) == 3.14
    assert [round(v, 1) for v in chunk_theory.band(56, 0.4, 0.6)] == [3.7, 4.9]
    assert lo < 4 < hi
    with pytest.raises(ValueError):
        chunk_theory.s_star(56, 1.0)


def test_theory_reads_table4_cells():
    cells = [
        {
            "routing": f"dar-static-c{s}",
            "run": f"static-c{s}",
            "iteration": 300,
            "metrics": {"fid": {"mean": f, "std": 0.0, "n": 1}},
        }
        for s, f in ((8, 12.0), (1, 11.0), (4, 10.0))
    ]
    cells.append({"routing": "residual", "run": "sit", "metrics": {"fid": {"mean": 20.0}}})
    r = chunk_theory.theory(16, (0.4, 0.7), cells)
    assert [m["chunk"] for m in r["measured"]] == [1, 4, 8] and r["measured"][1]["fid"] == 10.0
    assert r["valid_chunk_sizes"] == [1, 2, 4, 8, 16] and r["best_valid_chunk"]["0.4"] == 2
    assert any("best S = 4" in line for line in chunk_theory.summarize(r))


# ---------------------------------------------------------------------------
# The plan's diagnostics and the job
# ---------------------------------------------------------------------------


def plan_from(tmp_path, preset: str, mutate=None) -> Plan:
    data = copy.deepcopy(yaml.safe_load(grid.locate(preset)[0]))
    if mutate:
        mutate(data)
    path = tmp_path / f"{preset}.yaml"
    path.write_text(yaml.safe_dump(data))
    return Plan.load(str(path))


def test_diagnostics_of_the_presets(tmp_path):
    smoke = plan_from(tmp_path, "smoke")
    assert [d.path.name for d in smoke.diagnostics.values()] == ["fig2.json", "fig3.json", "fig5.json", "chunk_theory.json"]
    fig2 = smoke.diagnostics["fig2"].config
    sit, static = smoke.runs[("sit", 0)], smoke.runs[("static-c4", 0)]
    assert fig2.baseline == str(sit.checkpoint(10)) and fig2.dar == str(static.checkpoint(10))
    assert fig2.baseline.endswith("step_0000010.pt") and f"seed0-{sit.fingerprint}" in fig2.baseline
    assert smoke.diagnostics["fig5"].config.probe == str(static.checkpoint(10))
    assert smoke.diagnostics["chunk_theory"].inputs == () and smoke.diagnostics["chunk_theory"].config.cells == []
    digits = Plan.load("digits")
    fig3 = digits.diagnostics["fig3"].config
    assert fig3.baseline.endswith("step_0000600.pt") and fig3.dar.endswith("step_0000600.pt")
    assert str(digits.runs[("dynamic-c4", 0)].done) in digits.diagnostics["fig5"].needs
    assert len(digits.diagnostics["chunk_theory"].inputs) == 3
    paper = Plan.load("imagenet256")
    assert paper.diagnostics["chunk_theory"].config.model == "SiT-XL/2"
    assert paper.diagnostics["fig2"].config.baseline.endswith("step_0600000.pt")
    # the diagnostics iteration becomes a milestone of both runs, so their checkpoints are kept
    odd = plan_from(tmp_path, "smoke", lambda d: d["diagnostics"].update(iteration=7))
    assert 7 in odd.runs[("sit", 0)].milestones and odd.diagnostics["fig2"].config.dar.endswith("step_0000007.pt")


def test_bad_diagnostics_sections(tmp_path):
    with pytest.raises(GridError, match=r"diagnostics\.probe_run: run 'dynamic-c4' is not defined"):
        plan_from(tmp_path, "smoke", lambda d: d["diagnostics"].update(probe_run="dynamic-c4"))
    with pytest.raises(GridError, match=r"diagnostics\.iteration: 70 is past the length of run 'sit'"):
        plan_from(tmp_path, "smoke", lambda d: d["diagnostics"].update(iteration=70))
    assert plan_from(tmp_path, "smoke", lambda d: d.pop("diagnostics")).diagnostics == {}
    with pytest.raises(GridError, match="diagnostics"):
        plan_from(tmp_path, "smoke", lambda d: d["diagnostics"].update(num_pairs=3))  # unknown key: schema error


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits latent cache and 2-iteration SiT-T/2 checkpoints (residual, static c4)."""
    from dar.data.cache import CacheConfig
    from dar.data.cache import run as cache_run
    from dar.train import TrainConfig, train

    root = tmp_path_factory.mktemp("diagnostics")
    cache_run(CacheConfig(dataset="digits", out=str(root / "lat")))  # format 2: records the data's identity
    ckpts = {}
    for routing in ("residual", "dar-static-c4"):
        cfg = TrainConfig(
            data=str(root / "lat"),
            out=str(root / "runs" / routing / "seed0"),
            model="SiT-T/2",
            routing=routing,
            global_batch=8,
            iterations=2,
            milestones=[2],
            ckpt_every=2,
            log_every=1,
            precision="fp32",
            device="cpu",
        )
        train(cfg)
        ckpts[routing] = root / "runs" / routing / "seed0" / "checkpoints" / "step_0000002.pt"
    return root, ckpts


def test_job_writes_each_figure(trained, tmp_path, capsys):
    root, ckpts = trained
    common = ["--data", str(root / "lat"), "--num-samples", "8", "--t-grid", "3", "--batch-size", "8", "--device", "cpu"]
    pair = ["--baseline", str(ckpts["residual"]), "--dar", str(ckpts["dar-static-c4"])]
    for figure, models in (("fig2", pair), ("fig3", pair), ("fig5", ["--probe", str(ckpts["dar-static-c4"])])):
        out = tmp_path / f"{figure}.json"
        assert diagnose_main(["--figure", figure, *models, *common, "--out", str(out)]) == 0
        r = json.loads(out.read_text())
        assert {"figure", "title", "paper", "ours", "runs", "protocol", "summary", "environment"} <= set(r)
        assert r["figure"] == figure and r["summary"] and out.with_suffix(".png").stat().st_size > 10_000
    r2 = json.loads((tmp_path / "fig2.json").read_text())
    assert set(r2["ours"]) == {"baseline", "dar"} and len(r2["ours"]["dar"]["at_t"]["rms"]) == 8
    assert r2["protocol"]["t_reference"] == 1.0 and r2["protocol"]["t_grid"] == [0.0, 0.5, 1.0]
    assert r2["runs"]["dar"]["run"] == "dar-static-c4" and r2["runs"]["baseline"]["iteration"] == 2
    r3 = json.loads((tmp_path / "fig3.json").read_text())
    assert r3["ours"]["baseline"]["kind"] == "gate_gradient" and r3["protocol"]["layers"] == [5, 15]
    assert np.asarray(r3["ours"]["dar"]["layers"]["15"]["values"]).shape == (6, 3)
    r5 = json.loads((tmp_path / "fig5.json").read_text())
    assert len(r5["ours"]["attn"]) == 8 and r5["ours"]["num_test_pairs"] == 2
    assert "[diagnose] wrote" in capsys.readouterr().out


def test_zoo_flow_measures_every_checkpoint_like_fig2(trained, tmp_path):
    root, ckpts = trained
    common = ["--data", str(root / "lat"), "--num-samples", "8", "--t-grid", "3", "--batch-size", "8", "--device", "cpu"]
    pair = ["--baseline", str(ckpts["residual"]), "--dar", str(ckpts["dar-static-c4"])]
    assert diagnose_main(["--figure", "fig2", *pair, *common, "--out", str(tmp_path / "fig2.json")]) == 0
    models = ["--checkpoints", f"{ckpts['residual']},{ckpts['dar-static-c4']}", "--labels", "SiT,DAR"]
    assert diagnose_main(["--figure", "zoo_flow", *models, *common, "--out", str(tmp_path / "zoo.json")]) == 0
    fig2, zoo = (json.loads((tmp_path / f).read_text()) for f in ("fig2.json", "zoo.json"))
    assert [m["label"] for m in zoo["ours"]["methods"]] == ["SiT", "DAR"] and len(zoo["summary"]) == 2
    for m, role in zip(zoo["ours"]["methods"], ("baseline", "dar")):  # the same pairs and statistics as Fig. 2's
        for key in ("rms", "grad_rms", "cos"):
            np.testing.assert_allclose(m[key], fig2["ours"][role]["at_t"][key], rtol=1e-6)
    assert (tmp_path / "zoo.png").stat().st_size > 10_000
    assert diagnose_main(["--figure", "zoo_flow", *common, "--out", str(tmp_path / "x.json")]) == 2  # no checkpoints


def test_job_chunk_theory_and_errors(tmp_path, capsys):
    out = tmp_path / "ct.json"
    assert (
        diagnose_main(
            ["--figure", "chunk_theory", "--model", "SiT-XL/2", "--cells", str(tmp_path / "none.json"), "--out", str(out)]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert r["ours"]["num_sublayers"] == 56 and r["paper"]["s_star_band"] == [3.7, 4.9]
    assert r["protocol"]["cells_missing"] == [str(tmp_path / "none.json")] and out.with_suffix(".png").is_file()
    assert diagnose_main(["--figure", "fig2", "--baseline", str(tmp_path / "nope.pt"), "--data", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert diagnose_main(["--figure", "fig4"]) == 2
    assert diagnose_main(["--figure", "fig5", "--data", "x"]) == 2
    assert "needs a checkpoint" in capsys.readouterr().err
    assert diagnose_main(["--figure", "chunk_theory"]) == 2


@pytest.mark.slow
def test_diagnostics_rules_on_the_smoke_preset(tmp_path):
    res = tmp_path / "results"
    wanted = [res / "smoke" / "diagnostics" / f"{f}.json" for f in ("fig2", "fig3", "fig5", "chunk_theory")]
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", *map(str, wanted), "--cores", "2", "--config", "preset=smoke", f"results={res}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for path in wanted:
        r = json.loads(path.read_text())
        assert r["figure"] == path.stem and r["summary"]
        assert path.with_suffix(".png").stat().st_size > 10_000
    fig2 = json.loads(wanted[0].read_text())
    assert fig2["runs"]["baseline"]["run"] == "sit" and fig2["runs"]["dar"]["run"] == "static-c4"
    assert fig2["protocol"]["num_samples"] == 64 and len(fig2["protocol"]["t_grid"]) == 5
    assert "[diagnose]" in (res / "smoke" / "logs" / "diagnostics_fig5.log").read_text()
