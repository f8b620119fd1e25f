"""Reading finished runs: a run counts once its ``metrics.jsonl`` reached the last epoch and its
``last.pt`` exists (an archived run, which keeps no checkpoint, once its ``metrics.jsonl`` did)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nlkd.reproduce.cells import TablePlan
from nlkd.reproduce.scales import Setup, run_dir

__all__ = ["collect_results", "finished_record", "last_epoch_record"]


def collect_results(setup: Setup, plan: TablePlan, seeds: Sequence[int]) -> dict[str, list[dict[str, Any]]]:
    """Cell slug -> the last ``metrics.jsonl`` records of its finished runs (``epoch == epochs``), each
    with its ``seed``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for cell in plan.cells:
        out[cell.slug] = []
        for seed in seeds:
            record = finished_record(run_dir(setup, plan.name, cell.slug, seed), setup.base.epochs)
            if record is not None:
                out[cell.slug].append({**record, "seed": seed})
    return out


def last_epoch_record(folder: Path, epochs: int) -> dict[str, Any] | None:
    """The last ``metrics.jsonl`` record in ``folder`` if it reached ``epochs``, else None (no checkpoint
    needed: what an archived run must show)."""
    path = folder / "metrics.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    record = json.loads(lines[-1]) if lines else {}  # written atomically: the last line is whole
    return record if record.get("epoch") == epochs else None


def finished_record(folder: Path, epochs: int) -> dict[str, Any] | None:
    """The last ``metrics.jsonl`` record of the run in ``folder`` if it reached ``epochs`` and its
    ``last.pt`` exists, else None."""
    record = last_epoch_record(folder, epochs)
    return record if record is not None and (folder / "last.pt").is_file() else None
