"""Train a table's cells for every seed (teachers first, finished runs skipped, twins linked) and
rewrite its report after each seed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nlkd.errors import NLKDError
from nlkd.reproduce.cells import Cell, TablePlan
from nlkd.reproduce.coarse_labels import prepare_data
from nlkd.reproduce.report import write_report
from nlkd.reproduce.results import finished_record
from nlkd.reproduce.reuse import find_twin, reuse_run
from nlkd.reproduce.scales import Log, Setup, cell_config

__all__ = ["run_table"]


def run_table(
    setup: Setup,
    plan: TablePlan,
    seeds: Sequence[int],
    command: str,
    log: Log = print,
    *,
    reuse: bool = True,
    cells: Sequence[Cell] | None = None,
) -> list[str]:
    """Train every cell of ``plan`` (or only ``cells``, see :func:`nlkd.reproduce.cells.select_cells`) for
    every seed (seed by seed, teachers first) and write the report of the whole table.

    Finished runs are skipped; with ``reuse`` a cell whose twin finished in another table of
    ``setup.out`` links that run (:func:`find_twin`, :func:`reuse_run`) instead of training it.

    A run that fails with an :class:`NLKDError` (e.g. a diverging loss) is reported and skipped with
    its students; the others go on. Returns one line per failed run (empty when all finished).
    """
    from nlkd.train import train

    prepare_data(setup, plan, log)
    failures: list[str] = []
    failed: set[tuple[str, int]] = set()
    todo = plan.cells if cells is None else cells
    for seed in seeds:
        for i, cell in enumerate(todo, start=1):
            if cell.teacher is not None and (cell.teacher, seed) in failed:
                failed.add((cell.slug, seed))
                failures.append(f"{cell.slug} seed {seed}: not run, its teacher {cell.teacher} failed")
                continue
            cfg = cell_config(setup, plan, cell, seed)
            where = f"{plan.name} seed {seed} [{i}/{len(todo)}] {cell.slug}"
            if finished_record(Path(cfg.out), cfg.epochs) is not None:
                continue
            twin = find_twin(setup, cfg) if reuse else None
            if twin is not None:
                reuse_run(twin, cfg)
                log(f"== {where}: same run as {twin}, reused")
                continue
            log(f"== {where}: {cell.row} -> {cfg.out}")
            try:
                train(cfg, resume=True, log=log)
            except NLKDError as e:
                failed.add((cell.slug, seed))
                failures.append(f"{cell.slug} seed {seed}: {e}")
                log(f"!! {cell.slug} seed {seed} failed: {e}")
        md = write_report(setup, plan, seeds, command, failures)
        log(f"== {plan.name}: {md} updated after seed {seed}")
    return failures
