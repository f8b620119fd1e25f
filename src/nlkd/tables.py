"""The paper's five tables as data: the runs (cells) that make each table, and the paper's numbers.

A :class:`Cell` is one row (and column) of a table: the changes to the scale's base config, the label
folder trained on, and the slug of the cell whose network is its teacher. :func:`build_table` returns
a :class:`TablePlan` with teachers listed before their students. :data:`PAPER` holds the paper's
numbers under our row and column labels, :data:`NOTES` what to keep in mind when comparing.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlkd.errors import ConfigError

__all__ = [
    "NOTES",
    "PAPER",
    "PAPER_SETTING",
    "PRETTY",
    "TABLES",
    "Cell",
    "NoiseSpec",
    "TablePlan",
    "build_table",
    "select_cells",
]

TABLES: tuple[str, ...] = ("table1", "table2", "table3", "table4", "table5")
PRETTY = {"unet": "U-Net", "deeplabv3plus": "DeepLabv3+", "ocrnet": "OCRNet", "pointrend": "PointRend"}
#: Table 1's extra coarse share: the paper adds 500 coarse images to 4000 clean ones.
EXTRA_SHARE = 500 / 4500


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
        raise ConfigError(f"unknown table {name!r}; choose one of: {', '.join(TABLES)}, all")
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


def _paper_table2() -> dict[tuple[str, str], tuple[float, float]]:
    cols = ("0 %", "10 %", "20 %", "30 %", "40 %", "50 %")
    rows = {  # mIoU/BF per noise ratio; None where the paper ran nothing
        "baseline": "87.10/60.01 86.14/55.79 86.13/52.37 84.64/48.62 84.60/44.30 84.74/43.96",
        "reweight (mIoU)": "- 86.69/57.60 85.89/53.93 86.38/52.71 85.03/50.02 85.13/43.91",
        "reweight (BF)": "- 87.04/59.34 86.60/58.05 85.99/57.53 85.63/53.48 84.45/50.14",
        "NLKD (BF)": "- 87.28/59.51 86.85/58.45 86.20/57.39 85.86/54.63 85.63/54.12",
        "reweight (BFmIoU)": "- 86.62/57.31 86.82/57.31 87.24/58.46 87.08/57.89 84.95/46.63",
        "NLKD (BFmIoU)": "87.76/61.12 87.44/59.74 86.94/57.95 86.77/58.55 87.41/59.67 86.80/58.03",
    }
    out = {}
    for row, text in rows.items():
        for col, pair in zip(cols, text.split()):
            if pair != "-":
                miou, bf = pair.split("/")
                out[(row, col)] = (float(miou), float(bf))
    return out


#: The paper's (mIoU, BF) in percent, keyed by table and (row label, column label) of our cells.
PAPER: dict[str, dict[tuple[str, str], tuple[float, float]]] = {
    "table1": {
        ("clean only", ""): (86.88, 59.77),
        ("clean + coarse", ""): (86.14, 55.79),
        ("clean + coarse ×0.5", ""): (87.44, 59.74),
    },
    "table2": _paper_table2(),
    "table3": {
        ("baseline", "fine"): (87.10, 60.01),
        ("NLKD", "fine"): (87.76, 61.12),
        ("baseline", "dilate/erode 50 %"): (84.74, 43.96),
        ("NLKD", "dilate/erode 50 %"): (86.80, 58.03),
        ("baseline", "polygon 50 %"): (59.79, 34.01),
        ("NLKD", "polygon 50 %"): (62.56, 42.98),
        ("baseline", "Cityscapes fine"): (67.97, 45.50),
        ("NLKD", "Cityscapes fine"): (69.51, 48.16),
        ("baseline", "Cityscapes coarse"): (59.79, 34.01),
        ("NLKD", "Cityscapes coarse"): (62.56, 42.98),
    },
    "table4": {
        ("U-Net, baseline", ""): (84.74, 43.96),
        ("U-Net ← OCRNet, NLKD", ""): (85.16, 48.92),
        ("U-Net ← PointRend, NLKD", ""): (86.80, 58.03),
        ("DeepLabv3+, baseline", ""): (86.70, 50.41),
        ("DeepLabv3+ ← OCRNet, NLKD", ""): (87.59, 56.12),
        ("DeepLabv3+ ← PointRend, NLKD", ""): (87.95, 58.06),
    },
    "table5": {
        ("U-Net, baseline", ""): (84.74, 43.96),
        ("Decoupling (peer DeepLabv3+)", ""): (84.12, 43.41),
        ("Co-teaching (peer DeepLabv3+)", ""): (84.14, 44.57),
        ("Co-teaching+ (peer DeepLabv3+)", ""): (83.16, 41.56),
        ("NLKD (teacher DeepLabv3+)", ""): (85.92, 51.63),
    },
}
NOTES: dict[str, list[str]] = {
    "table1": [
        f"The extra coarse share is {EXTRA_SHARE:.1%} of the training images (paper: 500 coarse images "
        "added to 4000 clean ones); 'clean only' trains on the other images. The paper has no NLKD row "
        "in Table 1 (its ×0.5 numbers equal those of NLKD (BFmIoU) at 10 % in Table 2)."
    ],
    "table2": ["Paper rows: 'Reweight' = teacher-only weights (our reweight), 'Reweight + KD' = NLKD."],
    "table3": [
        "Paper data sets: fine = Supervisely Fine, dilate/erode = Supervisely Manual Coarse (whose "
        "validation labels were coarsened too; ours stay clean), polygon = Cityscapes Official Coarse "
        "(every training image coarse; ours: half of them). With --data at a Cityscapes root the "
        "columns are Cityscapes' own gtFine and gtCoarse training labels (validation: gtFine)."
    ],
    "table5": ["Two-network rows report network A (U-Net). The paper's NLKD row uses DeepLabv3+ as teacher."],
}
PAPER_SETTING = (
    "Paper: Supervisely person (Tables 1, 2, 4, 5; coarse = dilate/erode) and Cityscapes, full "
    "resolution, 100 epochs on GPUs. Compare orderings and gaps, not absolute numbers."
)
