"""The claims: paired comparisons built from the plan's cells, diagnostic thresholds, and what a missing,
stale or broken file says instead of a crash."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from dar import claims, grid, stats
from dar.config import to_dict
from dar.diagnostics.flow import early_blocks
from dar.plan import Plan

SEEDS = [0, 1, 2]
SIT = {5: [80.0, 90.0, 70.0], 10: [60.0, 65.0, 55.0]}


def load_plan(tmp_path, mutate=None):
    data = copy.deepcopy(yaml.safe_load(grid.locate("smoke")[0]))
    data["seeds"] = SEEDS
    if mutate:
        mutate(data)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    return Plan.load(str(path), results=tmp_path / "results")


@pytest.fixture
def plan(tmp_path):
    return load_plan(tmp_path)


def cell(plan, table, run, iteration=None, sampler="ode", cfg=False):
    (c,) = [c for c in plan.cells if (c.table, c.run, c.sampler, c.cfg) == (table, run, sampler, cfg)
            and iteration in (None, c.iteration)]  # fmt: skip
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


def claim(result, key="better-and-faster"):
    return next(c for c in result["claims"] if c["key"] == key)


def fig1b_comparisons(result):
    return [c for c in claim(result)["comparisons"] if c["table"] == "fig1b"]


def test_seeds_pair_runs_same_data_order_and_sampling_noise(plan):
    for seed in SEEDS:
        assert {plan.runs[(name, seed)].config.seed for name in plan.run_defs} == {seed}
    for c in plan.cells:
        assert [s.config.seed for s in c.samples] == list(c.seeds) == SEEDS


def test_one_comparison_per_matched_iteration_at_a_bonferroni_confidence(plan):
    fig1b(plan, SIT, {it: [v - 10 - k for k, v in enumerate(vals)] for it, vals in SIT.items()})
    comps = fig1b_comparisons(claims.evaluate(plan))
    assert [c["iterations"] for c in comps] == [[5, 5], [10, 10]]
    assert comps[0]["effect"]["differences"] == pytest.approx([-10, -11, -12]) and comps[0]["seeds"] == SEEDS
    assert all(c["verdict"] == stats.HOLDS for c in comps)
    # smoke's claim has 2 Table 1 pairs (ODE with and without guidance) and 2 Fig. 1b pairs: k = 4
    assert comps[0]["effect"]["confidence"] == pytest.approx(1 - 0.05 / 4)


def test_a_loss_at_one_iteration_is_not_averaged_away(plan):
    # a large gain at iteration 5 and a consistent loss at 10: the mean over cells favours Static c4, the claim fails
    fig1b(plan, SIT, {5: [v - 30 + k for k, v in enumerate(SIT[5])], 10: [v + 5 + k / 10 for k, v in enumerate(SIT[10])]})
    comps = fig1b_comparisons(claims.evaluate(plan))
    assert [c["verdict"] for c in comps] == [stats.HOLDS, stats.FAILS]
    assert claims.stats.combine([c["verdict"] for c in comps]) == stats.FAILS


def test_seed_noise_larger_than_the_gain_is_inconclusive(plan):
    fig1b(plan, SIT, {it: [v + d for v, d in zip(vals, (-20, 18, -1))] for it, vals in SIT.items()})
    assert {c["verdict"] for c in fig1b_comparisons(claims.evaluate(plan))} == {stats.INCONCLUSIVE}


def test_a_missing_stale_or_broken_cell_says_no_data_with_the_command(plan):
    fig1b(plan, SIT, SIT)
    stale = cell(plan, "fig1b", "static-c4", 10)
    write(stale, [1.0, 2.0, 3.0], fingerprint="made-under-another-config")
    nan = cell(plan, "fig1b", "static-c4", 5)
    write(nan, [1.0, float("nan"), 3.0])
    result = claims.evaluate(plan)
    first, second = fig1b_comparisons(result)
    assert first["verdict"] == second["verdict"] == stats.NO_DATA
    assert "not one finite value per seed" in first["needs"] and str(nan.path) in first["needs"]
    assert "snakemake" in second["needs"] and str(stale.path) in second["needs"] and "--force" in second["needs"]
    assert claim(result)["verdict"] == stats.NO_DATA  # table1 cells are missing too
    stale.path.write_text("[1, 2]")  # valid JSON, not a cell
    assert fig1b_comparisons(claims.evaluate(plan))[1]["verdict"] == stats.NO_DATA


def test_unmatched_pairs_compare_each_run_at_its_final_iteration(tmp_path):
    def table1(d):
        d["runs"]["sit-plus"] = {"routing": "residual", "iterations": 10, "model": "SiT-TPlus/2", "label": "SiT-Plus"}
        d["runs"]["dynamic-c4"] = {"routing": "dar-dynamic-c4", "iterations": 5, "label": "Dynamic c4"}
        d["tables"]["table1"]["runs"] = ["sit", "sit-plus", "static-c4", "dynamic-c4"]

    plan = load_plan(tmp_path, table1)
    for cfg, shift in ((False, -3.0), (True, 1.0)):
        write(cell(plan, "table1", "dynamic-c4", cfg=cfg), [10 + shift + k * 0.1 for k in range(3)], paper={"fid": 8.07})
        write(cell(plan, "table1", "sit-plus", cfg=cfg), [10.0, 10.0, 10.0], paper={"fid": 10.85})
    comps = claim(claims.evaluate(plan), "not-parameters")["comparisons"]
    assert [(c["iterations"], c["cfg"]) for c in comps] == [([5, 10], False), ([5, 10], True)]
    assert [c["verdict"] for c in comps] == [stats.HOLDS, stats.FAILS]
    assert comps[0]["paper_effect"] == pytest.approx(8.07 - 10.85)


def test_iterations_to_match_interpolates_between_milestones(plan):
    # SiT's last Fig. 1b point (iteration 10) scores 50; Static c4 scores 60 at 5 and 40 at 10: reached at 7.5
    fig1b(plan, {5: [70.0] * 3, 10: [50.0] * 3}, {5: [60.0, 45.0, 70.0], 10: [40.0, 40.0, 55.0]})
    m = claim(claims.evaluate(plan))["iterations_to_match"]
    assert m["fast_iterations_to_match"] == [7.5, 5.0, None] and m["speedup"][:2] == pytest.approx([10 / 7.5, 2.0])
    assert m["at_most"] == [False, True, False]  # reached at the first milestone: a bound, not a value
    assert m["speedup"][2] is None and m["slow_iteration"] == 10 and m["fast_last_iteration"] == 10


def fig2_result(base, dar):
    def at(rms, grad, cos):
        return {"at_t": {"rms": rms, "grad_rms": grad, "cos": cos}}

    return {"ours": {"baseline": at(*base), "dar": at(*dar)}}


def test_fig2_thresholds_on_worked_cases():
    assert early_blocks(4) == 1
    paper_like = ([1, 2, 4, 8], [40, 1, 1, 1], [0.5, 0.8, 0.95, 0.97])
    flat = ([1, 1.1, 1.2, 1.3], [2, 1, 1, 1], [0.5, 0.5, 0.5, 0.6])
    r = fig2_result(paper_like, flat)
    residual = claims.fig2_residual_checks(r)
    assert [c["value"] for c in residual] == pytest.approx([1, 8, 40, 0.95])
    assert claims.diagnostic_verdict("fig2-residual", residual) == stats.HOLDS
    assert claims.diagnostic_verdict("fig2-dar", claims.fig2_dar_checks(r)) == stats.HOLDS
    # a barely trained model: monotone but 1.03x inflation and a 1.003 gradient ratio do not make the symptoms
    weak = fig2_result(([1, 1.01, 1.02, 1.03], [1.003, 1, 1, 1], [0.5, 0.5, 0.95, 0.99]), flat)
    assert claims.diagnostic_verdict("fig2-residual", claims.fig2_residual_checks(weak)) == stats.INCONCLUSIVE
    none = fig2_result(([2, 1, 1.5, 1], [1, 1, 1, 1], [0.5, 0.5, 0.5, 0.5]), flat)
    assert claims.diagnostic_verdict("fig2-residual", claims.fig2_residual_checks(none)) == stats.FAILS


def test_fig5_and_fig3_thresholds():
    def fig5(attn, mlp, xt=0.8, pooled=0.6):
        return {"ours": {"attn": attn, "mlp": mlp, "xt": xt, "xt_pooled": pooled}}

    ok = fig5([0.6, 0.97, 0.99, 0.99], [0.96, 0.98, 0.99, 0.995])  # block 1 ties pooled x_t by construction
    assert claims.diagnostic_verdict("fig5", claims.fig5_checks(ok)) == stats.HOLDS
    # an overfit flattened probe (R^2 < 0) must not become the baseline: the pooled one is better
    pooled_wins = claims.fig5_checks(fig5([0.6, 0.7, 0.97, 0.99], [0.6, 0.7, 0.97, 0.99], xt=-1.0, pooled=0.75))
    assert pooled_wins[0]["value"] == 2 and not pooled_wins[0]["ok"]
    low = fig5([0.5, 0.6, 0.7, 0.7], [0.5, 0.6, 0.7, 0.7])
    assert claims.diagnostic_verdict("fig5", claims.fig5_checks(low)) == stats.FAILS

    def fig3(first, last):
        return {"ours": {"baseline": {"layers": {"5": {"values": [[a, 0.0, b] for a, b in zip(first, last)]}}}}}

    swapped = claims.fig3_checks(fig3([-3, -2, -1, 0], [0, -1, -2, -3]))
    assert swapped[0]["value"] == pytest.approx(-1) and claims.diagnostic_verdict("fig3", swapped) == stats.HOLDS
    same = claims.fig3_checks(fig3([-3, -2, -1, 0], [-6, -4, -2, 0]))
    assert same[0]["value"] == pytest.approx(1) and claims.diagnostic_verdict("fig3", same) == stats.FAILS


def test_diagnostics_missing_broken_partial_or_stale_say_no_data(plan):
    diag = plan.diagnostics["fig5"]
    assert "snakemake" in claims.judge_diagnostic(plan, "fig5")["needs"]  # missing
    diag.path.parent.mkdir(parents=True, exist_ok=True)
    diag.path.write_text("{not json")
    assert claims.judge_diagnostic(plan, "fig5")["verdict"] == stats.NO_DATA
    good = {"config": to_dict(diag.config), "ours": {"attn": [0.6, 0.97], "mlp": [0.96, 0.98], "xt": 0.8, "xt_pooled": 0.6}}
    diag.path.write_text(json.dumps({**good, "ours": {"attn": [0.9]}}))  # partial
    partial = claims.judge_diagnostic(plan, "fig5")
    assert partial["verdict"] == stats.NO_DATA and "--force" in partial["needs"] and "lacks" in partial["needs"]
    diag.path.write_text(json.dumps({**good, "config": {**good["config"], "num_samples": 1}}))  # stale
    stale = claims.judge_diagnostic(plan, "fig5")
    assert stale["verdict"] == stats.NO_DATA and "stale" in stale["needs"]
    diag.path.write_text(json.dumps(good))
    judged = claims.judge_diagnostic(plan, "fig5")
    assert judged["verdict"] == stats.HOLDS and len(judged["checks"]) == 3


def test_claims_cli_and_the_report_rows(plan, tmp_path, capsys):
    from dar.report import verdicts

    fig1b(plan, SIT, {it: [v - 10 - k for k, v in enumerate(vals)] for it, vals in SIT.items()})
    out = tmp_path / "claims.json"
    assert claims.main(["--preset", plan.preset.source, "--results", str(plan.results), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [c["key"] for c in result["claims"]] == [c.key for c in claims.CLAIMS] and result["version"] == claims.VERSION
    assert result["scale"] == "digits" and "digits scale" in result["scale_note"] and result["seeds"] == SEEDS
    assert "no data" in capsys.readouterr().out
    _, rows, source = verdicts.load(plan, out)
    assert source == str(out)
    fig1b_lines = [line for line in rows[0]["lines"] if "fig1b" in line["text"]]
    assert fig1b_lines[0]["effect"].startswith("-11 [") and "(98.8%, n = 3)" in fig1b_lines[0]["effect"]
    assert fig1b_lines[0]["css"] == "holds"
    table2 = next(r for r in rows if r["key"] == "timestep-awareness")  # smoke's Table 2 has Static c4 only
    assert table2["verdict"] == stats.NO_DATA and "table2 cells of both runs" in table2["lines"][0]["needs"]
    # an old or broken claims.json is judged afresh instead of breaking the page
    out.write_text(json.dumps({**result, "version": 1, "claims": [{"kind": "paired"}]}))
    assert verdicts.load(plan, out)[2].startswith("judged at render time")
    out.write_text(json.dumps({**result, "claims": [{"kind": "paired"}]}))
    assert verdicts.load(plan, out)[2].startswith("judged at render time")
