"""``DIR/<table>.png``: our mIoU and BF beside the paper's, and for line tables each method's gain."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nlkd.reproduce.cells import TablePlan
from nlkd.reproduce.paper import PAPER
from nlkd.reproduce.stats import mean_sd, paired_gain

__all__ = ["plot_table"]


def _plot_gains(axes: Sequence[Any], plan: TablePlan, results: dict[str, list[dict[str, Any]]]) -> None:
    """Line tables: each row's gain over the first row (the baseline) at the same x, ours (paired by
    seed, error bars = std of the per-seed gains) beside the paper's (dashed)."""
    paper = PAPER.get(plan.name, {})
    rows = list(dict.fromkeys(c.row for c in plan.cells))
    base = {c.x: c for c in plan.cells if c.row == rows[0]}
    for k, (ax, key, metric) in enumerate(zip(axes, ("val_miou", "val_bf"), ("mIoU", "BF"))):
        for j, row in enumerate(rows[1:], start=1):
            cells = [c for c in plan.cells if c.row == row and c.x in base]
            ours = [(c.x, paired_gain(results.get(c.slug, []), results.get(base[c.x].slug, []), key)) for c in cells]
            ours = [(x, g) for x, g in ours if g is not None]
            if ours:
                xs, gains = zip(*ours)
                ax.errorbar(xs, *zip(*gains), marker="o", capsize=3, color=f"C{j % 10}", label=row)
            ref = [(c.x, paper[(row, c.column)][k] - paper[(rows[0], c.column)][k]) for c in cells
                   if (row, c.column) in paper and (rows[0], c.column) in paper]  # fmt: skip
            if ref:
                ax.plot(*zip(*ref), "x--", color=f"C{j % 10}", alpha=0.6)
        ax.axhline(0.0, color=f"C{0}", lw=1)
        ax.plot([], [], "kx--", alpha=0.6, label="paper")
        ax.set_xlabel(f"{plan.column_name.lower()} ratio (%)")
        ax.set_title(f"{metric} gain over the {rows[0]} at the same ratio (points)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)


def plot_table(plan: TablePlan, results: dict[str, list[dict[str, Any]]], out_png: Path) -> None:
    """mIoU and BF panels: lines over the noise ratio (cells with ``x``, Table 2), else one bar per cell;
    error bars are the std over seeds, the paper's numbers are dashed lines / black ticks. Line tables
    get a second row of panels: each method's gain over the baseline, ours beside the paper's."""
    from nlkd.plots import new_figure, save_png  # matplotlib only when a figure is drawn

    lines = plan.is_line_table
    fig = new_figure(13, 9 if lines else 5)
    paper = PAPER.get(plan.name, {})
    axes = fig.subplots(2 if lines else 1, 2, squeeze=False)
    if lines:
        _plot_gains(axes[1], plan, results)
    for k, (ax, key, metric) in enumerate(zip(axes[0], ("val_miou", "val_bf"), ("mIoU", "BF"))):
        nan = (math.nan, 0.0)
        groups = {c.row: [d for d in plan.cells if d.row == c.row] for c in plan.cells} if lines else {"": plan.cells}
        for j, cells in enumerate(groups.values()):
            stats = [mean_sd(results.get(c.slug, []), key) or nan for c in cells]
            ref = [(i, paper[(c.row, c.column)][k]) for i, c in enumerate(cells) if (c.row, c.column) in paper]
            if lines:
                xs = [c.x for c in cells]
                ax.errorbar(xs, *zip(*stats), marker="o", capsize=3, color=f"C{j % 10}", label=cells[0].row)
                if ref:
                    ax.plot([xs[i] for i, _ in ref], [v for _, v in ref], "x--", color=f"C{j % 10}", alpha=0.6)
            else:
                ax.bar(
                    range(len(cells)),
                    [m for m, _ in stats],
                    yerr=[s for _, s in stats],
                    capsize=3,
                    label="ours",
                )
                if ref:
                    ax.scatter(*zip(*ref), marker="_", s=500, color="k", zorder=3, label="paper")
                names = [f"{c.row}\n{c.column}" if c.column else c.row for c in cells]
                ax.set_xticks(range(len(cells)), names, rotation=30, ha="right", fontsize=8)
        if lines:
            ax.plot([], [], "kx--", alpha=0.6, label="paper")
            ax.set_xlabel(f"{plan.column_name.lower()} ratio (%)")
        ax.set_title(f"{metric} (%) on the clean validation split")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{plan.name}: {plan.title}")
    save_png(fig, out_png)
