"""The paper's five tables as plans: which runs (cells) make each table, teachers before students.

:func:`build_table` returns the :class:`~nlkd.reproduce.cells.TablePlan` of one table for a data set;
the row and column labels of its cells are those under which :data:`nlkd.reproduce.paper.PAPER` holds
the paper's numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nlkd.errors import ConfigError, did_you_mean
from nlkd.reproduce.cells import Cell, NoiseSpec, TablePlan

__all__ = ["EXTRA_SHARE", "PRETTY", "TABLES", "TITLES", "build_table"]

TABLES: tuple[str, ...] = ("table1", "table2", "table3", "table4", "table5")
PRETTY = {"unet": "U-Net", "deeplabv3plus": "DeepLabv3+", "ocrnet": "OCRNet", "pointrend": "PointRend"}
#: Table 1's extra coarse share: the paper adds 500 coarse images to 4000 clean ones.
EXTRA_SHARE = 500 / 4500


# (slug prefix, row label, config changes, teacher: None | "default" | a model name)
Row = tuple[str, str, dict[str, Any], str | None]


class _Builder:
    """Collects a table's cells; makes each teacher cell once and puts it before its first student."""

    def __init__(self, teacher_model: str | None, base_model: str, registered: Sequence[str]) -> None:
        self.teacher_model, self.base_model, self.registered = teacher_model, base_model, set(registered)
        self.cells: list[Cell] = []
        self.notes: list[str] = []

    def model(self, name: str) -> dict[str, Any]:
        """Changes that switch the network; other networks use their factory defaults."""
        if name == self.base_model:
            return {}
        return {"model.name": name, "model.encoder": None, "model.encoder_weights": None, "model.options": {}}

    def add(
        self,
        rows: list[Row],
        suffix: str = "",
        column: str = "",
        x: float | None = None,
        *,
        labels: str = "train",
        split: str = "train",
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Add ``rows`` for one column (slug suffix ``suffix``), training on ``labels`` / ``split``."""
        where = {"column": column, "x": x, "labels": labels, "split": split}
        extra = extra or {}
        for prefix, row, changes, teacher in rows:
            strategy = changes.get("strategy.name", "baseline")
            if strategy not in self.registered:
                self.notes.append(f"Row '{row}' skipped: strategy {strategy!r} is not registered.")
                continue
            slug = _slug(prefix, suffix)
            model = self.teacher_model if teacher == "default" else teacher
            teacher_slug = None
            if teacher == "default" and model is None:
                teacher_slug = _slug("baseline", suffix)  # the baseline trained on the same labels
            elif model is not None:
                teacher_slug = _slug("teacher", model, suffix)
                if all(c.slug != teacher_slug for c in self.cells):
                    label = f"teacher: {PRETTY.get(model, model)}, baseline"
                    self.cells.append(Cell(teacher_slug, label, changes={**extra, **self.model(model)}, **where))
            self.cells.append(Cell(slug, row, teacher=teacher_slug, changes={**extra, **changes}, **where))


def _slug(*parts: str) -> str:
    return "-".join(p for p in parts if p)


def _pct(ratio: float) -> str:
    return f"{100 * ratio:g}"


TITLES = {
    "table1": ("Clean set + extra coarse set (paper Table 1)", ""),
    "table2": ("Noise ratio × weighting metric (paper Table 2)", "Noise"),
    "table3": ("Fine and coarse training labels (paper Table 3)", "Labels"),
    "table4": ("Students × teachers on 50 % dilate/erode labels (paper Table 4)", ""),
    "table5": ("U-Net with a DeepLabv3+ peer: NLKD vs. sample selection (paper Table 5)", ""),
}
_NLKD = {"strategy.name": "nlkd"}
_BASE: Row = ("baseline", "baseline", {}, None)
_DE50 = NoiseSpec("train_de50", 0.5, "dilate_erode")


def _table1(b: _Builder, root: Path, **_: Any) -> list[NoiseSpec]:
    spec = NoiseSpec("train_extra11", EXTRA_SHARE, "dilate_erode", subset=True)
    b.add([("clean-only", "clean only", {}, None)], labels=spec.clean_split, split=spec.clean_split)
    fixed = {"strategy.name": "fixed", "strategy.coarse_weight": 0.5}
    fixed["strategy.coarse_list"] = str(root / "splits" / f"{spec.name}.txt")
    rows: list[Row] = [
        ("baseline", "clean + coarse", {}, None),
        ("fixed", "clean + coarse ×0.5", fixed, None),
    ]
    b.add([*rows, ("nlkd", "clean + coarse, NLKD", _NLKD, "default")], labels=spec.name)
    return [spec]


def _table2(b: _Builder, ratios: Sequence[float], **_: Any) -> list[NoiseSpec]:
    rows: list[Row] = [_BASE]
    for strategy, label in (("reweight", "reweight"), ("nlkd", "NLKD")):
        for metric, name in (("miou", "mIoU"), ("bf", "BF"), ("bfmiou", "BFmIoU")):
            if (strategy, metric) != ("nlkd", "miou"):  # a row the paper does not have
                changes = {"strategy.name": strategy, "strategy.metric": metric}
                rows.append((f"{strategy}-{metric}", f"{label} ({name})", changes, "default"))
    noise = []
    for ratio in ratios:
        if not 0 <= ratio <= 1:
            raise ConfigError(f"noise ratio must lie in [0, 1], got {ratio!r}")
        labels = "train" if ratio == 0 else f"train_de{_pct(ratio)}"
        if ratio:
            noise.append(NoiseSpec(labels, ratio, "dilate_erode"))
        b.add(rows, f"r{_pct(ratio)}", f"{_pct(ratio)} %", 100 * ratio, labels=labels)
    return noise


def _table3(b: _Builder, ignore_index: int | None, data_format: str, **_: Any) -> list[NoiseSpec]:
    rows = [_BASE, ("nlkd", "NLKD", _NLKD, "default")]
    if data_format == "cityscapes":  # the paper's own second data set: official fine and coarse labels
        b.add(rows, "fine", "Cityscapes fine", labels="gtFine")
        b.add(rows, "coarse", "Cityscapes coarse", labels="gtCoarse")
        return []
    b.add(rows, "fine", "fine", labels="train")
    b.add(rows, "de50", "dilate/erode 50 %", labels="train_de50")
    poly = {"data.ignore_index": 255} if ignore_index is None else {}  # polygon labels need an ignore label
    b.add(rows, "poly50", "polygon 50 %", labels="train_poly50", extra=poly)
    return [_DE50, NoiseSpec("train_poly50", 0.5, "polygon")]


def _table4(b: _Builder, **_: Any) -> list[NoiseSpec]:
    for student in ("unet", "deeplabv3plus"):
        s, net = PRETTY[student], b.model(student)
        rows: list[Row] = [(f"{student}-baseline", f"{s}, baseline", net, None)]
        for t in ("ocrnet", "pointrend"):
            rows.append((f"{student}-nlkd-{t}", f"{s} ← {PRETTY[t]}, NLKD", {**net, **_NLKD}, t))
        b.add(rows, labels="train_de50")
    return [_DE50]


def _table5(b: _Builder, **_: Any) -> list[NoiseSpec]:
    rows: list[Row] = [("baseline", "U-Net, baseline", {}, None)]
    two_network = (
        ("decoupling", "Decoupling"),
        ("coteaching", "Co-teaching"),
        ("coteaching_plus", "Co-teaching+"),
    )
    for strategy, label in two_network:
        changes = {"strategy.name": strategy, "strategy.peer_model": "deeplabv3plus"}
        rows.append((strategy.replace("_", "-"), f"{label} (peer DeepLabv3+)", changes, None))
    rows.append(("nlkd", "NLKD (teacher DeepLabv3+)", _NLKD, "deeplabv3plus"))
    b.add(rows, labels="train_de50")
    return [_DE50]


_BUILDERS = {"table1": _table1, "table2": _table2, "table3": _table3, "table4": _table4, "table5": _table5}


def build_table(
    name: str,
    *,
    root: Path,
    ratios: Sequence[float],
    teacher_model: str | None,
    base_model: str = "unet",
    ignore_index: int | None = None,
    data_format: str = "folder",
    registered: Sequence[str] | None = None,
) -> TablePlan:
    """The plan of table ``name`` for the data set at ``root``.

    Args:
        root: data root (absolute); Table 1's coarse id list lives in ``root/splits``.
        ratios: Table 2's noise ratios in [0, 1].
        teacher_model: network of the reweight/NLKD teacher (a baseline trained on the same labels),
            or None for the baseline row of the same labels. Tables 4 and 5 name their teachers.
        base_model: the scale's student network (U-Net).
        ignore_index: the data set's; polygon labels need one, so 255 is used when it is None.
        data_format: the data set's layout. Tables that write coarse label folders need ``folder``;
            on a Cityscapes root Table 3 trains on its official fine and coarse labels instead.
        registered: strategy names that exist (default: those of :mod:`nlkd.strategies`); rows of
            other strategies are left out, with a note in the report.
    """
    if name not in _BUILDERS:
        raise ConfigError(
            f"unknown table {name!r}{did_you_mean(name, TABLES)}; choose one of: {', '.join(TABLES)}, all"
        )
    if data_format != "folder" and (name, data_format) != ("table3", "cityscapes"):
        raise ConfigError(
            f"{name} writes coarse label folders into ROOT/labels and needs the folder layout, not "
            f"{data_format!r} (on a Cityscapes root only table3 runs)"
        )
    if registered is None:
        from nlkd.strategies import STRATEGIES

        registered = list(STRATEGIES)
    b = _Builder(teacher_model, base_model, registered)
    noise = _BUILDERS[name](b, root=root, ratios=ratios, ignore_index=ignore_index, data_format=data_format)
    title, column_name = TITLES[name]
    return TablePlan(name, title, column_name, b.cells, noise, b.notes)
