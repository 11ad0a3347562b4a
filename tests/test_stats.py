"""Paired effects over seeds and the verdict rule, on worked examples with closed-form answers."""

from __future__ import annotations

import math

import pytest

from dar import stats

# two-sided 95% critical values of Student's t (standard tables)
T975 = {1: 12.706204736174703, 2: 4.302652729911275, 4: 2.7764451051977987}


@pytest.mark.parametrize("df", sorted(T975))
def test_t_quantile_matches_the_tables(df):
    assert stats.t_quantile(0.975, df) == pytest.approx(T975[df], rel=1e-9)


def test_three_seeds_worked_example_is_inconclusive():
    e = stats.paired_effect([10, 12, 14], [11, 14, 17])  # d = -1, -2, -3: mean -2, sd 1
    half = T975[2] * 1 / math.sqrt(3)
    assert e.differences == (-1, -2, -3) and e.mean == -2
    assert (e.low, e.high) == pytest.approx((-2 - half, -2 + half))  # (-4.484, 0.484): contains 0
    assert stats.verdict(e) == stats.INCONCLUSIVE


def test_five_seeds_worked_example_holds_and_its_mirror_fails():
    d = [-1, -2, -3, -2, -2]  # mean -2, sd sqrt(0.5)
    e = stats.paired_effect([x + 5 for x in d], [5] * 5)
    half = T975[4] * math.sqrt(0.5) / math.sqrt(5)
    assert (e.low, e.high) == pytest.approx((-2 - half, -2 + half))  # (-2.878, -1.122)
    assert stats.verdict(e, lower_is_better=True) == stats.HOLDS
    assert stats.verdict(e, lower_is_better=False) == stats.FAILS
    mirror = stats.paired_effect([5] * 5, [x + 5 for x in d])
    assert stats.verdict(mirror) == stats.FAILS and stats.verdict(mirror, lower_is_better=False) == stats.HOLDS


def test_one_seed_has_no_interval_and_no_verdict():
    e = stats.paired_effect([1.0], [9.0])
    assert e.n == 1 and e.low is None and e.high is None and e.mean == -8
    assert stats.verdict(e) == stats.INCONCLUSIVE


def test_identical_differences_give_a_zero_width_interval_and_no_verdict():
    e = stats.paired_effect([1, 2, 3], [2, 3, 4])  # a seeding bug (every seed the same) must not look like certainty
    assert e.low == e.high == -1 and stats.verdict(e) == stats.INCONCLUSIVE


def test_a_lower_confidence_gives_a_narrower_interval():
    d = [-1, -2, -3, -2, -2]
    wide, narrow = (stats.paired_effect(d, [0] * 5, c) for c in (0.99, 0.95))
    assert wide.low < narrow.low < narrow.high < wide.high and wide.confidence == 0.99
    assert (wide.high - wide.low) / (narrow.high - narrow.low) == pytest.approx(
        stats.t_quantile(0.995, 4) / stats.t_quantile(0.975, 4)
    )


def test_bad_pairs_are_refused():
    with pytest.raises(ValueError, match="same, non-zero number"):
        stats.paired_effect([1, 2], [1])
    with pytest.raises(ValueError, match="finite"):
        stats.paired_effect([1, float("nan")], [1, 2])


@pytest.mark.parametrize(
    ("verdicts", "claim"),
    [
        ([stats.HOLDS, stats.HOLDS], stats.HOLDS),
        ([stats.HOLDS, stats.INCONCLUSIVE], stats.INCONCLUSIVE),
        ([stats.HOLDS, stats.FAILS], stats.FAILS),
        ([stats.INCONCLUSIVE, stats.FAILS], stats.FAILS),
        ([stats.HOLDS, stats.NO_DATA], stats.NO_DATA),
        ([stats.FAILS, stats.NO_DATA], stats.FAILS),
        ([stats.NO_DATA], stats.NO_DATA),
        ([], stats.NO_DATA),
    ],
)
def test_a_claim_combines_its_comparisons(verdicts, claim):
    assert stats.combine(verdicts) == claim
