"""Run the paper's tables as grids of training runs: the engine behind ``nlkd reproduce``.

    nlkd reproduce table2 --data ROOT --out DIR --scale cpu --seeds 0 1 2

A table (:func:`nlkd.tables.build_table`) is a list of cells; each cell is trained once per seed in
``DIR/<table>/<cell slug>/seed<k>/`` with ``train(cfg, resume=True)``, teachers before their
students, so an interrupted grid continues where it stopped and finished runs cost nothing. The
cell's config is the scale's base config (``configs/cpu.yaml`` or ``configs/paper.yaml``), then
``--epochs`` and ``--set``, then the cell's own changes. Coarse label folders are written once into
the data root by :func:`nlkd.noise.corrupt_dataset`; an existing one must carry the same manifest.
After every round of seeds ``DIR/<table>.md`` and ``DIR/<table>.png`` are rewritten from the
finished runs (validation metrics of each run's last epoch, on the clean ``val`` split).

Tables share runs: Table 3's 50 % baseline is Table 2's, Table 4's and Table 5's. Before training a
cell, :func:`find_twin` looks under ``DIR`` for a finished run with the same :func:`run_key` (its config
apart from where it lives, with its teacher's key in place of the teacher's path); :func:`reuse_run`
then links that run's files into the cell's folder (hard links, or copies across file systems) and
notes the source in ``reused_from.txt``. On CPU training is deterministic per seed (RESULTS.md checks
it), so the linked run is bit for bit the one the cell would train; on a GPU it is a run of the same
config.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from nlkd.config import TrainConfig, apply_overrides, config_to_dict, load_config
from nlkd.data.folder import IMAGE_EXTENSIONS
from nlkd.data.info import DatasetInfo, load_dataset_info
from nlkd.errors import DataError, NLKDError
from nlkd.io import atomic_write_bytes, atomic_write_text
from nlkd.noise import corrupt_dataset, load_manifest
from nlkd.tables import NOTES, PAPER, PAPER_SETTING, Cell, NoiseSpec, TablePlan, build_table

__all__ = [
    "SCALES",
    "Scale",
    "Setup",
    "cell_config",
    "collect_results",
    "find_twin",
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
    "write_report",
]

Log = Callable[[str], Any]


@dataclass(frozen=True)
class Scale:
    """A set of experiment settings: the base config file and the grid choices kept in code."""

    name: str
    seeds: tuple[int, ...]  # default --seeds
    ratios: tuple[float, ...]  # Table 2's noise ratios
    teacher_model: str | None  # reweight/NLKD teacher trained on the same labels; None = the baseline row

    @property
    def config_path(self) -> Path:
        return Path(str(files("nlkd").joinpath("configs", f"{self.name}.yaml")))


SCALES: dict[str, Scale] = {
    "cpu": Scale("cpu", (0, 1, 2), (0.0, 0.1, 0.3, 0.5), None),
    "paper": Scale("paper", (0, 1, 2), (0.0, 0.1, 0.2, 0.3, 0.4, 0.5), "pointrend"),
}


@dataclass
class Setup:
    """Everything fixed for one ``nlkd reproduce`` call: data root, output folder, base config."""

    scale: Scale
    root: Path
    out: Path
    base: TrainConfig
    info: DatasetInfo
    noise_seed: int = 0  # seed of corrupt_dataset; the coarse labels are the same for every run
    ratios: tuple[float, ...] = ()


def make_setup(
    scale: str,
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    epochs: int | None = None,
    overrides: dict[str, Any] | None = None,
    ratios: Sequence[float] | None = None,
) -> Setup:
    """Base config = ``configs/<scale>.yaml`` + ``epochs`` + ``overrides``, with the data root set."""
    if scale not in SCALES:
        raise NLKDError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    sc, root = SCALES[scale], Path(root).resolve()
    changes: dict[str, Any] = {"data.root": str(root), **({"epochs": epochs} if epochs is not None else {})}
    if (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir():
        changes["data.format"] = "cityscapes"
    base = load_config(sc.config_path, {**changes, **(overrides or {})})
    if base.data.format == "folder":
        if not (root / "labels" / "train").is_dir():
            raise DataError(f"{root / 'labels' / 'train'}: clean training labels not found (ROOT/labels/train)")
        info = load_dataset_info(root, base.data.num_classes, base.data.ignore_index)
    else:
        from nlkd.train import dataset_info

        info = dataset_info(base)
    return Setup(sc, root, Path(out).resolve(), base, info, ratios=tuple(ratios or sc.ratios))


def plan_table(setup: Setup, name: str) -> TablePlan:
    """The cells of table ``name`` for this setup (see :func:`nlkd.tables.build_table`)."""
    return build_table(
        name,
        root=setup.root,
        ratios=setup.ratios,
        teacher_model=setup.scale.teacher_model,
        base_model=setup.base.model.name,
        ignore_index=setup.info.ignore_index,
        data_format=setup.base.data.format,
    )


def run_dir(setup: Setup, table: str, slug: str, seed: int) -> Path:
    return setup.out / table / slug / f"seed{seed}"


def cell_config(setup: Setup, plan: TablePlan, cell: Cell, seed: int) -> TrainConfig:
    """The training config of ``cell`` for ``seed`` (its teacher: the teacher cell's ``last.pt``)."""
    changes: dict[str, Any] = {"data.train_split": cell.split, "data.labels": cell.labels, "seed": seed}
    changes["out"] = str(run_dir(setup, plan.name, cell.slug, seed))
    if cell.teacher is not None:
        changes["strategy.teacher"] = str(run_dir(setup, plan.name, cell.teacher, seed) / "last.pt")
    return apply_overrides(setup.base, {**changes, **cell.changes})


def _clean_subset(root: Path, spec: NoiseSpec, corrupted: list[str]) -> None:
    """Table 1: split ``<name>_clean`` (links to the uncorrupted pairs) and the list of coarse ids."""
    bad = set(corrupted)
    for kind, exts in (("images", IMAGE_EXTENSIONS), ("labels", (".png",))):
        src, dst = root / kind / "train", root / kind / spec.clean_split
        wanted = {p.name: p for p in src.iterdir() if p.suffix.lower() in exts and p.stem not in bad}
        dst.mkdir(parents=True, exist_ok=True)
        extra = sorted(p.name for p in dst.iterdir() if p.name not in wanted)
        if extra:
            raise DataError(f"{dst / extra[0]}: not part of the clean subset; delete {dst} and run again")
        for name, path in wanted.items():
            if (dst / name).exists():
                continue
            try:
                (dst / name).symlink_to(os.path.relpath(path, dst))
            except FileExistsError:  # made meanwhile by another process of the same grid (--seeds k each)
                continue
            except OSError:  # no symlinks (e.g. Windows without the privilege): copy
                (dst / name).write_bytes(path.read_bytes())
    listing = root / "splits" / f"{spec.name}.txt"
    text = "".join(f"{i}\n" for i in corrupted)
    if not listing.is_file() or listing.read_text() != text:
        atomic_write_text(listing, text)


def prepare_data(setup: Setup, plan: TablePlan, log: Log = print) -> None:
    """Write the plan's coarse label folders (and Table 1's clean subset) unless they exist."""
    src = setup.root / "labels" / "train"
    for spec in plan.noise:
        dst = setup.root / "labels" / spec.name
        ignore = setup.info.ignore_index
        if spec.mode == "polygon" and ignore is None:
            ignore = 255
        expected = {"mode": spec.mode, "ratio": float(spec.ratio), "seed": setup.noise_seed, "params": {}}
        expected.update(ignore_index=ignore, source=str(src.resolve()))
        manifest = load_manifest(dst)
        if manifest is None:
            log(f"== writing {dst} ({spec.mode}, {spec.ratio:.1%} of the masks, seed {setup.noise_seed})")
            manifest = corrupt_dataset(src, dst, spec.ratio, spec.mode, setup.noise_seed, ignore)  # type: ignore[arg-type]
        diffs = [f"{k} {manifest.get(k)!r} (want {v!r})" for k, v in expected.items() if manifest.get(k) != v]
        if diffs:
            raise DataError(f"{dst}: exists with other settings ({'; '.join(diffs)}); delete it or use another ROOT")
        if spec.subset:
            _clean_subset(setup.root, spec, list(manifest["corrupted"]))


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


def finished_record(folder: Path, epochs: int) -> dict[str, Any] | None:
    """The last ``metrics.jsonl`` record of the run in ``folder`` if it reached ``epochs``, else None."""
    path = folder / "metrics.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    record = json.loads(lines[-1]) if lines else {}  # written atomically: the last line is whole
    return record if record.get("epoch") == epochs and (folder / "last.pt").is_file() else None


def run_key(cfg: TrainConfig) -> str:
    """What makes two runs the same run: the config without ``out``, the teacher's path replaced by the
    teacher run's own key (read from the ``config.yaml`` beside its checkpoint; a checkpoint that is no
    run folder's keeps its path). Settings that cannot change the numbers are kept too: conservative."""
    d = config_to_dict(cfg)
    d.pop("out")
    teacher = d["strategy"]["teacher"]
    if teacher is not None and (Path(teacher).parent / "config.yaml").is_file():
        d["strategy"]["teacher"] = {"run": run_key(load_config(Path(teacher).parent / "config.yaml"))}
    return json.dumps(d, sort_keys=True)


def find_twin(setup: Setup, cfg: TrainConfig) -> Path | None:
    """A finished run under ``setup.out`` (``<table>/<cell>/seed<k>/``) with the same :func:`run_key` as
    ``cfg``, other than ``cfg.out`` itself; None if there is none."""
    key, own = run_key(cfg), Path(cfg.out).resolve()
    for path in sorted(setup.out.glob("*/*/seed*/config.yaml")):
        folder = path.parent
        if folder.resolve() == own or finished_record(folder, cfg.epochs) is None:
            continue
        try:
            if run_key(load_config(path)) == key:
                return folder
        except NLKDError:  # e.g. a config of an older nlkd: not a twin
            continue
    return None


def reuse_run(source: Path, cfg: TrainConfig) -> None:
    """Make ``cfg.out`` the finished run ``source``: hard links to its files (copies where linking fails),
    ``config.yaml`` written for ``cfg``, and ``reused_from.txt`` naming the source."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    atomic_write_text(out / "reused_from.txt", f"{source.resolve()}\n")
    files = [p for p in source.iterdir() if p.is_file() and not p.name.startswith(".")]
    files = [p for p in files if p.name not in ("config.yaml", "reused_from.txt")]
    # metrics.jsonl last: the run counts as finished (finished_record) only once everything is in place
    for src in sorted(files, key=lambda p: (p.name == "metrics.jsonl", p.name)):
        tmp = out / f".{src.name}.link"
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, out / src.name)


def _settings(setup: Setup, seeds: Sequence[int]) -> str:
    c, scale = setup.base, setup.scale
    size = "native size" if c.data.size is None else f"{c.data.size[0]}×{c.data.size[1]}"
    return " ".join(
        [
            f"Scale `{scale.name}` (configs/{scale.config_path.name}): epochs {c.epochs}, batch {c.batch_size},",
            f"{size}, {c.optim.name} lr {c.optim.lr:g} wd {c.optim.weight_decay:g}, {c.optim.schedule} schedule,",
            f"student {c.model.name}; teacher of reweight/NLKD in Tables 1–3:",
            f"{scale.teacher_model or 'the baseline trained on the same labels'}.",
            f"Seeds {' '.join(map(str, seeds))};",
            f"metrics of each run's last epoch on `{c.data.val_split}`, BF tolerance {c.eval_tolerance:g} px.",
        ]
    )


def _mean_sd(records: list[dict[str, Any]], key: str) -> tuple[float, float] | None:
    """(mean, sample std) in percent of ``key`` over records; None without records."""
    values = [100 * float(r[key]) for r in records]
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _paired_diffs(records: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> list[dict[str, float]]:
    """``{key: run - base run of the same seed}`` for each run whose seed has a base run."""
    by_seed = {r.get("seed"): float(r[key]) for r in base}
    return [{key: float(r[key]) - by_seed[r.get("seed")]} for r in records if r.get("seed") in by_seed]


def _paired_gain(records: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> tuple[float, float] | None:
    """(mean, sample std) in percent of ``key`` minus the ``base`` run's of the same seed; None when no
    seed has both."""
    return _mean_sd(_paired_diffs(records, base, key), key)


def pooled_gains(plan: TablePlan, results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Markdown lines: each row's gain over the plan's first row (the baseline), paired by column and
    seed and pooled over all columns where both ran (Table 2: every noise ratio). Per row: the columns,
    the number of pairs, mean ± sample std of the mIoU and BF gains (percent) and how many pairs gained
    mIoU. Empty when no row has a pair."""
    rows = list(dict.fromkeys(c.row for c in plan.cells))
    base = {c.column: c for c in plan.cells if c.row == rows[0]}
    out = []
    for row in rows[1:]:
        cols, miou, bf = [], [], []
        for cell in (c for c in plan.cells if c.row == row and c.column in base):
            runs, base_runs = results.get(cell.slug, []), results.get(base[cell.column].slug, [])
            pairs = _paired_diffs(runs, base_runs, "val_miou")
            if pairs:
                cols.append(cell.column)
                miou += pairs
                bf += _paired_diffs(runs, base_runs, "val_bf")
        if not cols:
            continue
        (m_miou, sd_miou), (m_bf, sd_bf) = _mean_sd(miou, "val_miou"), _mean_sd(bf, "val_bf")  # type: ignore[misc]
        wins = sum(d["val_miou"] > 0 for d in miou)
        gains = f"{m_miou:+.2f} ± {sd_miou:.2f} | {m_bf:+.2f} ± {sd_bf:.2f}"
        out.append(f"| {row} | {', '.join(cols)} | {len(miou)} | {gains} | {wins}/{len(miou)} |")
    if not out:
        return []
    what = (plan.column_name or "column").lower()
    return [
        f"Gain over the {rows[0]} run of the same {what} and seed, pooled over the {what} columns:",
        "",
        "| Method | Pooled over | Pairs | mIoU gain | BF gain | Pairs with mIoU gain > 0 |",
        "|---|---|---:|---:|---:|---:|",
        *out,
        "",
    ]


def render_markdown(
    plan: TablePlan,
    results: dict[str, list[dict[str, Any]]],
    *,
    n_seeds: int,
    command: str,
    settings: str,
    failures: Sequence[str] = (),
) -> str:
    """``DIR/<table>.md``: one line per cell, ours (mean ± sample std over seeds) beside the paper's.

    Args:
        results: cell slug -> last records of its finished runs (``val_miou``, ``val_bf`` as fractions,
            ``seed`` when known: the last column lists each run).
        n_seeds: seeds asked for (the Seeds column shows finished/asked).
        command: the command line that produced the table; settings: a paragraph on the setup.
        failures: one line per failed run.
    """
    paper = PAPER.get(plan.name, {})
    col = [plan.column_name] if plan.column_name else []
    head = ["Method", *col, "mIoU (ours)", "BF (ours)", "mIoU (paper)", "BF (paper)", "Seeds", "Per seed (mIoU / BF)"]
    lines = [f"# {plan.name}: {plan.title}", "", "Produced by:", "", f"    {command}", "", settings, ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in plan.cells:
        recs = results.get(cell.slug, [])
        ours = []
        for key in ("val_miou", "val_bf"):
            ms = _mean_sd(recs, key)
            ours.append("not run" if ms is None else f"{ms[0]:.2f}" + (f" ± {ms[1]:.2f}" if len(recs) > 1 else ""))
        theirs = paper.get((cell.row, cell.column))
        ref = [f"{v:.2f}" for v in theirs] if theirs else ["—", "—"]
        where = [cell.column] if col else []
        each = ", ".join(
            (f"s{r['seed']} " if "seed" in r else "") + f"{100 * r['val_miou']:.2f} / {100 * r['val_bf']:.2f}"
            for r in recs
        )
        lines.append("| " + " | ".join([cell.row, *where, *ours, *ref, f"{len(recs)}/{n_seeds}", each]) + " |")
    lines += [
        "",
        "mIoU and BF in percent on the clean validation split. Ours: mean ± sample std over the",
        "finished seeds. '—': the paper reports no such run.",
        "",
    ]
    if plan.is_line_table:
        lines += pooled_gains(plan, results)
    lines += [
        "Notes:",
        "",
    ]
    lines += [f"- {n}" for n in (PAPER_SETTING, *NOTES.get(plan.name, []), *plan.notes)]
    if failures:
        lines += ["", "Failed runs:", "", *(f"- {f}" for f in failures)]
    return "\n".join([*lines, "", f"![{plan.name}]({plan.name}.png)", ""])


def _plot_gains(axes: Sequence[Any], plan: TablePlan, results: dict[str, list[dict[str, Any]]]) -> None:
    """Line tables: each row's gain over the first row (the baseline) at the same x, ours (paired by
    seed, error bars = std of the per-seed gains) beside the paper's (dashed)."""
    paper = PAPER.get(plan.name, {})
    rows = list(dict.fromkeys(c.row for c in plan.cells))
    base = {c.x: c for c in plan.cells if c.row == rows[0]}
    for k, (ax, key, metric) in enumerate(zip(axes, ("val_miou", "val_bf"), ("mIoU", "BF"))):
        for j, row in enumerate(rows[1:], start=1):
            cells = [c for c in plan.cells if c.row == row and c.x in base]
            ours = [(c.x, _paired_gain(results.get(c.slug, []), results.get(base[c.x].slug, []), key)) for c in cells]
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
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lines = plan.is_line_table
    fig = Figure(figsize=(13, 9 if lines else 5), layout="constrained")
    FigureCanvasAgg(fig)
    paper = PAPER.get(plan.name, {})
    axes = fig.subplots(2 if lines else 1, 2, squeeze=False)
    if lines:
        _plot_gains(axes[1], plan, results)
    for k, (ax, key, metric) in enumerate(zip(axes[0], ("val_miou", "val_bf"), ("mIoU", "BF"))):
        nan = (math.nan, 0.0)
        groups = {c.row: [d for d in plan.cells if d.row == c.row] for c in plan.cells} if lines else {"": plan.cells}
        for j, cells in enumerate(groups.values()):
            stats = [_mean_sd(results.get(c.slug, []), key) or nan for c in cells]
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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(out_png, buf.getvalue())


def write_report(setup: Setup, plan: TablePlan, seeds: Sequence[int], command: str, failures: list[str]) -> Path:
    """Write ``DIR/<table>.md`` and ``DIR/<table>.png`` from the finished runs; returns the markdown path."""
    results = collect_results(setup, plan, seeds)
    text = render_markdown(
        plan, results, n_seeds=len(seeds), command=command, settings=_settings(setup, seeds), failures=failures
    )
    md = setup.out / f"{plan.name}.md"
    atomic_write_text(md, text)
    plot_table(plan, results, setup.out / f"{plan.name}.png")
    return md


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
    """Train every cell of ``plan`` (or only ``cells``, see :func:`nlkd.tables.select_cells`) for
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
