"""Pascal VOC ``SegmentationClass`` masks (palette PNGs holding class indices) -> an nlkd data set.

VOC's masks already hold class indices 0..20 (0 = background) in their palette PNG's index plane and 255
on the border band around every object, which stays the ignore index. Two ways to point at the files:

- ``--voc-root VOCdevkit/VOC2012``: images ``JPEGImages/<id>.jpg``, masks ``SegmentationClass/<id>.png``,
  the ids of ``ImageSets/Segmentation/<image set>.txt`` (the image set defaults to ``--split``; when that
  list does not exist, every mask in ``SegmentationClass``);
- ``--images DIR --masks DIR``: images and masks matched by file name (e.g. SBD or a VOC-style export).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nlkd.data.importers.common import IGNORE_INDEX, ImportItem, ImportPlan, pair_by_stem
from nlkd.data.info import DatasetInfo, default_palette
from nlkd.errors import DataError
from nlkd.io import read_pixels

__all__ = ["VOC_CLASSES", "plan_voc", "plan_voc_root", "read_voc_mask"]

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def read_voc_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """The (H, W) class indices of a VOC mask (the index plane of a P PNG, or an L PNG); :class:`DataError`
    naming the file when it is unreadable or a colour image."""
    mode, arr = read_pixels(path, "mask")
    if mode not in ("P", "L"):
        raise DataError(f"{path}: {mode} image; VOC masks are palette (P) PNGs (colour masks: nlkd import palette)")
    return arr


def _voc_info() -> DatasetInfo:
    return DatasetInfo(len(VOC_CLASSES), IGNORE_INDEX, list(VOC_CLASSES), default_palette(len(VOC_CLASSES)))


def _plan(pairs: list[tuple[str, Path, Path]], where: str) -> ImportPlan:
    items = [ImportItem(i, image, mask, lambda m=mask: read_voc_mask(m)) for i, image, mask in pairs]
    notes = [f"written by nlkd import voc from {where}", "255 (ignore_index): VOC's border and 'difficult' regions"]
    return ImportPlan(_voc_info(), items, {"format": "voc"}, notes)


def plan_voc(images: str | os.PathLike[str], masks: str | os.PathLike[str]) -> ImportPlan:
    """The import of VOC-style masks ``masks/<id>.png`` of the images ``images/<id>.*``."""
    return _plan(pair_by_stem(images, masks), str(masks))


def plan_voc_root(root: str | os.PathLike[str], image_set: str | None, split: str) -> ImportPlan:
    """The import of an image set of a VOC devkit folder (``VOCdevkit/VOC2012``; see the module docstring)."""
    root = Path(root)
    mask_dir, image_dir = root / "SegmentationClass", root / "JPEGImages"
    for folder in (mask_dir, image_dir):
        if not folder.is_dir():
            raise DataError(
                f"{folder}: folder not found (--voc-root is the folder holding JPEGImages, SegmentationClass)"
            )
    list_file = root / "ImageSets" / "Segmentation" / f"{image_set or split}.txt"
    if list_file.is_file():
        ids = [line.split()[0] for line in list_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif image_set is not None:
        raise DataError(f"{list_file}: image set not found")
    else:
        ids = sorted(p.stem for p in mask_dir.glob("*.png"))
    pairs = []
    for i in ids:
        mask, image = mask_dir / f"{i}.png", image_dir / f"{i}.jpg"
        if not image.is_file():
            raise DataError(f"{image}: image not found" + (f" (listed in {list_file})" if list_file.is_file() else ""))
        if not mask.is_file():
            raise DataError(f"{image}: no mask {mask}")
        pairs.append((i, image, mask))
    if not pairs:
        raise DataError(f"{list_file if list_file.is_file() else mask_dir}: no images")
    return _plan(pairs, str(root))
