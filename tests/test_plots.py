"""nlkd.plots: mask colouring and blending, and every figure writes a valid, non-empty PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nlkd.errors import DataError
from nlkd.plots import colorize, overlay, plot_curves, prediction_grid, weight_histogram

PALETTE = [(0, 0, 0), (200, 10, 10), (10, 200, 10)]


def _assert_png(path: Path) -> tuple[int, int]:
    """The file is a readable PNG and the only file in its folder (no temp file left behind)."""
    assert path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()
        size = im.size
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    return size


def test_colorize_values_and_ignore():
    mask = np.array([[0, 1, 2], [255, 2, 1]], dtype=np.uint8)
    out = colorize(mask, PALETTE, ignore_index=255)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert out[0, 1].tolist() == [200, 10, 10] and out[0, 2].tolist() == [10, 200, 10]
    assert out[1, 0].tolist() == [0, 0, 0]
    # ignore wins even when the ignore label is a valid palette index
    assert colorize(np.array([[1, 2]]), PALETTE, ignore_index=1)[0, 0].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="3 colours"):
        colorize(mask, PALETTE, ignore_index=None)  # 255 has no colour
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        colorize(np.zeros((2, 2, 1), dtype=int), PALETTE, ignore_index=None)
    with pytest.raises(ValueError, match="palette"):
        colorize(mask, [(0, 0)], ignore_index=255)


def test_overlay_blends_and_keeps_ignored_pixels():
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    mask = np.array([[1, 2], [255, 0]])
    out = overlay(image, mask, PALETTE, ignore_index=255, alpha=0.5)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [150, 55, 55]
    assert out[1, 0].tolist() == [100, 100, 100]  # ignored: photo unchanged
    assert out[1, 1].tolist() == [50, 50, 50]
    assert np.array_equal(overlay(image, mask, PALETTE, 255, alpha=0.0), image)
    assert overlay(image, mask, PALETTE, 255, alpha=1.0)[0, 1].tolist() == [10, 200, 10]
    with pytest.raises(ValueError, match="does not match"):
        overlay(image, np.zeros((3, 2), dtype=int), PALETTE, None)
    with pytest.raises(ValueError, match="uint8"):
        overlay(image.astype(np.float32), mask, PALETTE, 255)


def _write_jsonl(path: Path, records: list[dict], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail, encoding="utf-8")
    return path


def test_plot_curves_full_and_sparse(tmp_path: Path):
    full = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "lambda": min(0.5, e / 10),
            "w_student": 1.0,
            "w_teacher": 0.9,
            "val_miou": 0.5 + e / 100,
            "val_bf": 0.3 + e / 100,
        }
        for e in range(1, 6)
    ]
    src = _write_jsonl(tmp_path / "full.jsonl", full)
    out = tmp_path / "out" / "curves.png"
    plot_curves(src, out)
    width, height = _assert_png(out)
    assert width > height

    sparse = [
        {"epoch": 1, "train_loss": 2.0},
        {"train_loss": None, "val_miou": 0.4},
        {"epoch": 3, "lambda": 0.1},
    ]
    src = _write_jsonl(tmp_path / "sparse.jsonl", sparse, tail='{"epoch": 4, "train_')  # cut-short write
    out = tmp_path / "sparse" / "curves.png"
    plot_curves(src, out)
    _assert_png(out)

    empty = _write_jsonl(tmp_path / "empty.jsonl", [])
    plot_curves(empty, tmp_path / "empty" / "curves.png")
    _assert_png(tmp_path / "empty" / "curves.png")


def test_plot_curves_errors_name_the_file(tmp_path: Path):
    with pytest.raises(DataError, match="not found"):
        plot_curves(tmp_path / "nope.jsonl", tmp_path / "c.png")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"epoch": 1}\nnot json\n{"epoch": 2}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:2"):
        plot_curves(bad, tmp_path / "c.png")
    bad.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(DataError, match="JSON object"):
        plot_curves(bad, tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_prediction_grid(tmp_path: Path):
    rng = np.random.default_rng(0)

    def row(with_b: bool) -> dict:
        preds = {"baseline": rng.integers(0, 3, (16, 24))}
        if with_b:
            preds["nlkd"] = rng.integers(0, 3, (16, 24))
        target = rng.integers(0, 3, (16, 24))
        target[0] = 255
        return {"image": rng.integers(0, 256, (16, 24, 3), dtype=np.uint8), "target": target, "preds": preds}

    rows = [row(True), row(False) | {"label": "img_002"}]
    out = tmp_path / "grid" / "grid.png"
    prediction_grid(rows, out, PALETTE, ignore_index=255, title="coarse labels")
    width, height = _assert_png(out)
    assert width > height  # 4 columns, 2 rows of 3:2 images
    with pytest.raises(ValueError, match="empty"):
        prediction_grid([], out, PALETTE, 255)
    with pytest.raises(ValueError, match=r"rows\[0\] lacks keys \['preds'\]"):
        prediction_grid([{"image": rows[0]["image"], "target": rows[0]["target"]}], out, PALETTE, 255)


def test_weight_histogram(tmp_path: Path):
    rng = np.random.default_rng(1)
    groups = {
        "corrupted": rng.uniform(0.2, 0.6, 40),
        "clean": np.append(rng.uniform(0.7, 1.0, 60), np.nan),
        "held out": np.array([]),
    }
    out = tmp_path / "a" / "hist.png"
    weight_histogram(groups, out, title="teacher weights")
    _assert_png(out)
    out = tmp_path / "b" / "hist.png"
    weight_histogram({"all": np.ones(5)}, out, title="constant", xlabel="w")
    _assert_png(out)
    out = tmp_path / "c" / "hist.png"
    weight_histogram({"none": np.array([])}, out, title="empty")
    _assert_png(out)
    with pytest.raises(ValueError, match="at least one group"):
        weight_histogram({}, out, title="x")
