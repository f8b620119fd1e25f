"""The settings of one ``nlkd reproduce`` call: the scale (base config, seeds, ratios), the data root,
the output folder, and where each cell's run lives and with which config."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from nlkd.config import TrainConfig, apply_overrides, load_config
from nlkd.data.info import DatasetInfo, check_data_root, load_dataset_info
from nlkd.errors import ConfigError, DataError
from nlkd.reproduce.cells import Cell, TablePlan
from nlkd.reproduce.tables import build_table

__all__ = ["SCALES", "Log", "Scale", "Setup", "cell_config", "make_setup", "plan_table", "run_dir"]

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
        raise ConfigError(f"--scale: unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    check_data_root(root)
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
        from nlkd.runtime import dataset_info

        info = dataset_info(base)
    return Setup(sc, root, Path(out).resolve(), base, info, ratios=tuple(ratios or sc.ratios))


def plan_table(setup: Setup, name: str) -> TablePlan:
    """The cells of table ``name`` for this setup (see :func:`nlkd.reproduce.tables.build_table`)."""
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
