"""Cityscapes and Supervisely layouts on tiny fixtures written in their real on-disk formats."""

from __future__ import annotations

import base64
import io
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nlkd.data.folder import FolderDataset
from nlkd.data.formats import (
    CITYSCAPES_INFO,
    CITYSCAPES_LABELID_TO_TRAINID,
    SUPERVISELY_INFO,
    list_pairs_cityscapes,
    list_pairs_supervisely,
    read_mask_cityscapes,
    read_mask_supervisely,
)
from nlkd.errors import DataError

# labelId -> trainId for every evaluated class, as in cityscapesScripts' labels.py.
OFFICIAL = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
            24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip


def _save_rgb(path: Path, h: int, w: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def _cityscapes(root: Path, labels: str = "gtFine") -> np.ndarray:
    label_ids = np.array([[0, 7, 24, 33], [9, 255, 26, 4], [34, 1, 11, 23]], dtype=np.uint8)
    for city, name in (("aachen", "aachen_000000_000019"), ("bochum", "bochum_000000_000313")):
        _save_rgb(root / f"leftImg8bit/train/{city}/{name}_leftImg8bit.png", 3, 4)
        mask_path = root / f"{labels}/train/{city}/{name}_{labels}_labelIds.png"
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(label_ids, mode="L").save(mask_path)
    return label_ids


def test_cityscapes_table_matches_official_definition() -> None:
    for label_id in range(256):
        assert CITYSCAPES_LABELID_TO_TRAINID[label_id] == OFFICIAL.get(label_id, 255)
    assert CITYSCAPES_INFO.num_classes == 19 and CITYSCAPES_INFO.ignore_index == 255
    assert CITYSCAPES_INFO.class_names[0] == "road" and CITYSCAPES_INFO.class_names[18] == "bicycle"
    assert CITYSCAPES_INFO.palette[0] == (128, 64, 128) and CITYSCAPES_INFO.palette[13] == (0, 0, 142)


@pytest.mark.parametrize("labels", [None, "gtCoarse"])
def test_cityscapes_pairs_and_masks(tmp_path: Path, labels: str | None) -> None:
    _cityscapes(tmp_path, labels or "gtFine")
    pairs = list_pairs_cityscapes(tmp_path, "train", labels)
    assert [p.id for p in pairs] == ["aachen_000000_000019", "bochum_000000_000313"]
    assert pairs[1].mask_path.name == f"bochum_000000_000313_{labels or 'gtFine'}_labelIds.png"
    expected = np.array([[255, 0, 11, 18], [255, 255, 13, 255], [255, 255, 2, 10]])
    assert np.array_equal(read_mask_cityscapes(pairs[0].mask_path), expected)
    ds = FolderDataset(tmp_path, "train", labels, info=CITYSCAPES_INFO, format="cityscapes")
    assert np.array_equal(ds.get_mask(0), expected) and ds[1]["mask"].shape == (3, 4)


def test_cityscapes_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="leftImg8bit/train: folder not found"):
        list_pairs_cityscapes(tmp_path, "train")
    _cityscapes(tmp_path)
    next((tmp_path / "gtFine/train/bochum").iterdir()).unlink()
    with pytest.raises(DataError, match=r"bochum_000000_000313_gtFine_labelIds\.png: mask not found"):
        list_pairs_cityscapes(tmp_path, "train")


def _bitmap_data(mask: np.ndarray) -> str:
    """Encode like Supervisely: palette PNG with index 0 transparent, zlib-compressed, base64."""
    im = Image.fromarray(mask.astype(np.uint8))
    im.putpalette([0, 0, 0, 255, 255, 255])
    buf = io.BytesIO()
    im.save(buf, format="PNG", transparency=0)
    return base64.b64encode(zlib.compress(buf.getvalue())).decode()


BITMAP = np.array([[1, 1, 0], [0, 1, 1]], dtype=bool)


def _supervisely(root: Path, dataset: str = "ds1", name: str = "person.png") -> Path:
    _save_rgb(root / dataset / "img" / name, 10, 16)
    objects = [
        {"classTitle": "person_poly", "geometryType": "polygon",
         "points": {"exterior": [[2, 1], [6, 1], [6, 4], [2, 4]],
                    "interior": [[[3, 2], [5, 2], [5, 3], [3, 3]]]}},
        {"classTitle": "person_bmp", "geometryType": "bitmap",
         "bitmap": {"data": _bitmap_data(BITMAP), "origin": [10, 5]}},
        {"classTitle": "neutral", "geometryType": "polygon",
         "points": {"exterior": [[0, 8], [15, 8], [15, 9], [0, 9]], "interior": []}},
        {"classTitle": "person_bmp", "geometryType": "bitmap",  # partly outside the image: clipped
         "bitmap": {"data": _bitmap_data(np.ones((3, 3), bool)), "origin": [14, 8]}},
    ]  # fmt: skip
    ann = {"description": "", "tags": [], "size": {"height": 10, "width": 16}, "objects": objects}
    path = root / dataset / "ann" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ann))
    return path


def _expected_supervisely() -> np.ndarray:
    mask = np.zeros((10, 16), np.uint8)
    mask[1:5, 2:7] = 1  # polygon, corners inclusive
    mask[2:4, 3:6] = 0  # its hole
    mask[5:7, 10:13] = BITMAP  # bitmap at origin x=10, y=5
    mask[8:10, 14:16] = 1  # clipped bitmap
    return mask


def test_supervisely_polygon_and_bitmap_decoding(tmp_path: Path) -> None:
    ann = _supervisely(tmp_path)
    assert np.array_equal(read_mask_supervisely(ann), _expected_supervisely())


def test_supervisely_pairs_splits_and_dataset(tmp_path: Path) -> None:
    _supervisely(tmp_path, "ds1", "a.png")
    _supervisely(tmp_path, "ds2", "b.jpg")
    assert [s.id for s in list_pairs_supervisely(tmp_path, "ds2")] == ["ds2/b"]
    assert [s.id for s in list_pairs_supervisely(tmp_path, "*")] == ["ds1/a", "ds2/b"]
    assert len(list_pairs_supervisely(tmp_path, "ds1,ds2")) == 2
    with pytest.raises(DataError, match="no such Supervisely data set; available: ds1, ds2"):
        list_pairs_supervisely(tmp_path, "ds3")
    ds = FolderDataset(tmp_path, "*", info=SUPERVISELY_INFO, size=(5, 8), format="supervisely")
    assert ds.ids == ["ds1/a", "ds2/b"] and set(np.unique(ds[0]["mask"].numpy())) <= {0, 1}
    # Nearest neighbour at half size samples the pixel centres 1, 3, 5, ...
    assert np.array_equal(ds.get_mask(1), _expected_supervisely()[1::2, 1::2])


def test_supervisely_errors(tmp_path: Path) -> None:
    ann = _supervisely(tmp_path)
    ann.write_text('{"size": {"height": 2}}')
    with pytest.raises(DataError, match=r"person\.png\.json: malformed Supervisely annotation"):
        read_mask_supervisely(ann)
    ann.unlink()
    with pytest.raises(DataError, match=r"person\.png\.json: annotation not found"):
        list_pairs_supervisely(tmp_path, "ds1")
