"""`python -m dar collate`: every cell JSON of a preset into one table (CSV + JSON).

Rows are cells (table, name, run, iteration, sampler, guidance); columns are the
five metrics (mean, std, n), the paper's values and the deltas, and the
protocol fields users ask about (NFE, samples, feature space, reference hash,
commit). A cell's status is `done` when its JSON exists and records the
fingerprint the grid's cell has now, `stale` when its JSON was made under
another config (its numbers are kept out of the table), and `pending` when it
does not exist yet; both come with the command that (re)makes the cell.
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

from dar.io import atomic_path, write_json
from dar.plan import Plan, load_for_cli

METRICS = ("fid", "sfid", "is", "precision", "recall")


def collate(plan: Plan) -> pd.DataFrame:
    rows = []
    for cell in plan.cells:
        path = cell.path
        row = {**cell.describe(), "path": str(path), "label": cell.label, "fingerprint": cell.fingerprint}
        res = None
        if path.is_file():
            try:
                res = json.loads(path.read_text())
            except json.JSONDecodeError:
                res = None
        if res is None or res.get("fingerprint") != cell.fingerprint:
            status = "pending" if res is None else "stale"
            rows.append({**row, "status": status, "command": plan.rerun_command(path, *(["--force"] if res is not None else []))})
            continue
        row.update(
            status="done",
            label=res["label"],
            routing=res["routing"],
            feature_space=res["feature_space"],
            n_seeds=len(res["seeds"]),
        )
        for m in METRICS:
            row[m] = res["metrics"][m]["mean"]
            row[f"{m}_std"] = res["metrics"][m]["std"]
            row[f"paper_{m}"] = res["paper"].get(m)
            row[f"delta_{m}"] = res["delta"].get(m)
        prot = res["protocols"][0]
        row["reference_sha256"] = prot.get("reference", {}).get("sha256")
        row["git_commit"] = res["git_commit"]
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar collate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="digits", help="grid preset (default: digits)")
    p.add_argument("--results", default="results", help="results root (default: results)")
    p.add_argument("--out", default=None, help="CSV to write (default: results/<preset>/table.csv; JSON beside it)")
    args = p.parse_args(argv)
    plan = load_for_cli(args.preset, args.results)
    if plan is None:
        return 2
    df = collate(plan)
    out = args.out or plan.table_path
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)
    write_json(str(out).removesuffix(".csv") + ".json", df.where(pd.notna(df), None).to_dict(orient="records"))
    done = (df["status"] == "done").sum()
    stale = (df["status"] == "stale").sum()
    print(
        f"[collate] {out}: {done} of {len(df)} cells done" + (f", {stale} stale (made under an earlier config)" if stale else "")
    )
    shown = [c for c in ("table", "name", "fid", "sfid", "is", "precision", "recall", "paper_fid") if c in df.columns]
    with pd.option_context("display.width", 160, "display.max_rows", 200, "display.float_format", "{:.3f}".format):
        print(df[df["status"] == "done"][shown].to_string(index=False))
    return 0
