"""The noise benchmark's plan: its setting (``noise_bench.yaml``, one block per scale), and the cells
of one :class:`~nlkd.reproduce.cells.TablePlan` named ``noise-bench`` (one column per noise kind).

A row whose strategy is not registered, or whose config keys do not exist yet, stays in the plan as
*not available* (with the reason) instead of failing the grid. The ``clean`` row trains on the clean
labels once and serves every noise kind. Students of a teacher (reweight, nlkd, band_kd, ...) learn
from the baseline run of the same labels and seed; so does a row that starts late (it continues that run's
checkpoint of its start epoch: :mod:`~nlkd.reproduce.bench_branch`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from nlkd.config import TrainConfig, apply_overrides
from nlkd.errors import ConfigError
from nlkd.reproduce.cells import Cell, NoiseSpec, TablePlan
from nlkd.teacher_cache import TEACHER_PROB

__all__ = ["BENCH", "BenchRow", "BenchSetting", "NoiseKind", "bench_plan", "load_bench_setting", "teacher_needs"]

BENCH = "noise-bench"


@dataclass(frozen=True)
class NoiseKind:
    """One kind of coarse labels: a table of the benchmark."""

    key: str
    title: str
    labels: str
    mode: str
    ratio: float


@dataclass(frozen=True)
class BenchRow:
    """One method (row). ``kinds``: ``all`` noise kinds or only the ``first``; ``candidate``: may be
    one of the best rows of the first kind that the other kinds also run, and recommended; ``unusable``:
    why a row that is not a candidate cannot be recommended (an oracle, a control); ``control_of``: the
    row this one is the control of (the report gives that row's paired difference to it)."""

    slug: str
    title: str
    changes: dict[str, Any] = field(default_factory=dict)
    kinds: str = "all"
    clean: bool = False
    candidate: bool = False
    unusable: str = ""
    control_of: str = ""

    def slug_for(self, kind: NoiseKind) -> str:
        return "clean" if self.clean else f"{self.slug}-{kind.key}"


@dataclass(frozen=True)
class BenchSetting:
    """A scale's block of ``noise_bench.yaml``."""

    epochs: int
    size: list[int]
    overrides: dict[str, Any]
    seeds: tuple[int, ...]
    jobs: int
    last_k: int
    noise: tuple[NoiseKind, ...]
    rows: tuple[BenchRow, ...]
    best_of_first: int
    detection: dict[str, str]


def load_bench_setting(scale: str, path: Path | None = None) -> BenchSetting:
    """The block ``scale`` of ``noise_bench.yaml`` (or of ``path``)."""
    path = path or Path(str(files("nlkd.reproduce").joinpath("noise_bench.yaml")))
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if scale not in data:
        raise ConfigError(f"{path}: the noise benchmark has no setting for scale {scale!r} (has: {', '.join(data)})")
    d = data[scale]
    try:
        return BenchSetting(
            epochs=int(d["epochs"]),
            size=[int(v) for v in d["size"]],
            overrides=dict(d.get("set") or {}),
            seeds=tuple(int(s) for s in d["seeds"]),
            jobs=int(d.get("jobs", 1)),
            last_k=int(d.get("last_k", 5)),
            noise=tuple(NoiseKind(**k) for k in d["noise"]),
            rows=tuple(
                BenchRow(r["slug"], r["title"], dict(r.get("set") or {}), r.get("kinds", "all"), **_flags(r))
                for r in d["rows"]
            ),
            best_of_first=int(d.get("best_of_first", 0)),
            detection=dict(d.get("detection") or {}),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{path}: bad noise-bench setting for scale {scale!r} ({e!r})") from None


def _flags(row: Mapping[str, Any]) -> dict[str, Any]:
    flags = {"clean": bool(row.get("clean", False)), "candidate": bool(row.get("candidate", False))}
    return {**flags, "unusable": str(row.get("unusable", "")), "control_of": str(row.get("control_of", ""))}


def row_unavailable(row: BenchRow, base: TrainConfig) -> str | None:
    """Why ``row`` cannot run with this nlkd (strategy not registered, unknown config key), or None."""
    from nlkd.strategies import STRATEGIES

    name = str(row.changes.get("strategy.name", "baseline"))
    if name not in STRATEGIES:
        return f"strategy {name!r} is not registered"
    try:
        apply_overrides(base, row.changes)
    except ConfigError as e:
        return str(e).split(";")[0]  # e.g. "unknown config key 'strategy.transform'"
    return None


def teacher_needs(cfg: TrainConfig) -> tuple[bool, bool]:
    """What the strategy of ``cfg``, configured as ``cfg`` sets it (e.g. ``doubt_rule: score``), needs of a
    teacher: ``(its per-image scores, its probability maps)``."""
    from nlkd.strategies import create_strategy

    strategy = create_strategy(cfg.strategy, 2, None, cfg.epochs)  # the class count does not decide it
    return strategy.needs_teacher, TEACHER_PROB in strategy.needs_extras


def needs_teacher(row: BenchRow, base: TrainConfig) -> bool:
    """Whether ``row``'s strategy needs the baseline run as its teacher (scores or probability maps)."""
    return any(teacher_needs(apply_overrides(base, row.changes)))


def starts_late(row: BenchRow, base: TrainConfig) -> bool:
    """Whether ``row``'s strategy starts late (``strategy.start``): it then continues the baseline's run."""
    return apply_overrides(base, row.changes).strategy.start > 0


def rows_of_kind(setting: BenchSetting, kind: NoiseKind, extra: Sequence[str] = ()) -> list[BenchRow]:
    """The rows the table of ``kind`` shows: every row for the first kind, else the ``all`` rows and the
    rows named in ``extra`` (the best rows of the first kind)."""
    first = kind == setting.noise[0]
    return [r for r in setting.rows if first or r.kinds == "all" or r.slug in extra]


def bench_plan(
    setting: BenchSetting,
    base: TrainConfig,
    ignore_index: int | None,
    extra_rows: Mapping[str, Sequence[str]] | None = None,
) -> tuple[TablePlan, dict[str, str]]:
    """The benchmark's cells (teachers first) and the unavailable rows (row slug -> reason).

    Args:
        base: the setup's base config (to check each row's config keys).
        ignore_index: the data set's; polygon labels need one, so 255 is used when it is None.
        extra_rows: noise kind key -> row slugs it runs besides its ``all`` rows.
    """
    cells: list[Cell] = []
    unavailable = {r.slug: why for r in setting.rows if (why := row_unavailable(r, base)) is not None}
    for kind in setting.noise:
        extra = {"data.ignore_index": 255} if kind.mode == "polygon" and ignore_index is None else {}
        baseline = f"baseline-{kind.key}"
        for row in rows_of_kind(setting, kind, (extra_rows or {}).get(kind.key, ())):
            if row.slug in unavailable or any(c.slug == row.slug_for(kind) for c in cells):
                continue
            teacher = baseline if needs_teacher(row, base) or starts_late(row, base) else None
            labels = "train" if row.clean else kind.labels
            column = "" if row.clean else kind.key
            changes = {**({} if row.clean else extra), **row.changes}
            cells.append(Cell(row.slug_for(kind), row.title, column, labels=labels, teacher=teacher, changes=changes))
    cells.sort(key=lambda c: c.teacher is not None)  # teachers (baselines) before their students
    noise = [NoiseSpec(k.labels, k.ratio, k.mode) for k in setting.noise]
    return TablePlan(BENCH, "Which strategy to run on coarse labels", "Noise", cells, noise), unavailable
