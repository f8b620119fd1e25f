"""One noise kind's scored table of the noise benchmark: its rows, their finished runs, the score of
every run per metric, and the comparisons the report and the decision read from it (a row's paired
difference to the baseline, the share of the clean − baseline gap it closes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nlkd.reproduce.bench_plan import BenchRow, BenchSetting, NoiseKind, rows_of_kind
from nlkd.reproduce.bench_scores import RunData, collect_runs, score_runs
from nlkd.reproduce.stats import MIN_VERDICT_SEEDS, PairedDifference, gap_closed, paired_difference, pooled_std

__all__ = ["DECIDING", "KEY_SEEDS", "OTHER_SEEDS", "KindTable", "kind_table"]

DECIDING = ("mIoU", "BF θ=2")  # the metrics whose paired difference decides "beats"
# The seeds a row needs before the benchmark is complete: plain CE, NLKD and the two best other usable rows
# KEY_SEEDS, every other row OTHER_SEEDS (the minimum; a verdict needs MIN_VERDICT_SEEDS).
KEY_SEEDS, OTHER_SEEDS = 5, 3


@dataclass
class KindTable:
    """The scored table of one noise kind."""

    kind: NoiseKind
    rows: list[BenchRow]
    slugs: dict[str, str]  # row slug -> cell slug
    runs: dict[str, list[RunData]]  # cell slug -> finished runs
    scores: dict[str, dict[str, dict[int, float]]]
    sources: dict[str, str]

    def diff(self, row: BenchRow, label: str, against: str = "baseline") -> PairedDifference | None:
        """``row`` − ``against`` on metric ``label`` over the seeds both finished; None if the row is not in
        this table or shares no seed."""
        if row.slug not in self.slugs:
            return None
        base = self.scores.get(self.slugs[against], {}).get(label, {})
        return paired_difference(self.scores.get(self.slugs[row.slug], {}).get(label, {}), base)

    def gap_share(self, row: BenchRow, label: str) -> float | None:
        """The share of the clean − baseline gap on ``label`` that ``row``'s mean gain closes, over the
        seeds row, clean and baseline share (:func:`~nlkd.reproduce.stats.gap_closed`); None without
        them or without a clean row."""
        if not self.rows[0].clean or row.slug not in self.slugs:
            return None
        of = [self.scores.get(self.slugs[s], {}).get(label, {}) for s in (row.slug, self.rows[0].slug, "baseline")]
        return gap_closed(*of)

    def spread(self, label: str) -> tuple[float, int] | None:
        """How much a row's paired difference to plain CE on ``label`` varies from seed to seed: the pooled
        std over the rows with at least :data:`~nlkd.reproduce.stats.MIN_VERDICT_SEEDS` paired seeds
        (clean and oracles included: the run-to-run noise is the same), and its degrees of freedom."""
        diffs = [self.diff(r, label) for r in self.rows if r.slug != "baseline"]
        return pooled_std([d for d in diffs if d is not None and d.n >= MIN_VERDICT_SEEDS])

    def seeds_of(self, row: BenchRow) -> int:
        """How many seeds of ``row`` have a finished run."""
        return len({r.seed for r in self.runs.get(self.slugs.get(row.slug, ""), [])})

    def key_rows(self) -> list[BenchRow]:
        """The rows that need :data:`KEY_SEEDS` seeds: plain CE, NLKD (paper) and the two usable rows with
        the largest mean mIoU gain over plain CE, among those with a paired run."""
        key = [r for r in self.rows if r.slug in ("baseline", "nlkd")]
        return key + [r for r in self.by_gain() if r.candidate and r.slug != "nlkd"][:2]

    def by_gain(self) -> list[BenchRow]:
        """The rows with a paired mIoU difference to plain CE (not clean, not plain CE itself), largest mean
        gain first."""
        rows = [r for r in self.rows if not r.clean and r.slug != "baseline" and self.diff(r, "mIoU") is not None]
        return sorted(rows, key=lambda r: -self.diff(r, "mIoU").mean)  # type: ignore[union-attr]

    def seed_shortfall(self, skip: Sequence[str] = ()) -> list[tuple[BenchRow, int, int]]:
        """``(row, seeds finished, seeds needed)`` for every row (slugs in ``skip`` left out) with fewer
        finished seeds than it needs: :data:`KEY_SEEDS` for :meth:`key_rows`, else :data:`OTHER_SEEDS`."""
        key = {r.slug for r in self.key_rows()}
        need = {r.slug: KEY_SEEDS if r.slug in key else OTHER_SEEDS for r in self.rows if r.slug not in skip}
        have = {r.slug: self.seeds_of(r) for r in self.rows}
        return [(r, have[r.slug], need[r.slug]) for r in self.rows if r.slug in need and have[r.slug] < need[r.slug]]

    def gap_text(self, row: BenchRow) -> str:
        """:meth:`gap_share` of mIoU and BF θ=2 as "56 % / 60 %" ("—" where unknown)."""
        shares = [self.gap_share(row, label) for label in DECIDING]
        return " / ".join("—" if s is None else f"{100 * s:.0f} %" for s in shares)


def kind_table(
    setting: BenchSetting,
    kind: NoiseKind,
    out: Path,
    epochs: int,
    extra: Sequence[str],
    planned: Sequence[str],
    archive: Path | None = None,
) -> KindTable:
    """Score the finished runs of ``kind``'s table (rows: its own and ``extra``; ``planned``: cell
    slugs that exist in the plan; ``archive``: where archived runs fill the seeds ``out`` lacks)."""
    rows = rows_of_kind(setting, kind, extra)
    slugs = {r.slug: r.slug_for(kind) for r in rows}
    runs = collect_runs(out, [s for s in slugs.values() if s in planned], epochs, archive)
    scores, sources = score_runs(runs, setting.last_k, list(setting.detection.values()))
    return KindTable(kind, rows, slugs, runs, scores, sources)
