"""What a table is made of: the label folders it writes (:class:`NoiseSpec`), its runs (:class:`Cell`)
and the plan of one table (:class:`TablePlan`), plus :func:`select_cells` for ``--cells``."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nlkd.errors import ConfigError

__all__ = ["Cell", "NoiseSpec", "TablePlan", "select_cells"]


@dataclass(frozen=True)
class NoiseSpec:
    """A label folder ``ROOT/labels/<name>`` written by ``corrupt_dataset(ROOT/labels/train, ...)``.

    With ``subset`` (Table 1) the uncorrupted ids also form a split ``<name>_clean`` (images and labels,
    as symlinks) and the corrupted ids are listed in ``ROOT/splits/<name>.txt``.
    """

    name: str
    ratio: float
    mode: str
    subset: bool = False

    @property
    def clean_split(self) -> str:
        return f"{self.name}_clean"


@dataclass(frozen=True)
class Cell:
    """One run of a table (per seed): ``DIR/<table>/<slug>/seed<k>/``.

    Attributes:
        slug: folder name, unique in the table.
        row, column: where the result goes in the table (column "" for tables without columns).
        x: numeric position for line plots (Table 2: noise ratio in percent), else None.
        labels, split: label folder under ``ROOT/labels`` and image split under ``ROOT/images``.
        teacher: slug of the cell whose ``last.pt`` is the teacher (same seed), or None.
        changes: dotted config overrides on top of the scale's base config.
    """

    slug: str
    row: str
    column: str = ""
    x: float | None = None
    labels: str = "train"
    split: str = "train"
    teacher: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)

    @property
    def strategy(self) -> str:
        return str(self.changes.get("strategy.name", "baseline"))


@dataclass
class TablePlan:
    """The cells of one table (teachers first), the label folders it needs, and notes for the report."""

    name: str
    title: str
    column_name: str
    cells: list[Cell]
    noise: list[NoiseSpec] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def is_line_table(self) -> bool:
        """Every cell has an ``x`` (Table 2's noise ratio): plotted as lines, gains pooled over ``x``."""
        return all(c.x is not None for c in self.cells)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for cell in self.cells:
            if cell.slug in seen:
                raise ValueError(f"table {self.name}: cell slug {cell.slug!r} appears twice")
            if cell.teacher is not None and cell.teacher not in seen:
                raise ValueError(f"table {self.name}: cell {cell.slug!r} comes before its teacher {cell.teacher!r}")
            seen.add(cell.slug)


def select_cells(plan: TablePlan, patterns: Sequence[str] | None) -> list[Cell]:
    """The cells of ``plan`` whose slug matches one of the shell ``patterns`` (``nlkd-*``, ``*-r50``),
    with the teachers they need, in the plan's order (teachers first); all cells when ``patterns`` is
    None. A pattern that matches no cell is a :class:`ConfigError` naming the table's cells.
    """
    if patterns is None:
        return list(plan.cells)
    slugs = [c.slug for c in plan.cells]
    wanted: set[str] = set()
    for pattern in patterns:
        hits = fnmatch.filter(slugs, pattern)
        if not hits:
            raise ConfigError(f"--cells {pattern!r} matches no cell of {plan.name}; its cells: {', '.join(slugs)}")
        wanted.update(hits)
    by_slug = {c.slug: c for c in plan.cells}
    for slug in list(wanted):
        teacher = by_slug[slug].teacher
        while teacher is not None and teacher not in wanted:
            wanted.add(teacher)
            teacher = by_slug[teacher].teacher
    return [c for c in plan.cells if c.slug in wanted]
