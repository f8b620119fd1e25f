"""Run the paper's tables as grids of training runs: the engine behind ``nlkd reproduce``.

    nlkd reproduce table2 --data ROOT --out DIR --scale cpu --seeds 0 1 2

A table (:func:`~nlkd.reproduce.tables.build_table`) is a list of cells (:mod:`~nlkd.reproduce.cells`);
each cell is trained once per seed in ``DIR/<table>/<cell slug>/seed<k>/`` with
``train(cfg, resume=True)``, teachers before their students (:mod:`~nlkd.reproduce.grid`), so an
interrupted grid continues where it stopped and finished runs cost nothing. The cell's config is the
scale's base config (``configs/cpu.yaml`` or ``configs/paper.yaml``), then ``--epochs`` and ``--set``,
then the cell's own changes (:mod:`~nlkd.reproduce.scales`). Coarse label folders are written once into
the data root (:mod:`~nlkd.reproduce.coarse_labels`); an existing one must carry the same manifest.
After every round of seeds ``DIR/<table>.md`` and ``DIR/<table>.png`` are rewritten from the finished
runs (:mod:`~nlkd.reproduce.report`: validation metrics of each run's last epoch, on the clean ``val``
split), beside the paper's published numbers (``paper.yaml``, read by :mod:`~nlkd.reproduce.paper`).

Tables share runs: Table 3's 50 % baseline is Table 2's, Table 4's and Table 5's. Before training a
cell, :func:`find_twin` looks under ``DIR`` for a finished run with the same :func:`run_key`;
:func:`reuse_run` then links that run's files into the cell's folder (:mod:`~nlkd.reproduce.reuse`).
"""

from __future__ import annotations

from nlkd.reproduce.cells import Cell, NoiseSpec, TablePlan, select_cells
from nlkd.reproduce.coarse_labels import prepare_data
from nlkd.reproduce.grid import run_table
from nlkd.reproduce.markdown import pooled_gains, render_markdown
from nlkd.reproduce.paper import NOTES, PAPER, PAPER_SETTING
from nlkd.reproduce.plot import plot_table
from nlkd.reproduce.report import write_report
from nlkd.reproduce.results import collect_results, finished_record
from nlkd.reproduce.reuse import find_twin, reuse_run, run_key
from nlkd.reproduce.scales import SCALES, Scale, Setup, cell_config, make_setup, plan_table, run_dir
from nlkd.reproduce.tables import TABLES, build_table

__all__ = [
    "NOTES",
    "PAPER",
    "PAPER_SETTING",
    "SCALES",
    "TABLES",
    "Cell",
    "NoiseSpec",
    "Scale",
    "Setup",
    "TablePlan",
    "build_table",
    "cell_config",
    "collect_results",
    "find_twin",
    "finished_record",
    "make_setup",
    "plan_table",
    "plot_table",
    "pooled_gains",
    "prepare_data",
    "render_markdown",
    "reuse_run",
    "run_dir",
    "run_key",
    "run_table",
    "select_cells",
    "write_report",
]
