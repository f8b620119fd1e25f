"""What every importer produces (:class:`ImportPlan`) and the pieces they share: ids and file pairing.

An importer reads the annotation tool's files up front (class table, file lists, pairing) and returns a
plan; each item's mask is decoded only when :func:`nlkd.data.importers.writer.write_import` writes it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nlkd.data.info import DatasetInfo
from nlkd.errors import DataError
from nlkd.io import IMAGE_EXTENSIONS

__all__ = ["IGNORE_INDEX", "SOURCE_IMAGE_EXTENSIONS", "ImportItem", "ImportPlan", "flat_id", "pair_by_stem"]

#: Mask value of pixels no class covers (crowd regions, VOC's border, a palette's void colour).
IGNORE_INDEX = 255
#: Image files the importers read; .jpg/.jpeg/.png are copied as they are, the others written as PNG.
SOURCE_IMAGE_EXTENSIONS = IMAGE_EXTENSIONS  # the one list nlkd reads (nlkd.io)


@dataclass(frozen=True)
class ImportItem:
    """One image and its annotation. ``read_mask()`` decodes the annotation into an (H, W) uint8 class-index
    mask (raising :class:`DataError` naming ``label_path``); ``label_path`` is the file the mask comes from."""

    id: str
    image_path: Path
    label_path: Path
    read_mask: Callable[[], np.ndarray]


@dataclass
class ImportPlan:
    """An imported split before it is written: the classes, the items, and where they came from
    (``source``: plain values stored under ``source:`` in ``dataset.yaml``, e.g. the category ids; ``notes``:
    comment lines written above them, e.g. what class 0 and the ignore index mean; ``existing_yaml``: the
    ``dataset.yaml`` of a data set whose class indices the masks use, written unchanged)."""

    info: DatasetInfo
    items: list[ImportItem]
    source: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # comment lines at the top of dataset.yaml
    existing_yaml: dict[str, Any] | None = None  # another data set's dataset.yaml whose classes this import takes

    def dataset_yaml(self) -> dict[str, Any]:
        """The ``dataset.yaml`` mapping of the imported data set (``existing_yaml`` as it is, when given)."""
        if self.existing_yaml is not None:
            return dict(self.existing_yaml)
        data: dict[str, Any] = {
            "num_classes": self.info.num_classes,
            "ignore_index": self.info.ignore_index,
            "class_names": list(self.info.class_names),
            "palette": [list(c) for c in self.info.palette[: self.info.num_classes]],
        }
        if self.source:
            data["source"] = self.source
        return data


def flat_id(name: str) -> str:
    """The sample id of a file name relative to its folder: extension dropped, sub-folders joined by ``__``
    (``"2011/a.jpg"`` -> ``"2011__a"``), so every id is one file name in ``ROOT/images/<split>``."""
    path = Path(name.replace("\\", "/"))
    parts = [p for p in path.with_suffix("").parts if p not in ("", ".", "/")]
    return "__".join(parts)


def _files_by_stem(folder: Path, extensions: tuple[str, ...], suffix: str = "") -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.suffix.lower() not in extensions or not p.stem.endswith(suffix):
            continue
        key = p.stem[: len(p.stem) - len(suffix)] if suffix else p.stem
        if key in found:
            raise DataError(f"{p}: two files for id {key!r} (also {found[key].name})")
        found[key] = p
    if not found:
        raise DataError(f"{folder}: no {'/'.join(extensions)} files" + (f" ending in {suffix!r}" if suffix else ""))
    return found


def pair_by_stem(
    images: str | os.PathLike[str], masks: str | os.PathLike[str], mask_suffix: str = ""
) -> list[tuple[str, Path, Path]]:
    """``[(id, image, mask), ...]`` sorted by id: images and ``<id><mask_suffix>.png`` masks matched by name.

    Raises :class:`DataError` naming the first image without a mask or mask without an image.
    """
    image_files = _files_by_stem(Path(images), SOURCE_IMAGE_EXTENSIONS)
    mask_files = _files_by_stem(Path(masks), (".png",), mask_suffix)
    for key, path in image_files.items():
        if key not in mask_files:
            raise DataError(f"{path}: no mask {key}{mask_suffix}.png in {masks}")
    for key, path in mask_files.items():
        if key not in image_files:
            raise DataError(f"{path}: no image {key}.* in {images}")
    return [(key, image_files[key], mask_files[key]) for key in sorted(image_files)]
