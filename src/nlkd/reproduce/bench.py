"""``nlkd reproduce noise-bench``: the benchmark that decides which strategy to run on coarse labels.

    nlkd reproduce noise-bench --data ROOT --out DIR --scale cpu --seeds 0 1 2 [--jobs 2]

The setting (resolution, epochs, bf16 + channels_last, the noise kinds, the rows) is the scale's block
of ``noise_bench.yaml`` (:mod:`~nlkd.reproduce.bench_plan`), overridable by ``--epochs``, ``--size`` and
``--set``. Runs are plain ``nlkd train`` processes (:mod:`~nlkd.reproduce.bench_runner`) in
``DIR/noise-bench/<cell>/seed<k>/``; after each one ``DIR/noise-bench.md`` and ``.png`` are rewritten
(:mod:`~nlkd.reproduce.bench_report`), marked PARTIAL until every run finished. The other noise kinds
also run the best rows of the first kind's table, once that table is complete, and any row named there
with ``--cells`` (``reweight-markov50``) before that. ``--archive ARCHIVE``
copies the small files of every finished run into ``ARCHIVE/<cell>/seed<k>/`` after each report and lets
the report count those runs where ``DIR`` has none (:mod:`~nlkd.reproduce.bench_archive`); training
then skips them too, and a student of per-image teacher scores whose teacher has no checkpoint here learns
from the archived scores (:mod:`~nlkd.reproduce.bench_resume`). A row that starts late continues its
baseline's checkpoint of that epoch (:mod:`~nlkd.reproduce.bench_branch`).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

from nlkd.errors import ConfigError
from nlkd.reproduce.bench_archive import archive_runs, check_archive
from nlkd.reproduce.bench_branch import continue_late_students
from nlkd.reproduce.bench_plan import BENCH, BenchSetting, bench_plan, load_bench_setting, rows_of_kind
from nlkd.reproduce.bench_report import write_bench_report
from nlkd.reproduce.bench_resume import plan_from_archive
from nlkd.reproduce.bench_runner import Job, adopt_runs, plan_jobs, run_jobs, running_elsewhere
from nlkd.reproduce.bench_scores import best_rows, collect_runs
from nlkd.reproduce.cells import Cell, TablePlan, select_cells
from nlkd.reproduce.coarse_labels import prepare_data
from nlkd.reproduce.scales import Setup, make_setup

__all__ = ["bench_setup", "run_noise_bench"]


def bench_setup(args: argparse.Namespace) -> tuple[BenchSetting, Setup, list[int]]:
    """The scale's benchmark setting, the setup (base config with the setting and the user's overrides)
    and the seeds."""
    from nlkd.config import parse_set

    setting = load_bench_setting(args.scale)
    overrides = {"data.size": args.size or setting.size, **setting.overrides, **parse_set(args.set)}
    epochs = args.epochs if args.epochs is not None else setting.epochs
    setup = make_setup(args.scale, args.data, args.out, epochs=epochs, overrides=overrides)
    return setting, setup, list(args.seeds) if args.seeds else list(setting.seeds)


def _extra_rows(
    setting: BenchSetting,
    setup: Setup,
    seeds: Sequence[int],
    unavailable: Mapping[str, str],
    archive: Path | None = None,
    named: Sequence[str] | None = None,
) -> dict[str, tuple[str, ...]]:
    """Noise kind -> the rows it runs besides its ``all`` rows: the best rows of the first kind's table
    (its runs and the archived ones) once that table is complete; a row whose cell on that kind is
    ``named`` exactly (``--cells reweight-markov50``: test a promising row there before the first table is
    complete); and a row that already has a finished run on that kind, so that the report shows it."""
    first = setting.noise[0]
    slugs = [r.slug_for(first) for r in rows_of_kind(setting, first)]
    runs = collect_runs(setup.out / BENCH, slugs, setup.base.epochs, archive)
    best = best_rows(setting, first, runs, seeds, unavailable) or []
    extra: dict[str, tuple[str, ...]] = {}
    for kind in setting.noise[1:]:
        own = [r for r in setting.rows if r.kinds != "all" and r.slug not in unavailable]
        ran = collect_runs(setup.out / BENCH, [r.slug_for(kind) for r in own], setup.base.epochs, archive)
        more = [r.slug for r in own if r.slug_for(kind) in (named or ()) or ran[r.slug_for(kind)]]
        rows = (*best, *(s for s in more if s not in best))
        if rows:
            extra[kind.key] = rows
    return extra


def _cells(setting: BenchSetting, plan: TablePlan, patterns: Sequence[str] | None) -> list[Cell]:
    """:func:`select_cells`, whose error also says how to name a row on another noise kind."""
    try:
        return select_cells(plan, patterns)
    except ConfigError as e:
        rows = ", ".join(r.slug for r in setting.rows if not r.clean)
        kinds = ", ".join(k.key for k in setting.noise[1:])
        raise ConfigError(f"{e}; a row runs on another noise kind when named there exactly, ROW-KIND, with KIND one "
                          f"of {kinds} and ROW one of {rows}") from None  # fmt: skip


def _settings(setup: Setup, setting: BenchSetting, seeds: Sequence[int]) -> str:
    c = setup.base
    size = "native size" if c.data.size is None else f"{c.data.size[0]}×{c.data.size[1]}"
    return (
        f"Scale `{setup.scale.name}` (configs/{setup.scale.config_path.name} + noise_bench.yaml): {c.epochs} epochs, "
        f"{size}, batch {c.batch_size}, {c.model.name} ({c.model.encoder or 'default encoder'}, random init), "
        f"{c.optim.name} lr {c.optim.lr:g}, bf16 {c.bf16}, channels_last {c.channels_last}. Seeds "
        f"{' '.join(map(str, seeds))} (paired: every row of a column trains with the same seed). Coarse labels: "
        f"corrupt_dataset seed {setup.noise_seed}, written once into {setup.root}/labels. Teachers of reweight, "
        f"NLKD, band_kd, nlkd_pixel and band_ignore (score, side): the baseline run on the same labels and seed. "
        f"Validation on the clean `{c.data.val_split}` split. The other kinds also run the "
        f"{setting.best_of_first} best rows of the {setting.noise[0].title} table once it is complete, and "
        f"any row asked for on them by name (`--cells ROW-KIND`)."
    )


def _dry_run(jobs: Sequence[Job], unavailable: Mapping[str, str]) -> None:
    print(f"== {BENCH}: {len(jobs)} runs")
    for slug, why in unavailable.items():
        print(f"   row {slug} not available: {why}")
    for job in jobs:
        pid = running_elsewhere(job)
        state = "finished" if job.finished() else f"running (pid {pid})" if pid else "to train"
        print(f"-- {job.cell.slug} seed {job.seed}: {job.cell.row} ({state})\n   {job.command}")


def _report(
    setting: BenchSetting,
    setup: Setup,
    seeds: Sequence[int],
    extra: Mapping[str, Sequence[str]],
    plan: TablePlan,
    unavailable: Mapping[str, str],
    command: str,
    archive: Path | None = None,
) -> Path:
    """Write the report; then, with an ``archive``, archive every finished run (the report scored them)."""
    planned = [c.slug for c in plan.cells]
    settings = _settings(setup, setting, seeds)
    out, epochs = setup.out, setup.base.epochs
    md = write_bench_report(setting, out, epochs, seeds, extra, planned, unavailable, command, settings, plan.notes,
                            archive)  # fmt: skip
    if archive is not None:
        print(f"== archive {archive}: {archive_runs(out / BENCH, archive, epochs)}")
    return md


def run_noise_bench(args: argparse.Namespace, command: str) -> int:
    """Train what is missing and write the report (or only one of the two); 1 if a run failed."""
    setting, setup, seeds = bench_setup(args)
    archive = Path(args.archive) if args.archive else None
    if archive is not None:
        check_archive(archive, setup.out / BENCH)
    _, unavailable = bench_plan(setting, setup.base, setup.info.ignore_index)
    extra = _extra_rows(setting, setup, seeds, unavailable, archive, args.cells)
    failures: list[str] = []
    while True:
        plan, unavailable = bench_plan(setting, setup.base, setup.info.ignore_index, extra)
        report = functools.partial(_report, setting, setup, seeds, extra, plan, unavailable, command, archive)
        jobs = plan_jobs(setup, plan, _cells(setting, plan, args.cells), seeds)
        if archive is not None and not args.report_only:
            jobs = plan_from_archive(jobs, archive, setup.scale.config_path, write=not args.dry_run)
        jobs = continue_late_students(jobs, setup.scale.config_path)
        if args.dry_run:
            _dry_run(jobs, unavailable)
            return 0
        if args.report_only:
            print(f"== {report()}, {setup.out / f'{BENCH}.png'}, {setup.out / f'{BENCH}-curves.png'}")
            return 0
        prepare_data(setup, plan)
        adopt = functools.partial(adopt_runs, source=Path(args.adopt)) if args.adopt else None
        n = args.jobs or setting.jobs
        failures += run_jobs(setup, jobs, n, reuse=not args.no_reuse, on_finish=report, adopt=adopt)
        print(f"== {report()}, {setup.out / f'{BENCH}.png'}, {setup.out / f'{BENCH}-curves.png'}")
        new = _extra_rows(setting, setup, seeds, unavailable, archive, args.cells)
        if new == extra:
            break
        extra = new
        runs_too = "; ".join(f"{kind}: {', '.join(rows)}" for kind, rows in new.items())
        print(f"== the other kinds also run: {runs_too}")
    for line in failures:
        print(f"failed: {line}")
    return 1 if failures else 0
