"""The statistics that decide a row of the noise benchmark, against values computed by hand."""

from __future__ import annotations

import math

import pytest

from nlkd.reproduce.stats import (
    PairedDifference,
    gap_closed,
    gap_recovered,
    interval_half_width,
    last_k_mean,
    paired_difference,
    pooled_std,
    seeds_to_detect,
    summarize,
)


def test_summarize_hand_values() -> None:
    s = summarize([46.2, 48.0, 50.4])  # issue 14's three plain-CE seeds
    assert s.n == 3 and s.mean == pytest.approx(48.2)
    # deviations -2.0, -0.2, 2.2: squares 4 + 0.04 + 4.84 = 8.88, / 2 = 4.44
    assert s.std == pytest.approx(math.sqrt(4.44))
    assert summarize([3.0]) == summarize([3.0]) and summarize([3.0]).std == 0.0
    assert summarize([]) is None


def test_paired_difference_interval_excludes_zero_only_when_it_should() -> None:
    # diffs 2, 3, 4, 3: mean 3, sd sqrt(2/3), se sqrt(2/3)/2 = 0.408248; t(0.975, 3) = 3.182446
    d = paired_difference({0: 3.0, 1: 5.0, 2: 4.0, 3: 6.0}, {0: 1.0, 1: 2.0, 2: 0.0, 3: 3.0})
    assert (d.n, d.mean) == (4, pytest.approx(3.0))
    assert d.low == pytest.approx(3.0 - 3.182446 * 0.408248, abs=1e-5)
    assert d.high == pytest.approx(3.0 + 3.182446 * 0.408248, abs=1e-5)
    assert d.verdict == "beats"
    # diffs 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653 -> 2 ± 2.484138: the interval holds 0
    d = paired_difference({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert d.low == pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-5) and d.low < 0
    assert d.verdict == "no measurable difference"
    d = paired_difference({0: -1.0, 1: -2.0, 2: -1.5}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert d.verdict == "below" and d.high < 0


def test_paired_difference_pairs_by_seed_only() -> None:
    d = paired_difference({0: 5.0, 1: 7.0, 9: 100.0}, {1: 6.0, 0: 4.0, 5: -100.0})
    assert d.n == 2 and d.mean == pytest.approx(1.0) and d.std == 0.0 and d.low == d.high == pytest.approx(1.0)
    assert d.verdict == "no measurable difference"  # an interval above 0, but from 2 seeds only
    one = paired_difference({0: 5.0}, {0: 4.0})
    assert one.n == 1 and math.isnan(one.low) and one.verdict == "no measurable difference"
    assert paired_difference({0: 1.0}, {1: 1.0}) is None
    with pytest.raises(ValueError, match="confidence"):
        paired_difference({0: 1.0}, {0: 1.0}, confidence=95)


def test_last_k_mean_and_gap_recovered() -> None:
    records = [{"epoch": e, "val_miou": v} for e, v in enumerate([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], 1)]
    assert last_k_mean(records, "val_miou", k=5) == pytest.approx(0.4)  # (0.2 + ... + 0.6) / 5
    assert last_k_mean(records, "val_miou", k=1) == pytest.approx(0.6)
    assert last_k_mean(records[:3], "val_miou", k=5) == pytest.approx(0.2)  # fewer epochs than k: all
    assert last_k_mean(records, "val_bf_1") is None and last_k_mean([], "val_miou") is None
    assert last_k_mean([*records, {"val_miou": float("nan")}], "val_miou") is None
    with pytest.raises(ValueError):
        last_k_mean(records, "val_miou", k=0)
    assert gap_recovered(48.0, 46.0, 50.0) == pytest.approx(0.5)
    assert gap_recovered(45.0, 46.0, 50.0) == pytest.approx(-0.25)
    assert gap_recovered(48.0, 46.0, 46.0) is None


def test_gap_closed_sets_a_row_against_the_gap_of_its_own_seeds() -> None:
    base, clean = {0: 40.0, 1: 40.0, 2: 41.0}, {0: 44.0, 1: 50.0, 2: 45.0}
    assert gap_closed({0: 42.0}, clean, base) == pytest.approx(0.5)  # seed 0's gap is 4, not the mean 6
    assert gap_closed({0: 42.0, 1: 45.0}, clean, base) == pytest.approx(3.5 / 7.0)  # mean gain / mean gap
    assert gap_closed({3: 42.0}, clean, base) is None  # no seed in common
    assert gap_closed({0: 42.0}, {0: 40.0}, base) is None  # no gap to recover


def test_pooled_std_weights_each_row_by_its_degrees_of_freedom() -> None:
    rows = [PairedDifference(0.0, 1.0, -1.0, 1.0, 3), PairedDifference(0.0, 2.0, -2.0, 2.0, 5)]
    sd, df = pooled_std(rows)  # (2 · 1 + 4 · 4) / 6 = 3
    assert df == 6 and sd == pytest.approx(math.sqrt(3.0))
    one_seed = PairedDifference(1.0, 0.0, math.nan, math.nan, 1)  # no spread to pool
    assert pooled_std([one_seed, rows[0]]) == (pytest.approx(1.0), 2)
    assert pooled_std([one_seed]) is None and pooled_std([]) is None


def test_interval_half_width_and_the_seeds_it_takes_to_resolve_a_gain() -> None:
    # t(0.975, 4) = 2.7764: 2.7764 · 2 / sqrt(5) = 2.4833; the width paired_difference uses too
    assert interval_half_width(2.0, 5) == pytest.approx(2.4833, abs=1e-4)
    d = paired_difference({k: v for k, v in enumerate([1.0, 3.0, -1.0, 2.0, 0.0])}, dict.fromkeys(range(5), 0.0))
    assert d.high - d.mean == pytest.approx(interval_half_width(d.std, 5))
    # spread 2: 6 seeds give ±2.099, 7 give ±1.850 -> a gain of 2 needs 7; of 2.1, 6
    assert seeds_to_detect(2.0, 2.0) == 7 and seeds_to_detect(2.1, 2.0) == 6
    assert seeds_to_detect(100.0, 2.0) == 3  # never fewer than a verdict rests on
    assert seeds_to_detect(0.0, 2.0) is None and seeds_to_detect(0.01, 2.0, most=50) is None
    with pytest.raises(ValueError, match="n >= 2"):
        interval_half_width(1.0, 1)
