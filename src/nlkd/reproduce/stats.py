"""Summaries of per-seed results: mean ± sample std, gains paired by seed, and the statistics that
decide whether a method beats the baseline (a 95 % t-interval of the paired differences over seeds).

The score of a run is the mean of its last K epochs' validation evaluations (:func:`last_k_mean`),
which cuts the epoch-to-epoch evaluation noise the same way for every row.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats as scipy_stats

__all__ = [
    "PairedDifference",
    "Summary",
    "gap_closed",
    "gap_recovered",
    "interval_half_width",
    "last_k_mean",
    "mean_sd",
    "paired_difference",
    "paired_diffs",
    "paired_gain",
    "pooled_std",
    "seeds_to_detect",
    "summarize",
]


def mean_sd(records: list[dict[str, Any]], key: str) -> tuple[float, float] | None:
    """(mean, sample std) in percent of ``key`` over records; None without records."""
    values = [100 * float(r[key]) for r in records]
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def paired_diffs(records: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> list[dict[str, float]]:
    """``{key: run - base run of the same seed}`` for each run whose seed has a base run."""
    by_seed = {r.get("seed"): float(r[key]) for r in base}
    return [{key: float(r[key]) - by_seed[r.get("seed")]} for r in records if r.get("seed") in by_seed]


def paired_gain(records: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> tuple[float, float] | None:
    """(mean, sample std) in percent of ``key`` minus the ``base`` run's of the same seed; None when no
    seed has both."""
    return mean_sd(paired_diffs(records, base, key), key)


# ----------------------------------------------------------------------------- statistics that decide


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (n − 1; 0 for one value) of ``n`` per-seed values."""

    mean: float
    std: float
    n: int


def summarize(values: Sequence[float]) -> Summary | None:
    """:class:`Summary` of ``values``; None when empty.

    >>> summarize([1.0, 2.0, 4.0])
    Summary(mean=2.3333333333333335, std=1.5275252316519468, n=3)
    """
    vals = [float(v) for v in values]
    if not vals:
        return None
    return Summary(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals))


#: the fewest paired seeds a "beats" / "below" verdict rests on
MIN_VERDICT_SEEDS = 3


@dataclass(frozen=True)
class PairedDifference:
    """Method − baseline over the seeds both have: mean, sample std, and the ``confidence`` t-interval
    ``mean ± t(1 − α/2, n − 1) · std / sqrt(n)`` (NaN bounds for n = 1)."""

    mean: float
    std: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    @property
    def verdict(self) -> str:
        """``"beats"`` when the interval lies above 0, ``"below"`` when it lies below 0, else
        ``"no measurable difference"``; also below :data:`MIN_VERDICT_SEEDS` seeds (n = 1 has no
        interval, and with n = 2 two near-equal differences give a narrow interval by chance)."""
        if self.n >= MIN_VERDICT_SEEDS and self.low > 0:
            return "beats"
        if self.n >= MIN_VERDICT_SEEDS and self.high < 0:
            return "below"
        return "no measurable difference"


def paired_difference(
    values: Mapping[int, float], base: Mapping[int, float], confidence: float = 0.95
) -> PairedDifference | None:
    """Paired difference of per-seed ``values`` to the ``base`` values of the same seed.

    Args:
        values, base: seed -> score. Seeds missing from either side are left out.
        confidence: two-sided confidence level of the t-interval, in (0, 1).

    Returns:
        :class:`PairedDifference`, or None when no seed has both.

    >>> d = paired_difference({0: 3.0, 1: 5.0, 2: 4.0, 3: 6.0}, {0: 1.0, 1: 2.0, 2: 0.0, 3: 3.0})
    >>> round(d.mean, 4), round(d.low, 4), round(d.high, 4), d.verdict
    (3.0, 1.7008, 4.2992, 'beats')
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    diffs = [float(values[s]) - float(base[s]) for s in sorted(values) if s in base]
    summary = summarize(diffs)
    if summary is None:
        return None
    if summary.n < 2:
        return PairedDifference(summary.mean, 0.0, math.nan, math.nan, 1, confidence)
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, summary.n - 1)) * summary.std / math.sqrt(summary.n)
    return PairedDifference(summary.mean, summary.std, summary.mean - half, summary.mean + half, summary.n, confidence)


def pooled_std(diffs: Sequence[PairedDifference]) -> tuple[float, int] | None:
    """Pooled sample std of several rows' paired differences, ``sqrt(Σ (n_i − 1) s_i² / Σ (n_i − 1))``,
    and its degrees of freedom ``Σ (n_i − 1)``; None without a row of at least two seeds.

    >>> pooled_std([PairedDifference(0.0, 1.0, -1.0, 1.0, 3), PairedDifference(0.0, 2.0, -2.0, 2.0, 5)])
    (1.7320508075688772, 6)
    """
    df = sum(d.n - 1 for d in diffs if d.n > 1)
    if df == 0:
        return None
    return math.sqrt(sum((d.n - 1) * d.std**2 for d in diffs if d.n > 1) / df), df


def interval_half_width(std: float, n: int, confidence: float = 0.95) -> float:
    """Half-width ``t(1 − α/2, n − 1) · std / sqrt(n)`` of the t-interval of a mean of ``n`` paired
    differences whose std is ``std`` (n ≥ 2).

    >>> round(interval_half_width(2.0, 5), 4)
    2.4833
    """
    if n < 2:
        raise ValueError(f"an interval needs n >= 2 seeds, got {n!r}")
    return float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)


def seeds_to_detect(effect: float, std: float, confidence: float = 0.95, most: int = 1000) -> int | None:
    """The fewest seeds (at least :data:`MIN_VERDICT_SEEDS`) whose interval half-width at spread ``std`` is
    below ``effect``; None when even ``most`` seeds are not enough or ``effect`` is not positive. A row whose
    true mean gain is ``effect`` then has its interval clear 0 only about half the time (no power margin).

    >>> seeds_to_detect(2.0, 2.0)  # a gain as large as the spread: 7 seeds (6 give ±2.10)
    7
    """
    if effect <= 0:
        return None
    seeds = range(MIN_VERDICT_SEEDS, most + 1)
    return next((n for n in seeds if interval_half_width(std, n, confidence) < effect), None)


def last_k_mean(records: Sequence[Mapping[str, Any]], key: str, k: int = 5) -> float | None:
    """Mean of ``key`` over the last ``k`` epoch records (all of them when there are fewer); None when
    there is no record or one of them lacks ``key`` (or holds null/NaN).

    >>> last_k_mean([{"m": 0.1}, {"m": 0.2}, {"m": 0.3}, {"m": 0.4}], "m", k=2)
    0.35
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k!r}")
    tail = list(records)[-k:]
    values = [r.get(key) for r in tail]
    if not tail or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return None
    return statistics.fmean(float(v) for v in values)


def gap_recovered(method: float, baseline: float, clean: float) -> float | None:
    """Share of the clean − baseline gap that ``method`` closes, ``(method − baseline) / (clean −
    baseline)``; None when the gap is not positive (there is nothing to recover).

    >>> gap_recovered(48.0, 46.0, 50.0)
    0.5
    """
    gap = clean - baseline
    return (method - baseline) / gap if gap > 0 else None


def gap_closed(row: Mapping[int, float], clean: Mapping[int, float], base: Mapping[int, float]) -> float | None:
    """Share of the clean − baseline gap a row's mean gain recovers, both means over the seeds the row,
    clean and baseline all have (seed -> score each), so a row of few seeds is set against the gap of
    those seeds; None without such a seed or without a positive gap.

    >>> gap_closed({0: 48.0}, {0: 50.0, 1: 60.0}, {0: 46.0, 1: 46.0})  # seed 0 only: gain 2 of a gap of 4
    0.5
    """
    seeds = sorted(row.keys() & clean.keys() & base.keys())
    if not seeds:
        return None
    gain = sum(row[s] - base[s] for s in seeds) / len(seeds)
    return gap_recovered(gain, 0.0, sum(clean[s] - base[s] for s in seeds) / len(seeds))
