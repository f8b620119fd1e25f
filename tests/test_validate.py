"""validate_split / check_split: one exact line per bad file; and the ``nlkd validate`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nlkd.cli import main
from nlkd.data.validate import check_split, validate_report, validate_split
from nlkd.errors import DataError
from nlkd.io import IMAGE_EXTENSIONS

CAMVID = Path("/work/shared/data/camvid")
H, W = 10, 14


def _image(path: Path, h: int = H, w: int = W) -> Path:
    rng = np.random.default_rng(len(str(path)))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=90)
    return path


def _mask(path: Path, values=(0, 1, 2), h: int = H, w: int = W) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.resize(np.asarray(values, dtype=np.uint8), h * w).reshape(h, w)
    Image.fromarray(mask, mode="L").save(path)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("a", "b", "c"):
        _image(tmp_path / f"images/train/{name}.jpg")
        _mask(tmp_path / f"labels/train/{name}.png", values=(0, 1, 2, 11))
    return tmp_path


def _problems(root: Path, **kw) -> list[str]:
    return validate_split(root, "train", 11, kw.pop("ignore_index", 11), **kw)


def test_good_split(root: Path) -> None:
    assert _problems(root) == []
    assert validate_report(root, "train", 11, 11).num_pairs == 3
    assert check_split(root, "train", 11, 11) == 3


def test_truncated_image(root: Path) -> None:
    path = _image(root / "images/train/b.jpg", 200, 300)
    _mask(root / "labels/train/b.png", h=200, w=300)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    [line] = _problems(root)
    assert line.startswith(f"{path}: unreadable or truncated image (")


def test_unreadable_png_mask(root: Path) -> None:
    path = root / "labels/train/c.png"
    path.write_bytes(b"not a png at all")
    [line] = _problems(root)
    assert line.startswith(f"{path}: unreadable or truncated mask (")


def test_missing_mask(root: Path) -> None:
    (root / "labels/train/b.png").unlink()
    expected = root / "labels/train/b.png"
    assert _problems(root) == [f"{root / 'images/train/b.jpg'}: no mask (expected {expected})"]


def test_missing_image(root: Path) -> None:
    _mask(root / "labels/train/d.png")
    assert _problems(root) == [
        f"{root / 'labels/train/d.png'}: no image d.* in {root / 'images/train'} (read: {', '.join(IMAGE_EXTENSIONS)})"
    ]


def test_size_mismatch(root: Path) -> None:
    _mask(root / "labels/train/a.png", h=H, w=W + 2)
    assert _problems(root) == [
        f"{root / 'labels/train/a.png'}: size mismatch: image 10×14 vs mask 10×16 (H×W; image a.jpg)"
    ]


def test_values_out_of_range(root: Path) -> None:
    _mask(root / "labels/train/c.png", values=(0, 12, 200, 10, 11))
    assert _problems(root) == [f"{root / 'labels/train/c.png'}: values [12, 200] outside 0..10 (ignore_index 11)"]
    assert _problems(root, ignore_index=None) == [
        f"{root / 'labels/train/a.png'}: values [11] outside 0..10 (no ignore_index)",
        f"{root / 'labels/train/b.png'}: values [11] outside 0..10 (no ignore_index)",
        f"{root / 'labels/train/c.png'}: values [11, 12, 200] outside 0..10 (no ignore_index)",
    ]


def test_rgb_mask(root: Path) -> None:
    path = root / "labels/train/a.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(path)
    assert _problems(root) == [
        f"{path}: RGB colour mask; expected a single-channel class-index PNG (mode L or P) with values 0..C-1"
    ]


def test_palette_mask_is_an_index_mask(root: Path) -> None:
    im = Image.fromarray(np.full((H, W), 3, np.uint8), mode="P")
    im.putpalette([0, 0, 0] * 256)
    im.save(root / "labels/train/a.png")
    assert _problems(root) == []


def test_duplicate_id(root: Path) -> None:
    _image(root / "images/train/a.png")
    assert _problems(root) == [f"{root / 'images/train/a.png'}: second image for id 'a' (also a.jpg); keep one"]


def test_empty_split_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "images/train").mkdir(parents=True)
    (tmp_path / "labels/train").mkdir(parents=True)
    assert _problems(tmp_path) == [
        f"{tmp_path / 'images/train'}: no images ({', '.join(IMAGE_EXTENSIONS)}); the split is empty",
        f"{tmp_path / 'labels/train'}: no masks (.png); the split is empty",
    ]
    assert validate_split(tmp_path, "val", 11) == [
        f"{tmp_path / 'images/val'}: folder not found",
        f"{tmp_path / 'labels/val'}: folder not found",
    ]


def test_labels_folder_and_several_problems(root: Path) -> None:
    _mask(root / "labels/coarse/a.png")
    _mask(root / "labels/coarse/b.png", values=(99,))
    lines = _problems(root, labels="coarse")
    assert lines == [
        f"{root / 'labels/coarse/b.png'}: values [99] outside 0..10 (ignore_index 11)",
        f"{root / 'images/train/c.jpg'}: no mask (expected {root / 'labels/coarse/c.png'})",
    ]
    with pytest.raises(DataError) as info:
        check_split(root, "train", 11, 11, labels="coarse")
    message = str(info.value)
    assert message.startswith(f"2 problems in {root / 'images/train'} + {root / 'labels/coarse'}:\n")
    assert message.splitlines()[1:] == lines


def test_cli_ok_and_problems(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["validate", "--data", str(root), "--split", "train", "--num-classes", "11"]
    assert main([*args, "--ignore-index", "11"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "ok: 3 pairs"
    assert main(args) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{root / 'labels/train/a.png'}: values [11] outside 0..10 (no ignore_index)"
    assert len(err) == 4 and "3 problems" in err[-1]


def test_cli_reads_dataset_yaml(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--data", str(root), "--split", "train"]) == 2
    assert "--num-classes" in capsys.readouterr().err
    (root / "dataset.yaml").write_text("num_classes: 11\nignore_index: 11\n")
    assert main(["validate", "--data", str(root), "--split", "train"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "ok: 3 pairs"
    assert main(["validate", "--data", str(root), "--split", "train", "--labels", "missing"]) == 2
    assert capsys.readouterr().err == f"{root / 'labels/missing'}: folder not found\n" + (
        "nlkd validate: 1 problem (0 good pairs)\n"
    )


@pytest.mark.skipif(not (CAMVID / "images/val").is_dir(), reason="CamVid not available")
def test_camvid_val_is_clean() -> None:  # no timed assertion: the machine may be busy
    assert validate_split(CAMVID, "val", 11, 11) == []
    assert validate_report(CAMVID, "val", 10, None).num_pairs == 0
