"""The HTML report: rendered from a hand-made collated table, parsed (not grepped), escaped,
self-contained, and opened in real headless Chromium without console errors."""

from __future__ import annotations

import copy
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from dar import grid as grid_file
from dar.collate import collate
from dar.plan import Plan
from dar.report import render
from dar.report.browser import INSTALL_HINT, Browser, find_chromium

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
EVIL = "SiT <script>alert('x')</script> & co"
# a 1x1 PNG, for a diagnostics figure written by "another job"
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5f1c1"
    "6a0000000049454e44ae426082"
)


# ------------------------------------------------------------- a tiny DOM
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None = None) -> None:
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def text(self) -> str:
        return " ".join(" ".join(c.text() if isinstance(c, Node) else c for c in self.children).split())

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [n for n in self.iter() if (tag is None or n.tag == tag) and all(n.attrs.get(k) == v for k, v in want.items())]

    def find(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, **attrs)
        assert len(found) == 1, f"expected one <{tag} {attrs}>, found {len(found)}"
        return found[0]

    def cls(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = self.cur = Node("#document", {})

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs}, self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_endtag(self, tag):
        n = self.cur
        while n is not self.root and n.tag != tag:
            n = n.parent
        if n is not self.root:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse(path: Path) -> Node:
    b = TreeBuilder()
    b.feed(path.read_text(encoding="utf-8"))
    return b.root


# ---------------------------------------------------------------- fixtures
def write_preset(tmp_path: Path, mutate) -> Path:
    data = copy.deepcopy(yaml.safe_load(grid_file.locate("smoke")[0]))
    data["name"] = "handmade"
    data["runs"]["skip"] = {"routing": "skip", "iterations": 10, "label": "U-ViT skip (ours)"}
    data["tables"] = {
        "table1": {"runs": ["sit", "static-c4", "skip"], "samplers": ["ode"], "cfg": [False, True]},
        "table2": {"runs": ["static-c4"], "iterations": [5, 10]},
        "fig1b": {"runs": ["sit", "static-c4"], "iterations": [5, 10]},
    }
    data["diagnostics"] = {"runs": ["sit", "static-c4"], "probe_run": "static-c4", "num_samples": 8, "t_grid": 3}
    mutate(data)
    path = tmp_path / "handmade.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def paper_scale(d: dict) -> None:
    d.update(scale="imagenet256", paper_iteration_scale=1)
    d["evaluation"]["features"] = "inception"
    d["seeds"] = [0, 1, 2]
    d["runs"]["sit"]["label"] = EVIL


def set_done(df, name: str, table: str = "table1", n: int = 1, feature_space: str = "inception", **metrics) -> None:
    """Fill one row the way `python -m dar collate` writes a finished cell."""
    i = df.index[(df["table"] == table) & (df["name"] == name)][0]
    df.loc[i, ["status", "command", "feature_space", "n_seeds"]] = ["done", None, feature_space, n]
    for m, (ours, std, paper, delta) in metrics.items():
        df.loc[i, [m, f"{m}_std", f"paper_{m}", f"delta_{m}"]] = [ours, std, paper, delta]


def handmade_table(grid: Plan):
    """Every cell pending (as collate writes them), then four hand-made rows."""
    df = collate(grid)
    for col in (
        "feature_space",
        "n_seeds",
        "fid",
        "fid_std",
        "paper_fid",
        "delta_fid",
        "sfid",
        "sfid_std",
        "paper_sfid",
        "delta_sfid",
    ):
        df[col] = None
    df = df.astype({"status": object, "command": object, "feature_space": object})
    # a cell with a paper value: FID 10.00 vs the paper's 9.67 (Table 1, SiT, ODE, w/o guidance)
    set_done(df, "sit_ode_cfg1.0", fid=(10.0, 0.0, 9.67, 10.0 - 9.67))
    # a multi-seed cell: FID 2.50 +- 0.10 over 3 seeds vs 2.08; sFID 6.00 vs 4.42 is outside tolerance
    set_done(df, "static-c4_ode_cfg1.5", n=3, fid=(2.5, 0.1, 2.08, 2.5 - 2.08), sfid=(6.0, 0.2, 4.42, 6.0 - 4.42))
    # a cell the paper does not give (our own skip baseline)
    set_done(df, "skip_ode_cfg1.0", fid=(12.0, 0.0, None, None))
    # a Fig. 1b point, so the figure has something to draw
    set_done(df, "sit_it5_ode_cfg1.0", table="fig1b", fid=(30.0, 0.0, None, None))
    return df


def diagnostics_fig3(grid: Plan) -> None:
    d = grid.root / "diagnostics"
    d.mkdir(parents=True, exist_ok=True)
    fig3 = {"figure": "fig3", "title": "Fig. 3: source mixing across t", "paper": {"source": "Sec. 3 / Fig. 3"}}
    fig3["summary"] = ["SiT: importance varies with t", "Static c4: alpha concentrates <b>sharply</b>"]
    (d / "fig3.json").write_text(json.dumps(fig3))
    (d / "fig3.png").write_bytes(PNG_1X1)


@pytest.fixture(scope="module")
def paper_page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    grid = Plan.load(str(write_preset(tmp, paper_scale)), results=tmp / "results")
    df = handmade_table(grid)
    grid.table_path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(grid.table_path, index=False)
    diagnostics_fig3(grid)
    out = tmp / "reports" / "handmade" / "index.html"
    landing = tmp / "reports" / "index.html"
    args = [
        "--preset",
        str(tmp / "handmade.yaml"),
        "--results",
        str(tmp / "results"),
        "--out",
        str(out),
        "--landing",
        str(landing),
    ]
    rc = render.main(args)
    assert rc == 0
    return out, grid


def cell(doc: Node, name: str, metric: str, table: str = "table1") -> Node:
    return doc.find("td", data_table=table, data_cell=name, data_metric=metric)


def span(td: Node, cls: str) -> str:
    found = [n for n in td.find_all("span") if cls in n.cls()]
    return found[0].text() if found else ""


# ------------------------------------------------------------------- tests
def test_cell_with_a_paper_value_shows_ours_paper_and_signed_delta(paper_page):
    doc = parse(paper_page[0])
    td = cell(doc, "sit_ode_cfg1.0", "fid")
    assert td.attrs["data-status"] == "done"
    assert float(td.attrs["data-ours"]) == 10.0 and float(td.attrs["data-paper"]) == 9.67
    assert float(td.attrs["data-delta"]) == pytest.approx(0.33)
    assert span(td, "ours") == "10.00" and span(td, "paper") == "paper 9.67" and span(td, "delta") == "Δ +0.33"
    assert "within" in td.cls() and float(td.attrs["data-tolerance"]) == pytest.approx(0.967)  # 10% of 9.67 > 0.5


def test_claims_section_comes_first_with_a_verdict_per_claim(paper_page):
    from dar.claims import CLAIMS

    doc = parse(paper_page[0])
    sections = [n.attrs.get("id") for n in doc.iter() if n.tag == "section"]
    assert sections[0] == "claims"
    section = doc.find("section", id="claims")
    assert "the paper's numbers stand beside ours" in section.text()
    for claim in CLAIMS:
        rows = section.find_all("tr", **{"class": f"claim-{claim.key}"})
        assert rows, claim.key
        verdict = next(td for td in rows[0].find_all("td") if "verdict" in td.cls())
        assert verdict.text() in {"holds", "does not hold", "inconclusive", "no data"}
    # the hand-made table has no cell JSONs: the comparisons say what makes them
    faster = section.find_all("tr", **{"class": "claim-better-and-faster"})[0]
    assert "no data" in faster.text() and "snakemake" in faster.text()


def test_claims_section_shows_a_judged_comparison(tmp_path):
    grid = Plan.load(str(write_preset(tmp_path, paper_scale)), results=tmp_path / "results")
    grid.table_path.parent.mkdir(parents=True, exist_ok=True)
    handmade_table(grid).to_csv(grid.table_path, index=False)  # the page's tables; the claims read the cell JSONs
    for c in grid.cells:  # Fig. 1b: Static c4 lower than SiT on every seed, by different amounts
        if c.table == "fig1b":
            fid = [20.0, 21.0, 22.0] if c.run == "sit" else [10.0, 12.0, 11.0]
            c.path.parent.mkdir(parents=True, exist_ok=True)
            res = {"table": c.table, "name": c.name, "fingerprint": c.fingerprint, "seeds": [0, 1, 2], "paper": {},
                   "metrics": {"fid": {"values": fid}}}  # fmt: skip
            c.path.write_text(json.dumps(res))
    out = tmp_path / "page.html"
    assert render.main(["--preset", str(tmp_path / "handmade.yaml"), "--results", str(tmp_path / "results"),
                        "--out", str(out), "--landing", "none"]) == 0  # fmt: skip
    section = parse(out).find("section", id="claims")
    judged = [td for td in section.find_all("td") if "v-holds" in td.cls()]
    assert len(judged) == 2 and all("-10" in td.text() and "n = 3" in td.text() for td in judged)


def test_cell_without_a_paper_value_is_marked_not_reported(paper_page):
    td = cell(parse(paper_page[0]), "skip_ode_cfg1.0", "fid")
    assert span(td, "ours") == "12.00" and span(td, "paper") == "paper n/r"
    assert td.attrs["data-paper"] == "" and td.attrs["data-delta"] == "" and span(td, "delta") == ""


def test_pending_cell_links_to_its_exact_snakemake_command(paper_page):
    out, grid = paper_page
    doc = parse(out)
    td = cell(doc, "sit_ode_cfg1.5", "fid")
    assert td.attrs["data-status"] == "pending" and td.attrs["data-ours"] == ""
    assert span(td, "paper") == "paper 2.15"  # the paper's value is still shown
    link = td.find("a")
    assert link.attrs["href"] == "#cmd-table1-sit_ode_cfg1.5"
    item = doc.find("li", id="cmd-table1-sit_ode_cfg1.5")
    path = grid.root / "cells" / "table1" / "sit_ode_cfg1.5.json"
    assert item.find("code").text() == grid.rerun_command(path)
    assert grid.rerun_command(path) == f"snakemake {path} --cores 2 --config preset={grid.preset_arg} results={grid.results}"


def test_multi_seed_cell_shows_mean_std_and_n_and_flags_a_miss(paper_page):
    doc = parse(paper_page[0])
    fid = cell(doc, "static-c4_ode_cfg1.5", "fid")
    assert span(fid, "ours") == "2.50 ± 0.10" and span(fid, "n") == "n = 3" and fid.attrs["data-n"] == "3"
    assert span(fid, "delta") == "Δ +0.42" and "within" in fid.cls()  # tolerance max(0.208, 0.5)
    sfid = cell(doc, "static-c4_ode_cfg1.5", "sfid")
    assert span(sfid, "delta") == "Δ +1.58" and "outside" in sfid.cls() and sfid.attrs["data-verdict"] == "outside"


def test_table1_layout_groups_and_quoted_rows(paper_page):
    doc = parse(paper_page[0])
    table = doc.find("table", id="table1-table")
    head = [th.text() for th in table.find_all("th")]
    assert head[:3] == ["Method", "Iters.", "Params"]
    assert "w/o guidance" in head and "w/ guidance (w = 1.5)" in head
    assert head.count("FID↓") == 2 and head.count("Rec.↑") == 2
    rows = table.find_all("tr", data_run_label="DiT")
    assert [r.find("sub").text() for r in rows] == ["ODE", "SDE"] and all(r.attrs["class"] == "quoted" for r in rows)
    quoted = [td for td in rows[0].find_all("td") if "m" in td.cls()]
    assert all(td.attrs["data-status"] == "quoted" and td.attrs["data-ours"] == "" for td in quoted)
    assert quoted[0].text() == "10.58"
    # a paper row this preset does not run: the paper's numbers, ours absent
    plus = table.find_all("tr", data_run_label="SiT-Plus")
    assert len(plus) == 2 and {td.attrs["data-status"] for r in plus for td in r.find_all("td") if "m" in td.cls()} == {"absent"}


def test_header_states_scale_features_and_progress(paper_page):
    doc = parse(paper_page[0])
    assert "imagenet256" in doc.find("div", id="fact-scale").text()
    assert "Inception" in doc.find("div", id="fact-features").text()
    assert doc.find("span", id="cells-done").text() == "4"
    assert doc.find("span", id="cells-total").text() == str(len(paper_page[1].cells))
    tol = {
        tr.find_all("td")[0].text(): tr.find_all("td")[1].text() for tr in doc.find("table", id="tolerances").find_all("tr")[1:]
    }
    assert tol["FID↓"] == "±10% of the paper's value or ±0.5, whichever is larger"


def test_every_string_is_escaped(paper_page):
    out, _ = paper_page
    source = out.read_text()
    doc = parse(out)
    assert not doc.find_all("script")
    assert "<script>alert" not in source and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co" in source
    rows = doc.find("table", id="table1-table").find_all("tr", data_run_label=EVIL)
    assert rows and rows[0].find_all("td")[0].text().startswith(EVIL)


def test_page_is_self_contained(paper_page):
    doc = parse(paper_page[0])
    refs = [n.attrs.get("src") or n.attrs.get("href") for n in doc.iter() if n.attrs.get("src") or n.attrs.get("href")]
    assert refs and all(r.startswith(("data:", "#")) for r in refs), [r[:60] for r in refs if not r.startswith(("data:", "#"))]


def test_figure_slots_fill_or_say_what_produces_them(paper_page):
    out, grid = paper_page
    doc = parse(out)
    fig1b = doc.find("div", data_slot="fig1b")
    assert fig1b.attrs["data-filled"] == "yes" and fig1b.find("img").attrs["src"].startswith("data:image/png;base64,")
    fig3 = doc.find("div", data_slot="fig3")
    assert fig3.attrs["data-filled"] == "yes" and "source mixing across t" in fig3.find("h3").text()
    assert fig3.find("img").attrs["src"].startswith("data:image/png;base64,")
    lines = [li.text() for li in fig3.find("ul").find_all("li")]
    assert lines == ["SiT: importance varies with t", "Static c4: alpha concentrates <b>sharply</b>"]  # escaped, not markup
    assert "Paper: Sec. 3 / Fig. 3" in fig3.text()
    for key in ("fig2", "fig5", "chunk_theory", "fig6", "loss"):
        slot = doc.find("div", data_slot=key)
        assert slot.attrs["data-filled"] == "no" and not slot.find_all("img")
    want = grid.rerun_command(grid.root / "diagnostics" / "fig2.json")
    assert want in [c.text() for c in doc.find("div", data_slot="fig2").find_all("code")]


def test_landing_page_links_the_preset(paper_page):
    out, _ = paper_page
    doc = parse(out.parent.parent / "index.html")
    link = doc.find("table", id="presets").find("a")
    assert link.attrs["href"] == "handmade/index.html" and link.text() == "handmade"


def test_digits_scale_has_no_delta_and_never_says_inception_fid(tmp_path):
    grid = Plan.load(str(write_preset(tmp_path, lambda d: d.pop("diagnostics"))), results=tmp_path / "results")
    df = handmade_table(grid)
    set_done(df, "sit_ode_cfg1.0", feature_space="digits", fid=(550.0, 0.0, 9.67, None))
    df.to_csv(tmp_path / "table.csv", index=False)
    out = render.render(grid, tmp_path / "digits.html", table=tmp_path / "table.csv")
    doc = parse(out)
    td = cell(doc, "sit_ode_cfg1.0", "fid")
    assert span(td, "ours") == "550.00" and span(td, "paper") == "paper 9.67" and span(td, "delta") == ""
    assert "not comparable" in td.attrs["title"] and "none" in td.cls()
    assert doc.find("p", id="scale-warning")
    assert "not Inception" in doc.find("div", id="fact-features").text()
    assert "Inception FID" not in doc.text()
    # no diagnostics section in this preset: the slot says so instead of offering a command that cannot run
    fig2 = doc.find("div", data_slot="fig2")
    assert fig2.attrs["data-filled"] == "no" and "has no diagnostics section" in fig2.text()
    assert not [c for c in fig2.find_all("code") if c.text().startswith("snakemake")]


def test_missing_collated_table_degrades_to_pending(tmp_path):
    grid = Plan.load(str(write_preset(tmp_path, lambda d: None)), results=tmp_path / "results")
    out = render.render(grid, tmp_path / "empty.html")
    doc = parse(out)
    assert doc.find("span", id="cells-done").text() == "0"
    assert {td.attrs["data-status"] for td in doc.find_all("td", data_table="table2")} == {"pending"}
    assert doc.find("p", id="samples-empty")


def test_cells_the_collated_table_lacks_are_collated_at_render_time(tmp_path):
    grid = Plan.load(str(write_preset(tmp_path, lambda d: None)), results=tmp_path / "results")
    df = handmade_table(grid)
    df[df["table"] == "table1"].to_csv(tmp_path / "old.csv", index=False)  # written before the grid grew
    doc = parse(render.render(grid, tmp_path / "old.html", table=tmp_path / "old.csv"))
    assert span(cell(doc, "sit_ode_cfg1.0", "fid"), "ours") == "10.00"
    assert {td.attrs["data-status"] for td in doc.find_all("td", data_table="table2")} == {"pending"}


def test_labels_with_dollar_signs_are_drawn_as_written(tmp_path):
    """A run label is user text: matplotlib must not parse '$...$' in it as mathtext (it crashed the report)."""
    grid = Plan.load(
        str(write_preset(tmp_path, lambda d: d["runs"]["sit"].update(label=r"SiT $\alpha$ and $\notacommand{"))),
        results=tmp_path / "results",
    )
    df = handmade_table(grid)
    run = grid.runs[("sit", 0)]
    run.dir.mkdir(parents=True)
    (run.dir / "metrics.jsonl").write_text('{"step": 5, "loss": 1.0}\n{"step": 10, "loss": 0.5}\n')
    doc = parse(render.render(grid, tmp_path / "dollar.html", table=_csv(df, tmp_path)))
    for key in ("fig1b", "loss"):
        assert doc.find("div", data_slot=key).attrs["data-filled"] == "yes", key


def _csv(df, tmp_path):
    df.to_csv(tmp_path / "t.csv", index=False)
    return tmp_path / "t.csv"


def test_bad_tolerance_override_is_an_error(tmp_path, capsys):
    preset = write_preset(tmp_path, lambda d: d["evaluation"].update(tolerance={"fdi": {"abs": 1}}))
    rc = render.main(
        ["--preset", str(preset), "--results", str(tmp_path / "r"), "--out", str(tmp_path / "x.html"), "--landing", "none"]
    )
    assert rc == 2 and "evaluation.tolerance.fdi" in capsys.readouterr().err


@pytest.mark.skipif(find_chromium() is None, reason=f"chromium is not installed ({INSTALL_HINT})")
def test_page_loads_in_headless_chromium_without_console_errors(paper_page):
    out, _ = paper_page
    shot = ARTIFACTS / "report-handmade.png"
    with Browser() as b:
        canary = out.parent / "canary.html"  # the error capture must see errors, or its silence means nothing
        canary.write_text('<!doctype html><title>c</title><script>console.error("canary")</script><img src="missing.png">')
        seen = b.open(canary)
        assert any("canary" in e for e in seen.errors) and any("missing.png" in e for e in seen.errors)
        page = b.open(out, screenshot=shot, full_page=True)
    assert page.errors == []
    assert page.title.startswith("DAR reproduction report: handmade")
    assert all(u.startswith(("file:", "data:")) for u in page.requests), page.requests
    assert shot.stat().st_size > 10_000 and page.size[1] > 2000


def test_cost_table_reads_benchmark_records_and_sets_the_plan_beside_them(tmp_path):
    """GPU-hours from each record's resources; the training rows carry the compute plan's wall time (from
    run-bench's measured step times) beside the spent one."""
    import json
    import os

    from test_jobcost import write

    grid = Plan.load(str(write_preset(tmp_path, lambda d: None)), results=tmp_path / "results")
    run = grid.runs[("sit", 0)]
    name = f"sit_{run.dir.name}"
    write(grid.benchmarks_dir, "train", name, 7200.0, 4000.0, end=1e9, resources={"cluster": "slurm", "gpus": 8, "nodes": 2})
    write(grid.benchmarks_dir, "report", "report", 5.0, 500.0, end=1e9 + 10)
    rows = [{"model": r.model, "routing": r.routing, "batch": 16, "images_per_s": 16.0} for r in grid.runs.values()]
    grid.run_bench.parent.mkdir(parents=True, exist_ok=True)
    grid.run_bench.write_text(json.dumps({"steps": rows, "environment": {"device": "cpu"}}))
    doc = parse(render.render(grid, tmp_path / "cost.html", table=_csv(handmade_table(grid), tmp_path)))
    jobs = {
        tr.find_all("td")[1].text(): [td.text() for td in tr.find_all("td")]
        for tr in doc.find("table", id="jobs").find_all("tr")[1:]
    }
    train = jobs[name]
    # 2 h on 16 GPUs = 32 GPU-hours; planned: 10 steps x (16 / 16 img/s) = 10 s on one CPU process
    assert train[0] == "train" and train[3] == "2 h 00 min" and train[4] == "10.0 s" and train[6:] == ["slurm", "16", "32.00"]
    assert jobs["report"][4] == "" and jobs["report"][7:] == ["0", "0.00"]
    assert "its step times: measured: run-bench.json, batch 16 on cpu" in (tmp_path / "cost.html").read_text()
    os.remove(grid.run_bench)
    html = render.render(grid, tmp_path / "cost2.html", table=_csv(handmade_table(grid), tmp_path)).read_text()
    assert "python -m dar run-bench --preset" in html  # no plan at digits scale without a measurement: the command
