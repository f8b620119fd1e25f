"""The paper's published numbers and the notes for comparing with them, read from ``paper.yaml``.

:data:`PAPER` maps a table name to ``{(row label, column label): (mIoU, BF)}`` in percent, under the
labels of our cells (:mod:`nlkd.reproduce.tables`); :data:`NOTES` holds what to keep in mind per table,
:data:`PAPER_SETTING` the paper's setting in one paragraph.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import yaml

__all__ = ["NOTES", "PAPER", "PAPER_SETTING", "load_paper", "parse_numbers"]

Numbers = dict[tuple[str, str], tuple[float, float]]


def parse_numbers(table: dict[str, Any]) -> Numbers:
    """``{"columns": [...], "rows": {row: ["mIoU/BF" | "-", ...]}}`` -> ``{(row, column): (mIoU, BF)}``.

    >>> parse_numbers({"columns": ["a", "b"], "rows": {"r": ["-", "1.5/2"]}})
    {('r', 'b'): (1.5, 2.0)}
    """
    columns = [str(c) for c in table["columns"]]
    out: Numbers = {}
    for row, cells in table["rows"].items():
        if len(cells) != len(columns):
            raise ValueError(f"row {row!r} has {len(cells)} values for {len(columns)} columns")
        for column, pair in zip(columns, cells):
            if pair != "-":
                miou, bf = str(pair).split("/")
                out[(str(row), column)] = (float(miou), float(bf))
    return out


def load_paper() -> tuple[dict[str, Numbers], dict[str, list[str]], str]:
    """(numbers per table, notes per table, setting) from the ``paper.yaml`` shipped with nlkd."""
    data = yaml.safe_load(files("nlkd.reproduce").joinpath("paper.yaml").read_text(encoding="utf-8"))
    numbers = {name: parse_numbers(table) for name, table in data["numbers"].items()}
    notes = {name: [str(n) for n in lines] for name, lines in data["notes"].items()}
    return numbers, notes, str(data["setting"])


#: The paper's (mIoU, BF) in percent, keyed by table and (row label, column label) of our cells.
PAPER, NOTES, PAPER_SETTING = load_paper()
