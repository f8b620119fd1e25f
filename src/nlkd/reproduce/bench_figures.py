"""The noise benchmark's figures: ``noise-bench.png``, each method's gain over plain CE with its 95 %
t-interval, one panel per noise kind; ``noise-bench-curves.png``, the first kind's validation mIoU and
BF θ=2 epoch by epoch, each row's mean over its finished seeds (where the last-K score sits on the curve)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

from nlkd.plots import save_png
from nlkd.reproduce.bench_plan import BenchRow
from nlkd.reproduce.bench_scores import RunData
from nlkd.reproduce.bench_table import DECIDING, KindTable

__all__ = ["gain_axis_limits", "mean_curve", "plot_curves", "plot_gains", "plotted_rows"]

CURVES = (("mIoU", "val_miou"), ("BF θ=2", "val_bf_2"))  # (panel, per-epoch key of metrics.jsonl)


def plotted_rows(t: KindTable) -> list[BenchRow]:
    """The rows of ``t``'s panel: every method with a paired difference to the baseline (not the clean
    ceiling, not the baseline itself)."""
    rows = [r for r in t.rows if not r.clean and r.slug != "baseline"]
    return [r for r in rows if any(t.diff(r, label) is not None for label in DECIDING)]


def plot_gains(tables: Sequence[KindTable], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [plotted_rows(t) for t in tables]
    heights = [max(len(rows), 1) + 1.5 for rows in panels]
    fig, axes = plt.subplots(
        len(tables), 1, figsize=(9, 0.32 * sum(heights) + 0.6), squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    for ax, t, rows in zip(axes[:, 0], tables, panels):
        ax.set_title(t.kind.title, fontsize=10)
        if not rows:
            ax.text(0.5, 0.5, "no paired run yet", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for j, (label, color) in enumerate(zip(DECIDING, ("C0", "C1"))):
            ax.plot([], [], "o", color=color, label=f"Δ {label}")
            for i, row in enumerate(rows):
                d = t.diff(row, label)
                if d is None:
                    continue
                err = None if d.n < 2 else [[100 * (d.mean - d.low)], [100 * (d.high - d.mean)]]
                marker = "o" if d.n > 1 else "x"  # one seed: no interval
                y = i + 0.15 * (2 * j - 1)
                ax.errorbar(100 * d.mean, y, xerr=err, fmt=marker, color=color, capsize=3)
            gap = t.diff(t.rows[0], label) if t.rows[0].clean else None
            if gap is not None:
                ax.axvline(100 * gap.mean, color=color, ls="--", lw=0.8, label=f"clean − baseline ({label})")
        ax.axvline(0, color="k", lw=0.8)
        lo, hi = gain_axis_limits(t, rows)
        ax.set_xlim(lo, hi)
        names = [textwrap.fill(f"{r.title} (n={_seeds(t, r)})", 36) for r in rows]
        ax.set_yticks(range(len(rows)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(
            "gain over plain CE, points (95 % t-interval; x: one seed; two-seed intervals may run past the axis)",
            fontsize=8,
        )
        ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    save_png(fig, path, dpi=110)
    plt.close(fig)


def gain_axis_limits(t: KindTable, rows: Sequence[BenchRow], pad: float = 1.5) -> tuple[float, float]:
    """x limits (points) of a gain panel: 0, every row's mean gain and its interval when it has three or more
    seeds, the mean clean − baseline gap, with ``pad`` points either side. A two-seed interval (t = 12.7) is
    left out: it would set the scale for everything else."""
    xs = [0.0]
    for label in DECIDING:
        gap = t.diff(t.rows[0], label) if t.rows[0].clean else None
        xs += [] if gap is None else [100 * gap.mean]  # drawn as a line, without its interval
        for d in (t.diff(r, label) for r in rows):
            if d is not None:
                xs += [100 * d.mean, *([100 * d.low, 100 * d.high] if d.n >= 3 else [])]
    return min(xs) - pad, max(xs) + pad


def _seeds(t: KindTable, row: BenchRow) -> int:
    d = t.diff(row, DECIDING[0])
    return 0 if d is None else d.n


def mean_curve(runs: Sequence[RunData], key: str) -> list[float]:
    """Per-epoch mean of ``key`` over ``runs`` (epoch e: the runs whose e-th record holds it), up to the
    shortest run; NaN where no run logged it."""
    n = min((len(r.records) for r in runs), default=0)
    out = []
    for e in range(n):
        values = [float(r.records[e][key]) for r in runs if r.records[e].get(key) is not None]
        out.append(sum(values) / len(values) if values else math.nan)
    return out


def plot_curves(t: KindTable, path: Path, last_k: int) -> None:
    """``path``: validation mIoU and BF θ=2 per epoch of every row of ``t`` with a finished run, the mean
    over its seeds (n in the legend); solid: clean and plain CE, dashed: the oracles, dotted: the usable
    strategies; shaded: the last ``last_k`` epochs, whose mean is a run's score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in t.rows if t.runs.get(t.slugs[r.slug])]
    fig, axes = plt.subplots(1, len(CURVES), figsize=(11, 4.2), squeeze=False)
    for ax, (label, key) in zip(axes[0], CURVES):
        for i, row in enumerate(rows):
            runs = t.runs[t.slugs[row.slug]]
            curve = [100 * v for v in mean_curve(runs, key)]
            style = "-" if row.clean or row.slug == "baseline" else "--" if not row.candidate else ":"
            ax.plot(range(1, len(curve) + 1), curve, style, color=f"C{i % 10}", lw=1.2,
                    label=f"{textwrap.shorten(row.title, 40)} (n={len(runs)})")  # fmt: skip
        epochs = max((len(r.records) for runs in t.runs.values() for r in runs), default=0)
        if epochs:
            ax.axvspan(epochs - last_k + 0.5, epochs + 0.5, color="0.9", zorder=0)
        ax.set_title(f"{t.kind.title}: validation {label}", fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(f"{label}, % (mean over seeds)", fontsize=8)
        ax.grid(alpha=0.3)
    if rows:
        axes[0][-1].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    save_png(fig, path, dpi=110)
    plt.close(fig)
