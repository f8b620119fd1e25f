"""Write a table's report (markdown and plot) from the runs that finished."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nlkd.io import atomic_write_text
from nlkd.reproduce.cells import TablePlan
from nlkd.reproduce.markdown import render_markdown, settings_paragraph
from nlkd.reproduce.plot import plot_table
from nlkd.reproduce.results import collect_results
from nlkd.reproduce.scales import Setup

__all__ = ["write_report"]


def write_report(setup: Setup, plan: TablePlan, seeds: Sequence[int], command: str, failures: list[str]) -> Path:
    """Write ``DIR/<table>.md`` and ``DIR/<table>.png`` from the finished runs; returns the markdown path."""
    results = collect_results(setup, plan, seeds)
    text = render_markdown(
        plan, results, n_seeds=len(seeds), command=command, settings=settings_paragraph(setup, seeds), failures=failures
    )
    md = setup.out / f"{plan.name}.md"
    atomic_write_text(md, text)
    plot_table(plan, results, setup.out / f"{plan.name}.png")
    return md
