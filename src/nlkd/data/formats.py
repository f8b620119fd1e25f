"""Public data set layouts other than nlkd's own folder layout: Cityscapes and Supervisely Person.

Each format is a pair of functions: ``list_pairs_<format>(root, split, labels)`` -> list of
:class:`~nlkd.data.info.Sample`, and ``read_mask_<format>(path)`` -> (H, W) uint8 class indices.
:class:`nlkd.data.folder.FolderDataset` takes ``format="cityscapes"|"supervisely"`` and uses them.

Cityscapes::

    ROOT/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
    ROOT/<labels>/<split>/<city>/<name>_<labels>_labelIds.png      labels: gtFine (default) | gtCoarse

labelIds are mapped to the 19 training classes (:data:`CITYSCAPES_INFO`), everything else to 255.

Supervisely (its export; Supervisely Person has data sets ds1..ds13)::

    ROOT/<dataset>/img/<name>.{jpg,png}
    ROOT/<dataset>/ann/<name>.{jpg,png}.json    objects: bitmap (base64 zlib PNG + origin) or polygon

``split`` names one data set folder, several separated by commas, or ``*`` for all. Objects whose
class title starts with "person" become class 1, everything else stays 0 (background).
"""

from __future__ import annotations

import base64
import io
import json
import os
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from nlkd.data.info import DatasetInfo, Sample
from nlkd.errors import DataError
from nlkd.io import IMAGE_EXTENSIONS, read_mask

__all__ = [
    "CITYSCAPES_INFO",
    "CITYSCAPES_LABELID_TO_TRAINID",
    "SUPERVISELY_INFO",
    "list_pairs_cityscapes",
    "list_pairs_supervisely",
    "read_mask_cityscapes",
    "read_mask_supervisely",
]

# (labelId, name, trainId, colour) for the 19 evaluated classes, from cityscapesScripts'
# helpers/labels.py. Every other labelId (0-6 void, 9 parking, 10 rail track, 14 guard rail,
# 15 bridge, 16 tunnel, 18 polegroup, 29 caravan, 30 trailer, and -1 license plate) has trainId 255.
_CITYSCAPES_CLASSES = [
    (7, "road", 0, (128, 64, 128)),
    (8, "sidewalk", 1, (244, 35, 232)),
    (11, "building", 2, (70, 70, 70)),
    (12, "wall", 3, (102, 102, 156)),
    (13, "fence", 4, (190, 153, 153)),
    (17, "pole", 5, (153, 153, 153)),
    (19, "traffic light", 6, (250, 170, 30)),
    (20, "traffic sign", 7, (220, 220, 0)),
    (21, "vegetation", 8, (107, 142, 35)),
    (22, "terrain", 9, (152, 251, 152)),
    (23, "sky", 10, (70, 130, 180)),
    (24, "person", 11, (220, 20, 60)),
    (25, "rider", 12, (255, 0, 0)),
    (26, "car", 13, (0, 0, 142)),
    (27, "truck", 14, (0, 0, 70)),
    (28, "bus", 15, (0, 60, 100)),
    (31, "train", 16, (0, 80, 100)),
    (32, "motorcycle", 17, (0, 0, 230)),
    (33, "bicycle", 18, (119, 11, 32)),
]

#: Lookup table of shape (256,): labelId -> trainId (255 = ignore).
CITYSCAPES_LABELID_TO_TRAINID = np.full(256, 255, dtype=np.uint8)
for _label_id, _, _train_id, _ in _CITYSCAPES_CLASSES:
    CITYSCAPES_LABELID_TO_TRAINID[_label_id] = _train_id
CITYSCAPES_LABELID_TO_TRAINID.flags.writeable = False

CITYSCAPES_INFO = DatasetInfo(
    num_classes=19,
    ignore_index=255,
    class_names=[c[1] for c in _CITYSCAPES_CLASSES],
    palette=[c[3] for c in _CITYSCAPES_CLASSES],
)
SUPERVISELY_INFO = DatasetInfo(
    num_classes=2, ignore_index=None, class_names=["background", "person"], palette=[(0, 0, 0), (220, 20, 60)]
)


def list_pairs_cityscapes(root: str | os.PathLike[str], split: str, labels: str | None = None) -> list[Sample]:
    """Cityscapes pairs of ``split`` (train, val, test, train_extra), sorted by id ``<name>``.

    ``labels`` is the annotation folder: ``gtFine`` (default) or ``gtCoarse``. Raises
    :class:`DataError` for a missing folder, an empty split, or an image without its mask.
    """
    root, labels = Path(root), labels or "gtFine"
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: folder not found (expected the Cityscapes layout leftImg8bit/<split>)")
    suffix = "_leftImg8bit.png"
    samples, missing = [], []
    for image_path in sorted(image_dir.glob(f"*/*{suffix}")):
        name = image_path.name[: -len(suffix)]
        mask_path = root / labels / split / image_path.parent.name / f"{name}_{labels}_labelIds.png"
        if not mask_path.is_file():
            missing.append(mask_path)
        samples.append(Sample(name, image_path, mask_path))
    if not samples:
        raise DataError(f"{image_dir}: no images <city>/<name>{suffix}")
    if missing:
        raise DataError(f"{missing[0]}: mask not found ({len(missing)} of {len(samples)} masks missing)")
    return samples


def read_mask_cityscapes(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a ``*_labelIds.png`` and map it to trainIds: (H, W) uint8 in 0..18 or 255."""
    mask = read_mask(path)
    if mask.dtype != np.uint8:
        raise DataError(f"{path}: expected an 8-bit labelIds PNG, got {mask.dtype}")
    return CITYSCAPES_LABELID_TO_TRAINID[mask]


def _supervisely_datasets(root: Path, split: str) -> list[Path]:
    available = sorted(p.name for p in root.iterdir() if (p / "img").is_dir()) if root.is_dir() else []
    if not available:
        raise DataError(f"{root}: no Supervisely data sets (expected ROOT/<dataset>/img and ann folders)")
    names = available if split.strip() == "*" else [s.strip() for s in split.split(",") if s.strip()]
    for name in names:
        if name not in available:
            raise DataError(
                f"{root / name}: no such Supervisely data set; available: {', '.join(available)} "
                "(or '*' for all, or several separated by commas)"
            )
    return [root / name for name in names]


def list_pairs_supervisely(root: str | os.PathLike[str], split: str, labels: str | None = None) -> list[Sample]:
    """Supervisely pairs of the data set folder(s) named by ``split``; ids are ``<dataset>/<stem>``.

    ``labels`` is the annotation folder name inside each data set (default ``ann``).
    """
    root, labels = Path(root), labels or "ann"
    samples, missing = [], []
    for ds in _supervisely_datasets(root, split):
        for image_path in sorted((ds / "img").iterdir()):
            if image_path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            ann_path = ds / labels / f"{image_path.name}.json"
            if not ann_path.is_file():
                missing.append(ann_path)
            samples.append(Sample(f"{ds.name}/{image_path.stem}", image_path, ann_path))
    if not samples:
        raise DataError(f"{root}: no images in <dataset>/img for split {split!r}")
    if missing:
        raise DataError(f"{missing[0]}: annotation not found ({len(missing)} of {len(samples)} missing)")
    return samples


def _decode_bitmap(data: str) -> np.ndarray:
    """Supervisely bitmap ``data`` (base64 of zlib-compressed PNG) -> (h, w) bool."""
    png = zlib.decompress(base64.b64decode(data))
    with Image.open(io.BytesIO(png)) as im:
        if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
            return np.asarray(im.convert("RGBA"))[:, :, 3] > 0
        if im.mode in ("RGB", "CMYK", "YCbCr"):
            return np.asarray(im.convert("L")) > 0
        return np.asarray(im) > 0


def _draw_object(obj: dict[str, Any], out: np.ndarray) -> None:
    """Set the pixels of one Supervisely object to 1 in the (H, W) uint8 ``out``."""
    geometry = obj.get("geometryType")
    if geometry == "bitmap":
        bitmap = _decode_bitmap(obj["bitmap"]["data"])
        x0, y0 = (int(v) for v in obj["bitmap"]["origin"])
        h, w = out.shape
        bh, bw = bitmap.shape
        ys, xs = slice(max(y0, 0), min(y0 + bh, h)), slice(max(x0, 0), min(x0 + bw, w))
        if ys.start >= ys.stop or xs.start >= xs.stop:
            return  # entirely outside the image
        crop = bitmap[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        out[ys, xs][crop] = 1
    elif geometry == "polygon":
        points = obj["points"]
        exterior = np.round(np.asarray(points["exterior"], dtype=np.float64)).astype(np.int32)
        if len(exterior) < 3:
            return
        region = np.zeros_like(out)
        cv2.fillPoly(region, [exterior.reshape(-1, 1, 2)], 1)
        holes = [np.round(np.asarray(p, dtype=np.float64)).astype(np.int32) for p in points.get("interior", [])]
        holes = [p.reshape(-1, 1, 2) for p in holes if len(p) >= 3]
        if holes:
            cv2.fillPoly(region, holes, 0)
        out |= region
    elif geometry == "rectangle":
        (x0, y0), (x1, y1) = (np.round(np.asarray(p, dtype=np.float64)).astype(int) for p in obj["points"]["exterior"])
        out[max(min(y0, y1), 0) : max(y0, y1) + 1, max(min(x0, x1), 0) : max(x0, x1) + 1] = 1
    else:
        raise ValueError(f"unsupported geometryType {geometry!r} (expected bitmap, polygon or rectangle)")


def read_mask_supervisely(path: str | os.PathLike[str]) -> np.ndarray:
    """Rasterise a Supervisely annotation JSON to a binary person mask: (H, W) uint8, 1 = person."""
    try:
        ann = json.loads(Path(path).read_text(encoding="utf-8"))
        h, w = int(ann["size"]["height"]), int(ann["size"]["width"])
        mask = np.zeros((h, w), dtype=np.uint8)
        for obj in ann.get("objects", []):
            if str(obj.get("classTitle", "")).lower().startswith("person"):
                _draw_object(obj, mask)
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found") from None
    except (OSError, ValueError, KeyError, TypeError, zlib.error) as e:
        raise DataError(f"{path}: malformed Supervisely annotation ({type(e).__name__}: {e})") from None
    return mask
