"""RGB colour masks (CamVid-style) + a class table YAML -> class-index masks.

The class table (``--classes FILE``) is a YAML list, one entry per class in class-index order; an entry
with ``ignore: true`` is not a class, its colour becomes the ignore index 255::

    - {name: Sky, color: [128, 128, 128]}
    - {name: Building, color: [128, 0, 0]}
    - {name: Void, color: [0, 0, 0], ignore: true}

A mask colour the table does not list is an error naming the mask file and the colour.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from nlkd.data.importers.common import IGNORE_INDEX, ImportItem, ImportPlan, pair_by_stem
from nlkd.data.info import DatasetInfo
from nlkd.errors import ConfigError, DataError

__all__ = [
    "ColourTable",
    "colour_mask_file_to_index",
    "colour_mask_to_index",
    "plan_palette",
    "read_class_table",
    "read_colour_mask",
]

RGB = tuple[int, int, int]
_ENTRY_KEYS = ("name", "color", "ignore")
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclass(frozen=True)
class ColourTable:
    """Classes by colour: ``names[k]`` has colour ``colours[k]`` and mask value ``values[k]`` (default ``k``);
    ``ignore`` colours map to ``ignore_value``."""

    names: list[str]
    colours: list[RGB]
    ignore: list[RGB]
    source: str  # the file (or description) the table came from, for error messages
    values: list[int] | None = None  # mask value of each colour (another data set's class indices)
    ignore_value: int = IGNORE_INDEX

    def lookup(self) -> dict[int, int]:
        """Packed colour ``(r << 16) | (g << 8) | b`` -> mask value (class index or the ignore value)."""
        table = {_pack(c): self.ignore_value for c in self.ignore}
        values = self.values if self.values is not None else range(len(self.colours))
        table.update({_pack(c): v for c, v in zip(self.colours, values)})
        return table

    def info(self) -> DatasetInfo:
        """The data set's classes: these names and colours, ignore index 255 when an ignore colour is given."""
        return DatasetInfo(len(self.names), IGNORE_INDEX if self.ignore else None, self.names, self.colours)


def _pack(colour: RGB) -> int:
    return (colour[0] << 16) | (colour[1] << 8) | colour[2]


def _entry(path: Path, number: int, entry: object) -> tuple[str, RGB, bool]:
    where = f"{path}: entry {number}"
    if not isinstance(entry, dict) or set(entry) - set(_ENTRY_KEYS) or "name" not in entry or "color" not in entry:
        raise ConfigError(f"{where}: expected {{name: ..., color: [R, G, B]}} (optional ignore: true), got {entry!r}")
    colour = entry["color"]
    if (
        not isinstance(colour, list)
        or len(colour) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in colour)
    ):
        raise ConfigError(f"{where}: color must be [R, G, B] with ints in 0..255, got {colour!r}")
    if not isinstance(entry.get("ignore", False), bool):
        raise ConfigError(f"{where}: ignore must be true or false, got {entry['ignore']!r}")
    return str(entry["name"]), (colour[0], colour[1], colour[2]), bool(entry.get("ignore", False))


def read_class_table(path: str | os.PathLike[str]) -> ColourTable:
    """The :class:`ColourTable` of a class table YAML (format: module docstring); :class:`ConfigError`
    naming the file and entry for anything malformed (a repeated colour too)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: class table not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read ({str(e).splitlines()[0]})") from None
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{path}: expected a list of {{name: ..., color: [R, G, B]}} entries")
    names, colours, ignore, seen = [], [], [], {}
    for number, raw in enumerate(data, 1):
        name, colour, is_ignore = _entry(path, number, raw)
        if colour in seen:
            raise ConfigError(f"{path}: entry {number}: color {list(colour)} is also entry {seen[colour]}'s")
        seen[colour] = number
        (ignore if is_ignore else colours).append(colour)
        if not is_ignore:
            names.append(name)
    if not 1 <= len(names) < IGNORE_INDEX:
        raise ConfigError(f"{path}: {len(names)} classes; expected 1..{IGNORE_INDEX - 1} (8-bit masks, 255 = ignore)")
    return ColourTable(names, colours, ignore, str(path))


def read_colour_mask(path: str | os.PathLike[str], shown: str | os.PathLike[str] | None = None) -> np.ndarray:
    """An RGB colour mask as (H, W, 3) uint8 (palette and grey PNGs converted); :class:`DataError` naming
    ``shown`` (default ``path``) if unreadable."""
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{shown or path}: mask file not found") from None
    except _DECODE_ERRORS as e:
        raise DataError(f"{shown or path}: unreadable or truncated mask ({e})") from None


def colour_mask_to_index(rgb: np.ndarray, lookup: dict[int, int]) -> tuple[np.ndarray, list[tuple[RGB, int]]]:
    """Class indices of a colour mask: ``(mask, unknown)``.

    Args:
        rgb: (H, W, 3) uint8 colour mask.
        lookup: packed colour ``(r << 16) | (g << 8) | b`` -> mask value 0..255.

    Returns:
        mask (H, W) uint8 (0 where the colour is unknown) and ``[((r, g, b), pixel count), ...]`` of every
        colour not in ``lookup``, most frequent first.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must have shape (H, W, 3), got {rgb.shape}")
    rgb = rgb.astype(np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    colours, inverse, counts = np.unique(packed, return_inverse=True, return_counts=True)
    values = np.array([lookup.get(int(c), -1) for c in colours], dtype=np.int64)
    unknown = sorted(
        (
            ((int(c) >> 16, (int(c) >> 8) & 255, int(c) & 255), int(n))
            for c, n, v in zip(colours, counts, values)
            if v < 0
        ),
        key=lambda u: -u[1],
    )
    mask = np.maximum(values, 0).astype(np.uint8)[inverse.reshape(packed.shape)]
    return mask, unknown


def colour_mask_file_to_index(path: Path, table: ColourTable, shown: Path | None = None) -> np.ndarray:
    """(H, W) uint8 class indices of the colour mask file ``path``; :class:`DataError` naming the file (as
    ``shown``, e.g. a path inside a zip) and the first unknown colour (and its pixel count) when the table
    lacks a colour."""
    mask, unknown = colour_mask_to_index(read_colour_mask(path, shown), table.lookup())
    if unknown:
        (colour, n), more = unknown[0], len(unknown) - 1
        others = f" and {more} more colour{'s' if more > 1 else ''}" if more else ""
        raise DataError(f"{shown or path}: colour {list(colour)} ({n} pixels){others} not in {table.source}")
    return mask


def plan_palette(
    images: str | os.PathLike[str],
    masks: str | os.PathLike[str],
    classes: str | os.PathLike[str],
    *,
    mask_suffix: str = "",
) -> ImportPlan:
    """The import of colour masks ``masks/<id><mask_suffix>.png`` of images ``images/<id>.*`` with the class
    table ``classes`` (every image needs a mask and every mask an image)."""
    table = read_class_table(classes)
    read = partial(colour_mask_file_to_index, table=table)
    items = [ImportItem(i, img, m, partial(read, m)) for i, img, m in pair_by_stem(images, masks, mask_suffix)]
    notes = [f"written by nlkd import palette with the class table {Path(classes).name}"]
    if table.ignore:
        notes.append(f"255 (ignore_index): the colours {', '.join(str(list(c)) for c in table.ignore)}")
    return ImportPlan(table.info(), items, {"format": "palette"}, notes)
