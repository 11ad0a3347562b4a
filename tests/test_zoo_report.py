"""The zoo presets compile (digits and paper scale), and the report's Routing zoo section reads their cells:
FID with t-intervals over seeds, paired differences to the residual baseline with their verdicts, params,
FLOPs and measured step times."""

from __future__ import annotations

import json

import pytest

from dar import stats
from dar.plan import Plan
from dar.report import zoo


@pytest.fixture
def plan(tmp_path):
    return Plan.load("zoo", results=tmp_path / "results")


def write(c, values):
    """A done cell as dar.cell writes it (the fields the claims, the collated table and the zoo read)."""
    from dar.collate import METRICS

    c.path.parent.mkdir(parents=True, exist_ok=True)
    mean = sum(values) / len(values)
    metrics = {m: {"values": values, "mean": mean, "std": 0.0} for m in METRICS}
    res = {
        "fingerprint": c.fingerprint, "seeds": list(c.seeds), "metrics": metrics, "label": c.label,
        "table": c.table, "name": c.name,
        "routing": "", "feature_space": "digits", "paper": {}, "delta": {}, "protocols": [{}], "git_commit": "x",
    }  # fmt: skip
    c.path.write_text(json.dumps(res))


def test_the_zoo_grid_has_every_method_at_matched_iterations(plan):
    from dar.routing import ZOO

    routings = {plan.run_defs[r].routing for r in plan.tables["zoo"].runs}
    assert set(ZOO) <= routings and "residual" in routings and "dar-static-c4" in routings
    assert len({plan.run_defs[r].iterations for r in plan.tables["zoo"].runs}) == 1  # matched iterations
    assert plan.seeds == (0, 1, 2) or list(plan.seeds) == [0, 1, 2]
    ctrl = plan.train_config("mhc-match", 0)
    assert ctrl.routing == "residual" and ctrl.width_match == "mhc-n4"
    # the control trains in its own folder: width_match is part of its identity
    assert plan.runs[("mhc-match", 0)].fingerprint != plan.runs[("sit", 0)].fingerprint


def test_section_reports_intervals_paired_effects_and_verdicts(plan):
    last = max(plan.tables["zoo"].iterations)
    cells = {(c.run, c.iteration): c for c in plan.cells if c.table == "zoo"}
    write(cells[("sit", last)], [50.0, 54.0, 46.0])
    write(cells[("attnres", last)], [40.0, 45.0, 35.0])  # 10 lower on every seed: holds
    write(cells[("dwa", last)], [60.0, 64.5, 55.5])  # 10, 10.5, 9.5 higher: does not hold
    write(cells[("mhc", last)], [49.0, 56.0, 45.0])  # -1, +2, -1: inconclusive
    rows = {m.run: m for m in zoo.methods(plan)}
    mean, half, n = rows["sit"].fid[last]
    assert (mean, n) == (50.0, 3) and half == pytest.approx(stats.t_quantile(0.975, 2) * 4 / 3**0.5)
    assert rows["attnres"].verdict == stats.HOLDS and rows["attnres"].effect["mean"] == -10.0
    k = len(plan.tables["zoo"].runs) - 1
    assert rows["attnres"].effect["confidence"] == pytest.approx(1 - 0.05 / k)  # Bonferroni over the methods
    assert rows["dwa"].verdict == stats.FAILS and rows["mhc"].verdict == stats.INCONCLUSIVE
    assert rows["hc-static"].verdict == stats.NO_DATA and rows["hc-static"].fid == {}
    assert rows["mhc"].extra_params > 0.01 and rows["mhc-match"].width == 68
    assert abs(rows["mhc-match"].params - rows["mhc"].params) < abs(rows["sit"].params - rows["mhc"].params)
    section = zoo.section(plan, None)
    row = {r["label"]: r for r in section["rows"]}["AttnRes"]
    assert row["verdict"] == "holds" and row["fid"][-1].startswith("40.0 ±") and row["effect"].startswith("-10.0 [")
    assert "zoo_fid" in section["images"] and "zoo_compute" not in section["images"]  # no step times measured yet


def test_step_times_come_from_run_bench_relative_to_the_baseline(plan):
    steps = [
        {"model": "SiT-T/2", "routing": "residual", "sec_per_step": 0.02},
        {"model": "SiT-T/2", "routing": "mhc-n4", "sec_per_step": 0.05},
        {"model": "SiT-T/2", "routing": "residual", "width_match": "mhc-n4", "hidden_size": 68, "sec_per_step": 0.03},
    ]
    plan.run_bench.parent.mkdir(parents=True, exist_ok=True)
    plan.run_bench.write_text(json.dumps({"steps": steps}))
    rows = {m.run: m for m in zoo.methods(plan)}
    assert rows["mhc"].step_ratio == pytest.approx(2.5) and rows["mhc"].step_source == "run-bench"
    assert rows["sit"].step_ratio == 1.0 and rows["dwa"].step_ratio is None  # not measured: no ratio
    assert rows["mhc-match"].step_ratio == pytest.approx(1.5)  # the control's own row, not the residual's


def test_the_report_renders_the_zoo_section(plan, tmp_path):
    from dar.report.render import render

    last = max(plan.tables["zoo"].iterations)
    for c in plan.cells:
        if c.table == "zoo" and c.iteration == last and c.run in ("sit", "static-c4"):
            write(c, [30.0, 31.0, 29.0] if c.run == "sit" else [25.0, 27.0, 26.0])
    page = render(plan, tmp_path / "index.html", figures_dir=tmp_path / "figures").read_text()
    assert 'id="routing-zoo"' in page and 'id="zoo-methods"' in page and "hc-dynamic-n4" in page
    assert "width 68" in page
    assert (tmp_path / "figures" / "zoo_fid.png").is_file()


def test_digits_report_has_no_zoo_section(tmp_path):
    assert zoo.section(Plan.load("digits", results=tmp_path / "r"), None) is None
