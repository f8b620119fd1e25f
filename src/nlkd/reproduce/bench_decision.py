"""The noise benchmark's decision: which strategy to run on coarse labels, read from its scored tables.

A row is *usable* when it needs nothing a user lacks (``candidate`` rows; the oracles need the fine masks).
A row *beats* plain CE on a noise kind when its paired difference to the baseline lies above 0 on mIoU or
BF θ=2, over at least :data:`~nlkd.reproduce.stats.MIN_VERDICT_SEEDS` seeds, and below 0 on neither. The
recommendation is the usable row that beats plain CE on every noise kind and beats its control on the first
kind, when it has one (a row whose ``control_of`` names it: the same weights without their information), the
largest mean mIoU gain on the first kind among several; else plain CE, naming the usable rows that beat it on
some kinds only (or are not run on the others yet) and how they fare against their control. The targets:
the recommended row closes at least half of the first kind's clean − baseline gap in mIoU and in BF
(stretch: 70 %).
"""

from __future__ import annotations

from collections.abc import Sequence

from nlkd.config import TrainConfig
from nlkd.reproduce.bench_plan import BenchRow, needs_teacher
from nlkd.reproduce.bench_table import DECIDING, KindTable

__all__ = ["STRETCH_SHARE", "TARGET_SHARE", "beats_on", "decision_lines", "train_command_of"]

TARGET_SHARE, STRETCH_SHARE = 0.5, 0.7  # of the clean − baseline gap, in mIoU and in BF


def beats_on(t: KindTable, row: BenchRow, against: str = "baseline") -> bool:
    """Whether ``row`` beats plain CE (or the row ``against``) on ``t``'s noise kind: "beats" on a deciding
    metric, "below" on none."""
    verdicts = [d.verdict for d in (t.diff(row, label, against) for label in DECIDING) if d is not None]
    return "beats" in verdicts and "below" not in verdicts


def _controls(t: KindTable, row: BenchRow) -> list[BenchRow]:
    """The rows of ``t`` that are controls of ``row``."""
    return [c for c in t.rows if c.control_of == row.slug]


def _control_verdict(t: KindTable, row: BenchRow) -> str:
    """``row`` against its controls on ``t``'s kind: "" (it has none), "beats" (every one), else the first
    other verdict ("control not run", "no measurable difference", "below")."""
    verdicts = [_verdict(t, row, c.slug).replace("not run", "control not run") for c in _controls(t, row)]
    return next((v for v in verdicts if v != "beats"), "beats" if verdicts else "")


def train_command_of(row: BenchRow | None) -> str:
    """The ``nlkd train`` command of ``row``'s strategy (None: plain CE) on a user's labels."""
    changes = dict(row.changes) if row is not None else {}
    cmd = f"nlkd train --data ROOT --labels LABELS --strategy {changes.pop('strategy.name', 'baseline')}"
    if row is not None and needs_teacher(row, TrainConfig()):
        cmd += " --teacher BASELINE_RUN/last.pt"
    return cmd + "".join(f" --set {k}={v}" for k, v in changes.items())


def _verdict(t: KindTable, row: BenchRow, against: str = "baseline") -> str:
    """``row``'s verdict against plain CE (or the row ``against``) on ``t``'s kind: beats, below, no
    measurable difference or not run."""
    d = [t.diff(row, label, against) for label in DECIDING]
    if d[0] is None or d[1] is None:
        return "not run"
    if beats_on(t, row, against):
        return "beats"
    return "below" if "below" in {x.verdict for x in d} else "no measurable difference"


def _cell(t: KindTable, row: BenchRow) -> str:
    d = [t.diff(row, label) for label in DECIDING]
    if d[0] is None or d[1] is None:
        return "not run"
    return f"{100 * d[0].mean:+.2f} / {100 * d[1].mean:+.2f} ({d[0].n} seed{'s' * (d[0].n > 1)}): {_verdict(t, row)}"


def _beats_somewhere(rows: Sequence[BenchRow], tables: Sequence[KindTable]) -> str:
    """The usable rows that beat plain CE on some kinds but not (yet) on every one, with their verdict per
    kind; empty when there are none."""
    parts = []
    for r in rows:
        verdicts = {t.kind.title: _verdict(t, r) for t in tables}
        if r.candidate and "beats" in verdicts.values():
            kinds = {v: ", ".join(k for k, w in verdicts.items() if w == v) for v in dict.fromkeys(verdicts.values())}
            versus = _control_verdict(tables[0], r)
            control = f"; against its control on {tables[0].kind.title}: {versus}" if versus else ""
            parts.append(f"{r.title} ({'; '.join(f'{v} on {k}' for v, k in kinds.items())}{control})")
    return f" Beats it on some kinds only, so far: {'; '.join(parts)}." if parts else ""


def decision_lines(tables: Sequence[KindTable]) -> list[str]:
    """The report's decision block: the recommendation with its command, every row with a paired run on
    the first kind (its mean gain and verdict per kind, the gap it closes), and the targets, met or not."""
    first = tables[0]
    rows = first.by_gain()
    winners = [r for r in rows if r.candidate and all(beats_on(t, r) for t in tables)]
    winners = [r for r in winners if _control_verdict(first, r) in ("", "beats")]
    pick = winners[0] if winners else None
    lines = ["### The decision", ""]
    if pick is None:
        lines.append("**Run plain CE**: no strategy that needs only your labels beats it on every noise kind yet."
                     + _beats_somewhere(rows, tables))  # fmt: skip
    else:
        lines.append(f"**Run {pick.title}**: it beats plain CE on every noise kind.")
    lines += ["", "```", train_command_of(pick), "```", ""]
    if not rows:
        return [*lines, "No row has a paired run yet.", ""]
    kinds = [t.kind.title for t in tables]
    lines += [
        f"Every row with a paired run, by its mean mIoU gain on {first.kind.title}: Δ mIoU / Δ BF θ=2 over plain CE",
        "(mean over the paired seeds) and the verdict of each kind's table; the gap it closes on the first kind.",
        "",
        "| method | usable | " + " | ".join(kinds) + f" | gap closed on {first.kind.title} (mIoU / BF) |",
        "|" + "---|" * (len(kinds) + 3),
    ]
    for r in rows:
        usable = "yes" if r.candidate else f"no ({r.unusable or 'not a candidate'})"
        cells = [usable, *(_cell(t, r) for t in tables), first.gap_text(r)]
        lines.append(f"| {r.title} | " + " | ".join(cells) + " |")
    lines += ["", _targets(first, pick, tables), ""]
    return lines


def _targets(first: KindTable, pick: BenchRow | None, tables: Sequence[KindTable]) -> str:
    head = (
        f"Targets: the recommended strategy closes ≥ {100 * TARGET_SHARE:.0f} % of the clean − baseline gap on "
        f"{first.kind.title} in mIoU and BF (stretch ≥ {100 * STRETCH_SHARE:.0f} %) and beats plain CE on all "
        f"{len(tables)} noise kinds: "
    )
    if pick is None:
        return head + "not met (no usable strategy beats plain CE on every kind)."
    shares = [first.gap_share(pick, label) for label in DECIDING]
    if any(s is None for s in shares):
        return head + "gap not known yet (no clean run shares a seed with it)."
    low = min(s for s in shares if s is not None)
    met = "met, stretch too" if low >= STRETCH_SHARE else "met" if low >= TARGET_SHARE else "not met"
    return head + f"{met} (it closes {first.gap_text(pick)})."
