"""COCO panoptic annotations (JSON ``segments_info`` + PNGs of segment ids) -> semantic masks.

A panoptic PNG holds each pixel's segment id as ``R + 256·G + 256²·B``; ``segments_info`` gives every
segment's ``category_id`` and ``iscrowd``. Classes are :mod:`nlkd.data.importers.coco`'s (0 = background,
then the categories by increasing id); segments cannot overlap; the PNG's void (id 0) and crowd segments
are the ignore index 255. Read by ``nlkd import coco`` when the JSON's annotations carry ``segments_info``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from nlkd.data.importers.common import IGNORE_INDEX, ImportItem, flat_id
from nlkd.data.importers.palette import colour_mask_to_index, read_colour_mask
from nlkd.errors import DataError

__all__ = ["panoptic_items", "panoptic_semantic_mask", "segment_lookup"]


def _packed_colour(segment_id: int) -> int:
    """The packed colour ``(r << 16) | (g << 8) | b`` of a segment id ``r + 256 g + 256² b``."""
    r, g, b = segment_id & 255, (segment_id >> 8) & 255, (segment_id >> 16) & 255
    return (r << 16) | (g << 8) | b


def segment_lookup(segments: list[dict[str, Any]], class_of: dict[int, int]) -> dict[int, int]:
    """Packed PNG colour -> mask value: void (id 0) and crowd segments 255, others their category's class.

    Raises ``ValueError`` naming the segment for a malformed entry or a category id not in ``class_of``.
    """
    lookup = {0: IGNORE_INDEX}
    for seg in segments:
        if not isinstance(seg, dict) or not isinstance(seg.get("id"), int) or not 0 < seg["id"] < 1 << 24:
            raise ValueError(f"every segment needs an int 'id' in 1..2^24-1, got {seg!r:.80}")
        if seg.get("category_id") not in class_of:
            raise ValueError(f"segment {seg['id']}: category_id {seg.get('category_id')!r} is not in categories")
        lookup[_packed_colour(seg["id"])] = IGNORE_INDEX if seg.get("iscrowd") else class_of[seg["category_id"]]
    return lookup


def panoptic_semantic_mask(png: Path, lookup: dict[int, int], json_path: Path) -> np.ndarray:
    """(H, W) uint8 class indices of a panoptic PNG; :class:`DataError` naming the PNG for a segment id the
    JSON does not list."""
    mask, unknown = colour_mask_to_index(read_colour_mask(png), lookup)
    if unknown:
        (r, g, b), n = unknown[0]
        raise DataError(f"{png}: segment id {r + 256 * g + 65536 * b} ({n} pixels) not in {json_path}'s segments_info")
    return mask


def panoptic_items(
    path: Path,
    annotations: list[Any],
    entries: dict[Any, dict[str, Any]],
    image_dir: Path,
    png_dir: Path,
    class_of: dict[int, int],
) -> list[ImportItem]:
    """One item per image entry of the JSON ``path``; its mask is the annotation's PNG in ``png_dir``.

    Checked before anything is written: every annotation refers to a listed image, names an existing PNG and
    lists valid segments; every image has an annotation and a file.
    """
    by_image: dict[Any, tuple[Path, dict[int, int]]] = {}
    for ann in annotations:
        ok = (
            isinstance(ann, dict)
            and isinstance(ann.get("file_name"), str)
            and isinstance(ann.get("segments_info"), list)
        )
        if not ok:
            raise DataError(f"{path}: every panoptic annotation needs 'file_name' and 'segments_info', got {ann!r:.80}")
        if ann.get("image_id") not in entries:
            raise DataError(f"{path}: annotation {ann['file_name']}: image_id {ann.get('image_id')!r} is not in images")
        png = png_dir / ann["file_name"]
        if not png.is_file():
            raise DataError(f"{png}: panoptic PNG not found (listed in {path})")
        try:
            by_image[ann["image_id"]] = (png, segment_lookup(ann["segments_info"], class_of))
        except ValueError as e:
            raise DataError(f"{path}: annotation {ann['file_name']}: {e}") from None
    items = []
    for image_id, entry in entries.items():
        image_path = image_dir / entry["file_name"]
        if image_id not in by_image:
            raise DataError(f"{image_path}: no panoptic annotation in {path}")
        if not image_path.is_file():
            raise DataError(f"{image_path}: image file not found (listed in {path})")
        png, lookup = by_image[image_id]
        items.append(
            ImportItem(flat_id(entry["file_name"]), image_path, png, partial(panoptic_semantic_mask, png, lookup, path))
        )
    return items
