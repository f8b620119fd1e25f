"""What a data set is: its classes (:class:`DatasetInfo`) and its image/mask pairs (:class:`Sample`).

``ROOT/dataset.yaml`` is optional and may hold exactly these keys::

    num_classes: 11
    ignore_index: 11          # or null: every pixel counts
    class_names: [Sky, Building, ...]
    palette: [[128, 128, 128], [128, 0, 0], ...]
    source: {format: coco, category_ids: [null, 1, 3]}   # written by ``nlkd import``; not read

Explicit arguments to :func:`load_dataset_info` (``--num-classes``, ``--ignore-index``) override it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nlkd.errors import ConfigError, DataError, did_you_mean

__all__ = ["DatasetInfo", "Sample", "check_data_root", "default_palette", "load_dataset_info"]

RGB = tuple[int, int, int]
_YAML_KEYS = ("num_classes", "ignore_index", "class_names", "palette", "source")


@dataclass(frozen=True)
class Sample:
    """One image/annotation pair. ``mask_path`` is a PNG mask, or the annotation file of a format
    that is decoded into a mask (e.g. a Supervisely JSON)."""

    id: str
    image_path: Path
    mask_path: Path


def default_palette(n: int) -> list[RGB]:
    """``n`` distinct colours (the PASCAL VOC bit-interleaving scheme: 0 is black, 1 dark red, ...)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    palette = []
    for i in range(n):
        r = g = b = 0
        c = i
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette.append((r, g, b))
    return palette


@dataclass
class DatasetInfo:
    """Classes of a data set. Masks are 8-bit, so classes and ``ignore_index`` lie in 0..255.

    Attributes:
        num_classes: number of classes C; valid mask values are 0..C-1 (plus ``ignore_index``).
        ignore_index: mask value that counts for nothing (void), or None when every pixel counts.
        class_names: C names; ``class_0``, ``class_1``, ... when not given.
        palette: at least C RGB colours for visualisation; :func:`default_palette` when not given.
    """

    num_classes: int
    ignore_index: int | None = None
    class_names: list[str] = field(default_factory=list)
    palette: list[RGB] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise ValueError(f"num_classes must be an int, got {self.num_classes!r}")
        if not 1 <= self.num_classes <= 256:
            raise ValueError(f"num_classes must lie in 1..256 (8-bit masks), got {self.num_classes}")
        if self.ignore_index is not None and (
            isinstance(self.ignore_index, bool)
            or not isinstance(self.ignore_index, int)
            or not 0 <= self.ignore_index <= 255
        ):
            raise ValueError(f"ignore_index must be None or an int in 0..255, got {self.ignore_index!r}")
        if not self.class_names:
            self.class_names = [f"class_{i}" for i in range(self.num_classes)]
        self.class_names = [str(n) for n in self.class_names]
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names must have num_classes={self.num_classes} entries, got {len(self.class_names)}"
            )
        if not self.palette:
            self.palette = default_palette(self.num_classes)
        self.palette = [tuple(int(v) for v in c) for c in self.palette]  # type: ignore[misc]
        if len(self.palette) < self.num_classes or any(
            len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in self.palette
        ):
            raise ValueError(
                f"palette must hold at least {self.num_classes} RGB triples in 0..255, got {self.palette!r}"
            )

    def valid_values(self) -> np.ndarray:
        """Boolean lookup table of shape (256,): True for 0..C-1 and ``ignore_index``."""
        table = np.zeros(256, dtype=bool)
        table[: self.num_classes] = True
        if self.ignore_index is not None:
            table[self.ignore_index] = True
        return table

    def invalid_values(self, mask: np.ndarray) -> list[int]:
        """Sorted distinct values of an integer mask of any shape that are neither a class nor ignored."""
        mask = np.asarray(mask)
        if mask.dtype == np.uint8:
            present = np.bincount(mask.ravel(), minlength=256) > 0
            return [int(v) for v in np.flatnonzero(present & ~self.valid_values())]
        values = np.unique(mask)
        ok = (values >= 0) & (values < self.num_classes)
        if self.ignore_index is not None:
            ok |= values == self.ignore_index
        return [int(v) for v in values[~ok]]

    def check_mask(
        self, mask: np.ndarray, path: object, image: tuple[int, ...] | None = None, image_name: object = None
    ) -> None:
        """Refuse the (H, W) ``mask`` read from ``path`` (a one-line :class:`DataError` naming it) when its size
        differs from ``image`` ((H, W) of the image ``image_name``, when given) or it holds values that are
        neither a class nor ignored."""
        if image is not None and tuple(image[:2]) != mask.shape:
            raise DataError(
                f"{path}: mask {mask.shape[0]}×{mask.shape[1]} (H×W) does not match image "
                f"{image[0]}×{image[1]} ({image_name})"
            )
        bad = self.invalid_values(mask)
        if bad:
            raise DataError(f"{path}: values {bad[:10]} outside {self.describe_range()}")

    def describe_range(self) -> str:
        """Human-readable valid range, e.g. ``"0..10 (ignore_index 11)"``."""
        ignore = "no ignore_index" if self.ignore_index is None else f"ignore_index {self.ignore_index}"
        return f"0..{self.num_classes - 1} ({ignore})"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of {', '.join(_YAML_KEYS)}; got {type(data).__name__}")
    for key in data:
        if key not in _YAML_KEYS:
            hint = did_you_mean(key, _YAML_KEYS)
            raise ConfigError(f"{path}: unknown key {key!r}{hint}; allowed keys: {', '.join(_YAML_KEYS)}")
    return data


def check_data_root(root: str | os.PathLike[str]) -> None:
    """What every command taking ``--data`` (and ``data.root`` of a training) says first when it is not a
    folder, before reading a checkpoint or any setting of the data set."""
    if not Path(root).is_dir():
        raise DataError(f"{root}: data folder not found")


def load_dataset_info(
    root: str | os.PathLike[str],
    num_classes: int | None = None,
    ignore_index: int | None = None,
) -> DatasetInfo:
    """Class information of the data set at ``root``: ``ROOT/dataset.yaml`` overridden by arguments.

    ``None`` arguments mean "not given" (take the yaml value). Raises :class:`DataError` when the
    number of classes is known from neither, :class:`ConfigError` for an unknown or invalid yaml key.
    """
    path = Path(root) / "dataset.yaml"
    data = _read_yaml(path) if path.is_file() else {}
    explicit = {k for k, v in (("num_classes", num_classes), ("ignore_index", ignore_index)) if v is not None}
    if num_classes is not None:
        data["num_classes"] = num_classes
    if ignore_index is not None:
        data["ignore_index"] = ignore_index
    if data.get("num_classes") is None:
        raise DataError(
            f"{root}: number of classes unknown; pass --num-classes N or write {path} "
            "with 'num_classes: N' (and optionally ignore_index, class_names, palette)"
        )
    for key, kind, expected in (
        ("num_classes", int, "an int"),
        ("ignore_index", (int, type(None)), "an int or null"),
        ("class_names", list, "a list of names"),
        ("palette", list, "a list of [R, G, B] triples"),
    ):
        if key in data and (isinstance(data[key], bool) or not isinstance(data[key], kind)):
            raise ConfigError(f"{_source(path, key, explicit)}: {key} must be {expected}, got {data[key]!r}")
    try:
        return DatasetInfo(
            num_classes=data["num_classes"],
            ignore_index=data.get("ignore_index"),
            class_names=list(data.get("class_names") or []),
            palette=list(data.get("palette") or []),
        )
    except (TypeError, ValueError) as e:
        key = next((k for k in _YAML_KEYS if str(e).startswith(k)), "")
        raise ConfigError(f"{_source(path, key, explicit)}: {e}") from None


def _source(path: Path, key: str, explicit: set[str]) -> str:
    """Where a value came from, for error messages: the argument or the yaml file."""
    return f"--{key.replace('_', '-')}" if key in explicit else str(path)
