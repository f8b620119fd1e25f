"""``nlkd reproduce``: the paper's Tables 1-5 as grids of training runs on your data set.

    nlkd reproduce table2 --data ROOT --out DIR --scale cpu --seeds 0 1 2
    nlkd reproduce all --data ROOT --out DIR --scale paper --dry-run

ROOT needs images/{train,val}, labels/{train,val} and dataset.yaml (num_classes, ignore_index); the
coarse label folders each table needs are written into ROOT/labels once. A Cityscapes root
(leftImg8bit/, gtFine/, gtCoarse/) runs Table 3 on Cityscapes' own fine and coarse labels. Each table writes
DIR/<table>.md (ours, mean ± std over seeds, beside the paper's numbers) and DIR/<table>.png; its runs
live in DIR/<table>/<cell>/seed<k>/, and running the same command again continues an interrupted grid.
--scale cpu (configs/cpu.yaml) finishes on a 2-core CPU; --scale paper (configs/paper.yaml) holds the
paper's settings for GPUs. --dry-run prints every run as an `nlkd train` command and trains nothing;
--report-only rewrites the tables from the runs that finished (e.g. seeds trained by separate processes
or machines into the same DIR) and trains nothing. A cell whose run already finished in another
table under DIR (same config, same teacher, same seed) links that run instead of training it again;
--no-reuse trains every cell itself. --cells trains a part of one table first (e.g. the 50 % column:
--cells '*-r50'), with the teachers those cells need.

noise-bench (issue 14) trains its runs as `nlkd train` processes, --jobs at a time, and writes
DIR/noise-bench.md (the decision, then one table per noise kind, paired 95 % intervals, PARTIAL until
complete), DIR/noise-bench.png (gains) and DIR/noise-bench-curves.png (validation curves); --adopt DIR
links runs trained elsewhere at the same config. --archive ARCHIVE
(e.g. results/noise-bench, committed to git) keeps the small files of every finished run
(metrics.jsonl, config.yaml, posthoc_eval.json; no checkpoints) in ARCHIVE/<cell>/seed<k>/ after each
report: runs kept in ARCHIVE count for the tables and are not trained again (unless a student needs the
checkpoint of a teacher kept there), and a student of per-image teacher scores learns from a teacher_scores.csv
kept there when its teacher has no run in DIR.
"""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING

from nlkd.commands._common import size_arg
from nlkd.reproduce.cells import Cell, TablePlan, select_cells
from nlkd.reproduce.scales import SCALES
from nlkd.reproduce.tables import TABLES
from nlkd.reproduce.train_command import train_command

if TYPE_CHECKING:
    from nlkd.reproduce.scales import Setup

__all__ = ["command_line", "register", "run", "train_command"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="re-run the paper's tables (grids of trainings) and compare",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("table", choices=[*TABLES, "all", "noise-bench"],
                   help="which table (all: one after the other; noise-bench: which strategy to run on coarse "
                   "labels, issue 14)")  # fmt: skip
    p.add_argument("--data", required=True, metavar="ROOT", help="data root with a clean train and val split")
    p.add_argument("--out", required=True, metavar="DIR", help="where runs, tables and plots go")
    p.add_argument("--scale", default="cpu", help=f"experiment settings: {' | '.join(SCALES)} (default cpu)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="K", help="training seeds (default: 0 1 2)")
    p.add_argument("--epochs", type=int, metavar="N", help="override the scale's number of epochs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the scale's config for every run, e.g. device=cuda")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the runs as commands, train nothing")
    p.add_argument("--report-only", action="store_true", help="write the tables from finished runs, train nothing")
    p.add_argument("--cells", nargs="+", metavar="GLOB",
                   help="train only the cells whose name matches (e.g. 'baseline-*' '*-r50'), with their "
                   "teachers; the report still covers the whole table. noise-bench: an exact name such as "
                   "'reweight-markov50' runs that row on another noise kind before the first kind's table "
                   "picks its best rows")  # fmt: skip
    p.add_argument("--no-reuse", action="store_true", help="train every cell, even one another table already ran")
    p.add_argument("--size", type=size_arg, metavar="HxW", help="override the training resolution, e.g. 120x160")
    p.add_argument("--jobs", type=int, metavar="N", help="noise-bench: runs trained at once (default: the setting's)")
    p.add_argument("--adopt", metavar="DIR",
                   help="noise-bench: link finished runs under DIR trained at the same config (e.g. a setting "
                   "search) instead of training them again")  # fmt: skip
    p.add_argument("--archive", metavar="ARCHIVE",
                   help="noise-bench: after each report copy every finished run's small files (metrics.jsonl, "
                   "config.yaml, posthoc_eval.json) into ARCHIVE/<cell>/seed<k>/ (e.g. results/noise-bench, "
                   "in git); runs kept in ARCHIVE count for the tables and are not trained again, and students "
                   "of per-image teacher scores learn from the teacher_scores.csv kept there")  # fmt: skip
    p.set_defaults(func=run)


def command_line(args: argparse.Namespace, seeds: list[int]) -> str:
    """The command, with the defaults spelled out (what the reports say produced them)."""
    parts = ["nlkd", "reproduce", args.table, "--data", args.data, "--out", args.out, "--scale", args.scale]
    parts += ["--seeds", *map(str, seeds)]
    if args.epochs is not None:
        parts += ["--epochs", str(args.epochs)]
    if args.size is not None:
        parts += ["--size", "x".join(map(str, args.size))]
    for item in args.set:
        parts += ["--set", item]
    return shlex.join(parts)


def _dry_run(setup: Setup, plan: TablePlan, seeds: list[int], no_reuse: bool, cells: list[Cell]) -> None:
    from nlkd.noise import load_manifest
    from nlkd.reproduce.results import collect_results
    from nlkd.reproduce.reuse import find_twin
    from nlkd.reproduce.scales import cell_config, run_dir

    n = len(cells)
    of = "" if n == len(plan.cells) else f" of {len(plan.cells)}"
    print(f"== {plan.name}: {plan.title}: {n}{of} cells x {len(seeds)} seeds = {n * len(seeds)} runs")
    for spec in plan.noise:
        folder = setup.root / "labels" / spec.name
        state = "exists" if load_manifest(folder) is not None else "to be written"
        print(f"   labels {folder}: {spec.mode}, {spec.ratio:.1%} of the masks ({state})")
    for note in plan.notes:
        print(f"   note: {note}")
    for seed in seeds:
        done = collect_results(setup, plan, [seed])
        for cell in cells:
            cfg = cell_config(setup, plan, cell, seed)
            started = (run_dir(setup, plan.name, cell.slug, seed) / "last.pt").is_file()
            state = "finished" if done[cell.slug] else "started" if started else "new"
            twin = find_twin(setup, cfg) if state != "finished" and not no_reuse else None
            state = f"{state}; same run as {twin}" if twin is not None else state
            teacher = f", teacher {cell.teacher}" if cell.teacher else ""
            column = f" [{cell.column}]" if cell.column else ""
            print(f"-- {cell.slug} seed {seed}: {cell.row}{column}, labels {cell.labels}{teacher} ({state})")
            print(f"   {train_command(setup.scale.config_path, cfg)}")
    print(f"   report: {setup.out / f'{plan.name}.md'}")


def run(args: argparse.Namespace) -> int:
    from nlkd.config import parse_set
    from nlkd.errors import ConfigError
    from nlkd.reproduce.grid import run_table
    from nlkd.reproduce.report import write_report
    from nlkd.reproduce.scales import make_setup, plan_table
    from nlkd.runtime import resolve_device

    if args.cells and args.table == "all":
        raise ConfigError("--cells picks cells of one table; name the table instead of 'all'")
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs: expected an int >= 1, got {args.jobs}")
    if args.table == "noise-bench":
        from nlkd.reproduce.bench import bench_setup, run_noise_bench

        return run_noise_bench(args, command_line(args, bench_setup(args)[2]))
    if args.jobs is not None or args.adopt is not None or args.archive is not None:
        raise ConfigError("--jobs, --adopt and --archive apply to noise-bench only")
    sizes = {"data.size": args.size} if args.size is not None else {}
    setup = make_setup(args.scale, args.data, args.out, epochs=args.epochs, overrides={**sizes, **parse_set(args.set)})
    if not (args.dry_run or args.report_only):  # once here, not as a failure of every run
        resolve_device(setup.base.device, cpu_flag="--set device=cpu")
    seeds = list(args.seeds) if args.seeds else list(setup.scale.seeds)
    command = command_line(args, seeds)
    failures: list[str] = []
    names = TABLES if args.table == "all" else (args.table,)
    if args.table == "all" and setup.base.data.format == "cityscapes":
        print("== Cityscapes layout: only table3 applies (the other tables write coarse label folders)")
        names = ("table3",)
    for name in names:
        plan = plan_table(setup, name)
        cells = select_cells(plan, args.cells)
        if args.dry_run:
            _dry_run(setup, plan, seeds, args.no_reuse, cells)
            continue
        if args.report_only:
            write_report(setup, plan, seeds, command, [])
        else:
            failures += run_table(setup, plan, seeds, command, reuse=not args.no_reuse, cells=cells)
        print(f"== {name}: {setup.out / f'{name}.md'}, {setup.out / f'{name}.png'}")
    for line in failures:
        print(f"failed: {line}")
    return 1 if failures else 0
