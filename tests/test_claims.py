"""The claims: paired comparisons built from the plan's cells, diagnostic thresholds, and what a missing cell says."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from dar import claims, grid, stats
from dar.diagnostics.flow import early_blocks
from dar.plan import Plan

SEEDS = [0, 1, 2]


@pytest.fixture
def plan(tmp_path):
    data = copy.deepcopy(yaml.safe_load(grid.locate("smoke")[0]))
    data["seeds"] = SEEDS
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    return Plan.load(str(path), results=tmp_path / "results")


def cell(plan, table, run, iteration):
    (c,) = [c for c in plan.cells if (c.table, c.run, c.iteration, c.sampler, c.cfg) == (table, run, iteration, "ode", False)]
    return c


def write(c, values, fingerprint=None, paper=None):
    c.path.parent.mkdir(parents=True, exist_ok=True)
    res = {"fingerprint": fingerprint or c.fingerprint, "seeds": list(c.seeds), "paper": paper or {},
           "metrics": {"fid": {"values": values, "mean": sum(values) / len(values)}}}  # fmt: skip
    c.path.write_text(json.dumps(res))


def fig1b(plan, sit, static):
    for it in (5, 10):
        write(cell(plan, "fig1b", "sit", it), sit[it])
        write(cell(plan, "fig1b", "static-c4", it), static[it])


def faster(result):
    (c,) = [c for c in result["claims"] if c["key"] == "faster-convergence"]
    return c


def test_seeds_pair_runs_same_data_order_and_sampling_noise(plan):
    for seed in SEEDS:
        assert {plan.runs[(name, seed)].config.seed for name in plan.run_defs} == {seed}
    for c in plan.cells:
        assert [s.config.seed for s in c.samples] == list(c.seeds) == SEEDS


def test_a_consistent_paired_gain_holds_and_its_reverse_fails(plan):
    sit = {5: [80.0, 90.0, 70.0], 10: [60.0, 65.0, 55.0]}
    fig1b(plan, sit, {it: [v - 10 - k for k, v in enumerate(vals)] for it, vals in sit.items()})
    comp = faster(claims.evaluate(plan))["comparisons"][0]
    # per seed, the mean over iterations 5 and 10: differences -10, -11, -12
    assert comp["effect"]["differences"] == pytest.approx([-10, -11, -12]) and comp["effect"]["n"] == 3
    assert comp["verdict"] == stats.HOLDS and comp["seeds"] == SEEDS
    fig1b(plan, sit, {it: [v + 10 + k for k, v in enumerate(vals)] for it, vals in sit.items()})
    assert faster(claims.evaluate(plan))["verdict"] == stats.FAILS


def test_seed_noise_larger_than_the_gain_is_inconclusive(plan):
    sit = {5: [80.0, 90.0, 70.0], 10: [60.0, 65.0, 55.0]}
    fig1b(plan, sit, {it: [v + d for v, d in zip(vals, (-20, 18, -1))] for it, vals in sit.items()})
    assert faster(claims.evaluate(plan))["verdict"] == stats.INCONCLUSIVE


def test_a_missing_or_stale_cell_says_no_data_with_the_command(plan):
    sit = {5: [80.0, 90.0, 70.0], 10: [60.0, 65.0, 55.0]}
    fig1b(plan, sit, sit)
    write(cell(plan, "fig1b", "static-c4", 10), [1.0, 2.0, 3.0], fingerprint="made-under-another-config")
    comp = faster(claims.evaluate(plan))["comparisons"][0]
    assert comp["verdict"] == stats.NO_DATA and "snakemake" in comp["needs"]
    assert str(cell(plan, "fig1b", "static-c4", 10).path) in comp["needs"]


def test_iterations_to_match_interpolates_between_milestones(plan):
    # SiT's last Fig. 1b point (iteration 10) scores 50; Static c4 scores 60 at 5 and 40 at 10: reached at 7.5
    fig1b(plan, {5: [70.0] * 3, 10: [50.0] * 3}, {5: [60.0, 45.0, 70.0], 10: [40.0, 40.0, 55.0]})
    m = faster(claims.evaluate(plan))["iterations_to_match"]
    assert m["fast_iterations_to_match"] == [7.5, 5.0, None] and m["speedup"][:2] == pytest.approx([10 / 7.5, 2.0])
    assert m["speedup"][2] is None and m["slow_iteration"] == 10 and m["fast_last_iteration"] == 10


def fig2_result(base_rms, base_grad, base_cos, dar_rms, dar_cos):
    def at(rms, grad, cos):
        return {"at_t": {"rms": rms, "grad_rms": grad, "cos": cos}}

    return {"ours": {"baseline": at(base_rms, base_grad, base_cos), "dar": at(dar_rms, [1.0] * len(dar_rms), dar_cos)}}


def test_fig2_thresholds_on_a_worked_case():
    assert early_blocks(4) == 1
    held = fig2_result([1, 2, 4, 8], [4, 1, 1, 1], [0.5, 0.8, 0.95, 0.97], [1, 1, 1, 1], [0.5, 0.5, 0.5, 0.6])
    checks = claims.fig2_checks(held)
    assert [c["value"] for c in checks] == pytest.approx([8, 4, 0.96, 1, 0.55])
    assert claims.diagnostic_verdict("fig2", checks) == stats.HOLDS
    flat = fig2_result([1, 1, 1, 1], [1, 1, 1, 1], [0.5, 0.5, 0.5, 0.5], [1, 2, 3, 4], [0.9, 0.9, 0.9, 0.9])
    assert claims.diagnostic_verdict("fig2", claims.fig2_checks(flat)) == stats.FAILS


def test_fig5_and_fig3_thresholds():
    ok = {"ours": {"attn": [0.95, 0.97, 0.99, 0.99], "mlp": [0.96, 0.98, 0.99, 0.995], "xt": 0.8}}
    assert claims.diagnostic_verdict("fig5", claims.fig5_checks(ok)) == stats.HOLDS
    low = {"ours": {"attn": [0.5, 0.6, 0.7, 0.7], "mlp": [0.5, 0.6, 0.7, 0.7], "xt": 0.8}}
    assert claims.diagnostic_verdict("fig5", claims.fig5_checks(low)) == stats.FAILS

    def fig3(first, last):
        return {"ours": {"baseline": {"layers": {"5": {"values": [[a, 0.0, b] for a, b in zip(first, last)]}}}}}

    swapped = claims.fig3_checks(fig3([-3, -2, -1, 0], [0, -1, -2, -3]))
    assert swapped[0]["value"] == pytest.approx(-1) and claims.diagnostic_verdict("fig3", swapped) == stats.HOLDS
    same = claims.fig3_checks(fig3([-3, -2, -1, 0], [-6, -4, -2, 0]))
    assert same[0]["value"] == pytest.approx(1) and claims.diagnostic_verdict("fig3", same) == stats.FAILS


def test_claims_cli_and_the_report_section(plan, tmp_path, capsys):
    from dar.report import verdicts

    sit = {5: [80.0, 90.0, 70.0], 10: [60.0, 65.0, 55.0]}
    fig1b(plan, sit, {it: [v - 10 - k for k, v in enumerate(vals)] for it, vals in sit.items()})
    out = tmp_path / "claims.json"
    assert claims.main(["--preset", plan.preset.source, "--results", str(plan.results), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [c["key"] for c in result["claims"]] == [c.key for c in claims.CLAIMS]
    assert result["scale"] == "digits" and "digits scale" in result["scale_note"] and result["seeds"] == SEEDS
    assert "holds" in capsys.readouterr().out
    rows = verdicts.rows(plan, result)
    first = rows[0]["lines"][0]
    assert rows[0]["css"] == "holds" and first["effect"].startswith("-11 [") and "(n = 3)" in first["effect"]
    table2 = next(r for r in rows if r["key"] == "timestep-awareness")  # smoke's Table 2 has Static c4 only
    assert table2["verdict"] == stats.NO_DATA and "table2 cells of both runs" in table2["lines"][0]["needs"]
