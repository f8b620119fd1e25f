"""COCO instance JSON (polygons, RLE, crowd) -> semantic masks, decoded with ``pycocotools``.

Rules (also written as comments into ``dataset.yaml``):

- classes: 0 = ``background`` (pixels no annotation covers), then the JSON's categories in order of
  their id (class k = the k-th smallest category id); ``dataset.yaml``'s ``source.category_ids`` lists
  the category id of every class (null for background).
- overlaps: annotations are drawn from the largest area (decoded pixels) to the smallest, ties by
  annotation id, so where two objects overlap the smaller one wins (a cup on a table stays a cup).
- crowd regions (``iscrowd: 1``) are the ignore index 255, except where a non-crowd annotation covers
  the pixel.
- images the JSON lists without annotations are all background; files in ``--images`` the JSON does not
  list are left out.
- a panoptic JSON (annotations with ``segments_info``) is read with its PNGs by
  :mod:`nlkd.data.importers.coco_panoptic`: same classes, void and crowd segments 255.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from nlkd.data.importers.coco_panoptic import panoptic_items
from nlkd.data.importers.common import IGNORE_INDEX, ImportItem, ImportPlan, flat_id
from nlkd.data.info import DatasetInfo
from nlkd.errors import DataError, NLKDError

__all__ = ["coco_semantic_mask", "plan_coco", "rle_string_counts"]

Decoder = Callable[[Any, int, int], np.ndarray]


def _mask_api() -> Any:
    try:
        from pycocotools import mask as mask_api
    except ImportError:
        raise NLKDError(
            "nlkd import coco needs pycocotools: pip install 'nlkd[io]' (or pip install pycocotools)"
        ) from None
    return mask_api


def rle_string_counts(counts: bytes) -> list[int]:
    """The run lengths of a compressed COCO RLE string (6-bit characters from ``0``, 5 value bits, bit
    0x20 = more characters follow, bit 0x10 of the last one = negative; from the third run on, each value
    is a difference to the run two before). pycocotools decodes a string whose runs do not fill the image
    into uninitialised memory, so :func:`_decode_segmentation` checks their sum first.

    >>> rle_string_counts(b"04")
    [0, 4]
    """
    runs: list[int] = []
    pos = 0
    while pos < len(counts):
        value = shift = 0
        more = True
        while more:
            if pos >= len(counts):
                raise ValueError("RLE string ends inside a number")
            c = counts[pos] - 48
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos, shift = pos + 1, shift + 5
            if not more and c & 0x10:
                value |= -1 << shift
        runs.append(value + runs[-2] if len(runs) > 2 else value)
    return runs


def _rle(segmentation: Any, height: int, width: int, mask_api: Any) -> Any:
    """The pycocotools RLE object of one COCO ``segmentation``; ``ValueError`` saying what is wrong."""
    if isinstance(segmentation, list):
        if not segmentation or not all(isinstance(p, list) for p in segmentation):
            raise ValueError("polygon segmentation must be a non-empty list of [x1, y1, x2, y2, ...] lists")
        for p in segmentation:  # pycocotools would read a 4-number first polygon as a box
            if len(p) < 6 or len(p) % 2 or not all(isinstance(v, (int, float)) for v in p):
                raise ValueError(f"a polygon needs >= 3 (x, y) points, got {p[:8]}")
        return mask_api.merge(mask_api.frPyObjects(segmentation, height, width))
    if not isinstance(segmentation, dict) or not {"size", "counts"} <= set(segmentation):
        raise ValueError("segmentation must be a polygon list or an RLE {size, counts}")
    if list(segmentation["size"]) != [height, width]:
        raise ValueError(f"RLE size {segmentation['size']} is not the image's [{height}, {width}]")
    counts = segmentation["counts"]
    if isinstance(counts, list):  # uncompressed RLE (crowd regions)
        runs = counts
    elif isinstance(counts, str):
        counts = counts.encode("ascii")
        runs = rle_string_counts(counts)
    else:
        raise ValueError(f"RLE counts must be a list or a string, got {type(counts).__name__}")
    if any(not isinstance(r, int) or r < 0 for r in runs) or sum(runs) != height * width:
        raise ValueError(f"RLE runs must be integers >= 0 adding up to {height}×{width} = {height * width} pixels")
    if isinstance(counts, list):
        return mask_api.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": counts}


def _decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of one COCO ``segmentation``: polygon list, uncompressed or compressed RLE."""
    mask_api = _mask_api()
    return mask_api.decode(_rle(segmentation, height, width, mask_api)).astype(bool)


def coco_semantic_mask(
    annotations: list[dict[str, Any]],
    height: int,
    width: int,
    class_of: dict[int, int],
    *,
    decode: Decoder = _decode_segmentation,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """The (H, W) uint8 class-index mask of one image's COCO annotations (rules: module docstring).

    ``class_of`` maps category id -> class index. Raises ``ValueError`` naming the annotation id for a
    category id not in ``class_of`` or a segmentation it cannot decode.
    """
    mask = np.zeros((height, width), dtype=np.uint8)
    objects = []
    for ann in annotations:
        if ann.get("category_id") not in class_of:
            raise ValueError(f"annotation {ann.get('id')}: category_id {ann.get('category_id')!r} is not in categories")
        try:
            region = decode(ann.get("segmentation"), height, width)
        except (ValueError, TypeError, IndexError) as e:
            raise ValueError(f"annotation {ann.get('id')}: {e}") from None
        if ann.get("iscrowd"):
            mask[region] = ignore_index
        else:
            objects.append((-int(region.sum()), ann.get("id") or 0, region, class_of[ann["category_id"]]))
    for _, _, region, cls in sorted(objects, key=lambda o: (o[0], o[1])):
        mask[region] = cls
    return mask


def _load_coco_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise DataError(f"{path}: expected a COCO object with 'images', 'annotations' and 'categories' lists")
    if not isinstance(data.get("annotations"), list):
        raise DataError(f"{path}: expected a COCO object with 'images', 'annotations' and 'categories' lists")
    return data


def _categories(path: Path, categories: list[Any]) -> tuple[list[int], list[str]]:
    """Category ids in increasing order and their names; :class:`DataError` for a malformed list."""
    by_id: dict[int, str] = {}
    for cat in categories:
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
            raise DataError(f"{path}: every category needs an int 'id' and a str 'name', got {cat!r:.80}")
        if cat["id"] in by_id:
            raise DataError(f"{path}: category id {cat['id']} is given twice")
        by_id[cat["id"]] = cat["name"]
    if not by_id or len(by_id) >= IGNORE_INDEX:
        raise DataError(f"{path}: {len(by_id)} categories; expected 1..{IGNORE_INDEX - 1} (8-bit masks, 255 = ignore)")
    ids = sorted(by_id)
    return ids, [by_id[i] for i in ids]


def _annotations_by_image(
    path: Path, annotations: list[Any], image_ids: set[Any], category_ids: set[int]
) -> dict[Any, list[dict[str, Any]]]:
    grouped: dict[Any, list[dict[str, Any]]] = {}
    for ann in annotations:
        if not isinstance(ann, dict):
            raise DataError(f"{path}: every annotation must be an object, got {ann!r:.80}")
        where = f"{path}: annotation {ann.get('id')!r}"
        if ann.get("image_id") not in image_ids:
            raise DataError(f"{where}: image_id {ann.get('image_id')!r} is not in images")
        if ann.get("category_id") not in category_ids:
            raise DataError(f"{where}: category_id {ann.get('category_id')!r} is not in categories")
        grouped.setdefault(ann["image_id"], []).append(ann)
    return grouped


def _image_mask(
    path: Path, anns: list[dict[str, Any]], height: int, width: int, class_of: dict[int, int]
) -> np.ndarray:
    try:
        return coco_semantic_mask(anns, height, width, class_of)
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None


def _image_entries(path: Path, images: list[Any]) -> dict[Any, dict[str, Any]]:
    entries = {}
    for entry in images:
        ok = isinstance(entry, dict) and isinstance(entry.get("file_name"), str)
        if not ok or not all(isinstance(entry.get(k), int) and entry[k] > 0 for k in ("height", "width")):
            raise DataError(f"{path}: every image needs 'id', 'file_name', 'height' and 'width', got {entry!r:.80}")
        entries[entry.get("id")] = entry
    return entries


def _instance_items(
    path: Path, data: dict[str, Any], entries: dict[Any, dict[str, Any]], image_dir: Path, class_of: dict[int, int]
) -> list[ImportItem]:
    _mask_api()  # a missing pycocotools is reported before anything is written
    grouped = _annotations_by_image(path, data["annotations"], set(entries), set(class_of))
    items = []
    for image_id, entry in entries.items():
        image_path = image_dir / entry["file_name"]
        if not image_path.is_file():
            raise DataError(f"{image_path}: image file not found (listed in {path})")
        read = partial(_image_mask, path, grouped.get(image_id, []), entry["height"], entry["width"], class_of)
        items.append(ImportItem(flat_id(entry["file_name"]), image_path, path, read))
    return items


def plan_coco(
    annotations: str | os.PathLike[str], images: str | os.PathLike[str], masks: str | os.PathLike[str] | None = None
) -> ImportPlan:
    """The import of a COCO JSON whose images' ``file_name``s are relative to the folder ``images``.

    An instance JSON is decoded with pycocotools; a panoptic JSON (annotations with ``segments_info``) reads
    its PNGs from ``masks`` (default: the JSON's path without ``.json``, COCO's layout; see
    :mod:`nlkd.data.importers.coco_panoptic`). The JSON and every file it names are checked before anything is
    written; each mask is decoded when written. Rules: module docstring.
    """
    path, image_dir = Path(annotations), Path(images)
    data = _load_coco_json(path)
    category_ids, names = _categories(path, data["categories"])
    class_of = {cat: k + 1 for k, cat in enumerate(category_ids)}
    entries = _image_entries(path, data["images"])
    panoptic = any(isinstance(a, dict) and "segments_info" in a for a in data["annotations"])
    if panoptic:
        png_dir = Path(masks) if masks is not None else path.with_suffix("")
        if not png_dir.is_dir():
            raise DataError(f"{png_dir}: panoptic PNG folder not found (a panoptic JSON: give --masks DIR)")
        items = panoptic_items(path, data["annotations"], entries, image_dir, png_dir, class_of)
        rule = "255 (ignore_index): the panoptic PNGs' void (id 0) and crowd segments"
    elif masks is not None:
        raise DataError(f"{path}: --masks is for panoptic JSON (annotations with segments_info); this one has none")
    else:
        items = _instance_items(path, data, entries, image_dir, class_of)
        rule = "class 0 (background): pixels no annotation covers; 255 (ignore_index): crowd regions (iscrowd: 1)"
    info = DatasetInfo(len(names) + 1, IGNORE_INDEX, ["background", *names])
    notes = [f"written by nlkd import coco from {path.name}", rule]
    if not panoptic:
        notes.append("overlaps: annotations drawn from the largest to the smallest area, so the smaller one wins")
    notes.append("source.category_ids: the COCO category id of each class (null: background)")
    return ImportPlan(info, items, {"format": "coco", "category_ids": [None, *category_ids]}, notes)
