"""The paper's reported numbers (dar/paper.yaml), looked up by table, run, sampler, guidance, iteration."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

PAPER_FILE = Path(__file__).with_name("paper.yaml")
METRICS = ("fid", "sfid", "is", "precision", "recall")
PAPER_SCALE = "imagenet256"  # the one preset scale whose numbers are compared with the paper's


def comparable_scale(scale: str) -> bool:
    """Whether numbers at this preset scale are comparable with the paper's (deltas, verdicts against the paper)."""
    return scale == PAPER_SCALE


@cache
def paper_data() -> dict[str, Any]:
    return yaml.safe_load(PAPER_FILE.read_text())


def paper_value(table: str, run: str, sampler: str, cfg: bool, iteration: int | None = None) -> dict[str, float]:
    """Reported metrics for one cell ({} where the paper gives none). Iteration-keyed values are resolved."""
    row = paper_data().get(table, {}).get("rows", {}).get(run)
    if not row:
        return {}
    cell = row.get(sampler, {}).get("cfg" if cfg else "nocfg", {})
    out = {}
    for k, v in cell.items():
        if isinstance(v, dict):
            if iteration in v:
                out[k] = v[iteration]
        else:
            out[k] = v
    return out


def paper_source(table: str) -> str:
    return paper_data().get(table, {}).get("source", "")
