"""Summaries of per-seed results: mean ± sample std in percent, and gains paired by seed."""

from __future__ import annotations

import statistics
from typing import Any

__all__ = ["mean_sd", "paired_diffs", "paired_gain"]


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
