"""Paired comparisons over training seeds, and the verdict rule the claims section states.

Seed k of every run sees the same data order, the same per-step noise and the same sampling noise (the plan
gives every run of a seed the same `seed`), so two runs are compared by their per-seed differences
d_k = a_k - b_k, not by two independent means. The effect is the mean difference with a two-sided
t-interval over seeds:

    mean(d) +- t_{(1 + c) / 2, n - 1} * sd(d) / sqrt(n)      (sd with n - 1; c = 0.95)

It is an interval over seeds only: the sample noise of each cell is inside every d_k, and no bootstrap
over samples is added on top. With one seed there is no interval, and no verdict but `inconclusive`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

CONFIDENCE = 0.95
HOLDS, FAILS, INCONCLUSIVE, NO_DATA = "holds", "does not hold", "inconclusive", "no data"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NO_DATA)

RULE = (
    f"For each comparison (one pair of cells), the per-seed difference d = (claimed better) - (other) of FID; its "
    f"mean over seeds with a two-sided t-interval (n - 1 degrees of freedom) at confidence 1 - {1 - CONFIDENCE:.2f} / k "
    f"for a claim of k comparisons (Bonferroni: {CONFIDENCE:.0%} for the claim as a whole). A comparison holds when "
    f"the whole interval lies below 0, does not hold when it lies above 0, and is inconclusive when it contains 0, "
    f"when there are fewer than 2 seeds, or when the differences are identical across seeds (no spread: the seeds "
    f"may not differ). A claim holds when every comparison holds, does not hold when any does not, has no data "
    f"when any comparison lacks its cells, and is inconclusive otherwise. The rule judges the direction of an "
    f"effect, not its size: the paper's 'substantially' and 'wide margin' are shown in its numbers beside ours."
)


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with df degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(p, df))


@dataclass(frozen=True)
class PairedEffect:
    """mean(a - b) over paired seeds with its t-interval (low/high None with fewer than 2 pairs)."""

    n: int
    differences: tuple[float, ...]
    mean: float
    low: float | None
    high: float | None
    confidence: float = CONFIDENCE

    def to_dict(self) -> dict:
        return {**asdict(self), "differences": list(self.differences), "interval": "t over seeds"}


def paired_effect(a: list[float], b: list[float], confidence: float = CONFIDENCE) -> PairedEffect:
    if len(a) != len(b) or not a:
        raise ValueError(f"paired values need the same, non-zero number of seeds on both sides: {len(a)} vs {len(b)}")
    d = tuple(float(x) - float(y) for x, y in zip(a, b))
    if not all(math.isfinite(x) for x in d):
        raise ValueError(f"paired differences must be finite, got {d}")
    mean, n = statistics.fmean(d), len(d)
    if n < 2:
        return PairedEffect(n, d, mean, None, None, confidence)
    half = t_quantile((1 + confidence) / 2, n - 1) * statistics.stdev(d) / math.sqrt(n)
    return PairedEffect(n, d, mean, mean - half, mean + half, confidence)


def verdict(effect: PairedEffect, lower_is_better: bool = True) -> str:
    """`holds` when the interval lies wholly on the claimed side of 0, `does not hold` when wholly on the other."""
    if effect.low is None or effect.high is None or effect.low == effect.high:
        return INCONCLUSIVE  # one seed, or no spread (identical differences: a seeding bug looks like certainty)
    claimed, other = (effect.high < 0, effect.low > 0) if lower_is_better else (effect.low > 0, effect.high < 0)
    return HOLDS if claimed else FAILS if other else INCONCLUSIVE


def combine(verdicts: list[str]) -> str:
    """A claim's verdict from its comparisons': any failure fails it, any missing data leaves it unjudged, all
    holding holds it."""
    if not verdicts:
        return NO_DATA
    if FAILS in verdicts:
        return FAILS
    if NO_DATA in verdicts:
        return NO_DATA
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    return INCONCLUSIVE
