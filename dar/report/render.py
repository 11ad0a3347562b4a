"""`python -m dar report`: render the HTML report of a preset.

    python -m dar report --preset digits            # reports/digits/index.html, and reports/index.html
    python -m dar report --preset smoke --screenshot /tmp/report-smoke.png

Layout: one self-contained page per preset, reports/<preset>/index.html (figures embedded
as data: URIs, no external resource, opens from the file system), and reports/index.html,
a list of every preset page under reports/ with its scale and progress. The page is
driven by the collated table results/<preset>/table.csv (`python -m dar collate`); when
that does not exist yet, the cell JSONs are collated at render time, so a partial run
still renders (pending cells, empty figure slots). Every string is HTML-escaped by Jinja.
"""

from __future__ import annotations

import argparse
import html.parser
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import pandas as pd

from dar.io import atomic_path
from dar.paper import paper_source
from dar.plan import Plan, load_for_cli
from dar.report import provenance, slots, verdicts, zoo
from dar.report.tables import METRIC_LABELS, TITLES, build_tables, load_table, tolerance_text, tolerances

FEATURES_TEXT = {
    "digits": "digits-classifier features (digits FID / sFID / IS / precision / recall; not Inception)",
    "inception": "Inception-v3 features, the ADM protocol (torch-fidelity), as the paper",
}
SCALE_TEXT = {
    "digits": "the paper's grid scaled to 8×8 digits",
    "imagenet256": "the paper's protocol (ImageNet 256, SiT-XL/2)",
    "rehearsal": "a dress rehearsal of the paper's code path on CPU, on stand-in assets with random weights",
}
SCALE_WARNING = {
    "digits": (
        "This is the digits-scale report: every number of ours is measured in a digits classifier's feature space on a "
        "scaled-down grid. It checks that the pipeline and the trends reproduce; it cannot be compared with the paper's "
        "ImageNet 256 Inception numbers, so no cell carries a delta."
    ),
    "rehearsal": (
        "This is a dress rehearsal: the paper's code path (SD VAE latents, Inception-v3 against an ADM reference batch, "
        "DINOv2 for REPA) ran end to end on stand-in assets with random weights (random weights, rehearsal only). Its "
        "numbers mean nothing and are never compared with the paper's; what it shows is that every stage ran and its "
        "files fit together."
    ),
}


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dar.report", "templates"),
        autoescape=True,  # every string the page shows is escaped, whatever the file extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["duration"] = provenance.duration
    return env


def context(plan: Plan, df: pd.DataFrame, table_source: str, kernel: Path, claims: str | Path | None = None) -> dict:
    tables = build_tables(plan, df)
    protocols, envs, notes = provenance.cell_protocols(plan, df)
    jobs, job_rules, plan_source = provenance.job_costs(plan)
    done, total = int((df["status"] == "done").sum()), len(df)
    tol = tolerances(plan)
    scale = plan.preset.scale
    features = plan.evaluation.features
    judged, claim_rows, claims_source = verdicts.load(plan, claims)
    return {
        "preset": plan.preset_arg,
        "name": plan.preset.name,
        "description": plan.preset.description,
        "scale": scale,
        "scale_text": SCALE_TEXT.get(scale, scale),
        "features_text": (
            "a random-weight stand-in of Inception-v3 (the ADM protocol's code path; these are not Inception metrics)"
            if scale == "rehearsal"
            else FEATURES_TEXT.get(features, features)
        ),
        "comparable": plan.preset.comparable,
        "scale_warning": SCALE_WARNING.get(scale, ""),
        "done": done,
        "total": total,
        "pct": 0 if not total else round(100 * done / total),
        "rendered": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "tables": tables,
        "claims": {**judged, "rows": claim_rows, "count_rows": verdicts.counts(judged), "source": claims_source},
        "tolerance_rows": [(METRIC_LABELS[m], tolerance_text(t)) for m, t in tol.items()],
        "tolerance_overridden": bool(plan.evaluation.tolerance),
        "table_source": table_source,
        "slots": [
            slots.fig1b_slot(plan, df),
            slots.loss_slot(plan),
            *slots.diagnostics(plan),
            slots.kernel_slot(plan, kernel),
        ],
        "samples": slots.sample_grids(plan),
        "zoo": zoo.section(plan, df),
        "commits": provenance.commits(protocols),
        "packages": provenance.package_table(envs),
        "config": provenance.resolved_config(plan),
        "config_source": plan.preset.source,
        "runs": provenance.training_runs(plan),
        "protocols": protocols,
        "protocol_notes": notes,
        "jobs": jobs,
        "job_rules": job_rules,
        "job_total": sum(j.seconds for j in jobs),
        "gpu_total": sum(j.gpu_hours for j in jobs),
        "plan_source": plan_source,
        "paper_sources": [(TITLES[k], paper_source(k)) for k in TITLES if paper_source(k)],
    }


def render(
    plan: Plan,
    out: str | Path,
    table: str | Path | None = None,
    kernel: str | Path | None = None,
    claims: str | Path | None = None,
    figures_dir: str | Path | None = None,
) -> Path:
    """Write the preset's page; return its path. figures_dir: also write every figure the page embeds there as a
    PNG (`<slot>.png`, `samples_<nn>.png`), the files `snakemake --report` shows."""
    df, source = load_table(plan, table)
    kernel = Path(kernel) if kernel else plan.kernel_bench
    ctx = context(plan, df, source, kernel, claims)
    page = environment().get_template("index.html.j2").render(**ctx)
    write_page(out, page)
    if figures_dir is not None:
        write_figures(Path(figures_dir), ctx)
    return Path(out)


def write_figures(folder: Path, ctx: dict) -> list[Path]:
    """The page's figures as PNG files: each filled figure slot as <key>.png, each sample grid as samples_<nn>.png."""
    import base64

    folder.mkdir(parents=True, exist_ok=True)
    images = [(slot.key, slot.image) for slot in ctx["slots"] if slot.image]
    images += list((ctx.get("zoo") or {}).get("images", {}).items())
    images += [(f"samples_{i:02d}", uri) for i, (_, uri) in enumerate(ctx["samples"])]
    out = []
    for name, uri in images:
        path = folder / f"{name}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(base64.b64decode(uri.split(",", 1)[1]))
        out.append(path)
    return out


def write_page(path: str | Path, text: str) -> None:
    """Atomically (dar.io.atomic_path gives it an ordinary file's permissions)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ------------------------------------------------------------------- landing
class _Meta(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "meta" and (a.get("name") or "").startswith("dar-"):
            self.meta[a["name"].removeprefix("dar-")] = a.get("content") or ""


def render_landing(path: str | Path) -> Path:
    """reports/index.html: every <preset>/index.html beside it, from the summary in its <meta> tags."""
    path = Path(path)
    pages = []
    for page in sorted(path.parent.glob("*/index.html")):
        parser = _Meta()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        m = parser.meta
        if "preset" in m:
            pages.append({**m, "href": page.relative_to(path.parent).as_posix()})
    text = environment().get_template("landing.html.j2").render(pages=pages)
    write_page(path, text)
    return path


# ----------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="digits", help="grid preset, dar/presets/<preset>.yaml or a .yaml path (default: digits)")
    p.add_argument("--results", default="results", help="results root (default: results)")
    p.add_argument(
        "--table",
        default=None,
        help="collated table CSV (default: <results>/<preset>/table.csv; cells collated afresh if missing)",
    )
    p.add_argument("--kernel-bench", default=None, help="Fig. 6 benchmark JSON (default: <results>/<preset>/bench/kernel.json)")
    p.add_argument(
        "--claims", default=None, help="claims JSON (default: <results>/<preset>/claims.json; judged afresh if missing)"
    )
    p.add_argument("--out", default=None, help="page to write (default: reports/<preset>/index.html)")
    p.add_argument(
        "--landing",
        default="reports/index.html",
        help="list of every preset page to (re)write; 'none' to skip (default: reports/index.html)",
    )
    p.add_argument("--figures", default=None, help="also write the page's figures as PNGs into this folder (snakemake --report)")
    p.add_argument(
        "--screenshot", default=None, help="also save a PNG of the page's top 1400x2400 px (needs chromium; default: none)"
    )
    args = p.parse_args(argv)
    plan = load_for_cli(args.preset, args.results)
    if plan is None:
        return 2
    out = Path(args.out or plan.report_page)
    try:
        render(plan, out, args.table, args.kernel_bench, args.claims, figures_dir=args.figures)
    except ValueError as e:  # e.g. a bad evaluation.tolerance
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[report] {out}: open file://{out.resolve()} in a browser")
    if args.landing.lower() != "none":
        print(f"[report] {render_landing(args.landing)}: every preset page under {Path(args.landing).parent}/")
    if args.screenshot:
        from dar.report.browser import Browser, BrowserError

        try:
            with Browser() as b:
                page = b.open(out, screenshot=args.screenshot)
        except BrowserError as e:
            print(f"error: screenshot: {e}", file=sys.stderr)
            return 1
        for err in page.errors:
            print(f"[report] browser: {err}", file=sys.stderr)
        print(f"[report] {args.screenshot}: screenshot ({len(page.errors)} console error(s))")
    return 0
