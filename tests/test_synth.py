"""Tests for nlkd.data.synth (the embedded data set) and `nlkd synth`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from nlkd.cli import main
from nlkd.data.synth import CLASS_NAMES, COARSE_RADIUS, make_synthetic, render_scene
from nlkd.errors import DataError
from nlkd.io import read_image, read_mask
from nlkd.noise import dilate_erode, load_manifest

SMALL = {"n_train": 6, "n_val": 2, "n_test": 3, "size": (48, 64)}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synth") / "ds", seed=3, **SMALL)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def per_image_miou(a: np.ndarray, b: np.ndarray) -> float:
    classes = np.union1d(np.unique(a), np.unique(b))
    return float(np.mean([((a == c) & (b == c)).sum() / ((a == c) | (b == c)).sum() for c in classes]))


def test_layout_and_dataset_yaml(small_root: Path) -> None:
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        ids = sorted(p.stem for p in (small_root / "images" / split).glob("*.png"))
        assert ids == [f"{split}_{i:04d}" for i in range(n)]
        assert ids == sorted(p.stem for p in (small_root / "labels" / split).glob("*.png"))
    info = yaml.safe_load((small_root / "dataset.yaml").read_text())
    assert info["num_classes"] == len(CLASS_NAMES) == len(info["class_names"]) == len(info["palette"])
    assert info["ignore_index"] is None
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in info["palette"])


def test_images_and_masks(small_root: Path) -> None:
    seen: set[int] = set()
    for p in sorted((small_root / "labels").glob("*/*.png")):
        mask = read_mask(p)
        assert mask.shape == (48, 64) and mask.dtype == np.uint8
        assert mask.max() < len(CLASS_NAMES)
        seen |= set(np.unique(mask).tolist())
    assert seen == set(range(len(CLASS_NAMES)))
    image = read_image(small_root / "images" / "val" / "val_0001.png")
    assert image.shape == (48, 64, 3) and image.std() > 10


def test_coarse_copy_and_manifest(small_root: Path) -> None:
    manifest = load_manifest(small_root / "labels" / "train_coarse")
    assert manifest is not None and manifest["mode"] == "dilate_erode"
    assert len(manifest["corrupted"]) == 3 and manifest["n_images"] == 6
    for p in sorted((small_root / "labels" / "train").glob("*.png")):
        coarse = read_mask(small_root / "labels" / "train_coarse" / p.name)
        assert (p.stem in manifest["corrupted"]) == (not np.array_equal(coarse, read_mask(p)))


def test_deterministic(small_root: Path, tmp_path: Path) -> None:
    again = files(make_synthetic(tmp_path / "again", seed=3, **SMALL))
    before = files(small_root)
    manifest = "labels/train_coarse/manifest.json"
    assert {k: v for k, v in again.items() if k != manifest} == {k: v for k, v in before.items() if k != manifest}
    strip = [{k: v for k, v in json.loads(f[manifest]).items() if k != "source"} for f in (again, before)]
    assert strip[0] == strip[1]
    other = files(make_synthetic(tmp_path / "other", seed=4, **SMALL))
    assert other["images/train/train_0000.png"] != before["images/train/train_0000.png"]


def test_scene_has_thin_poles_and_visible_boundaries() -> None:
    rng = np.random.default_rng(0)
    widths, means = [], {c: [] for c in range(len(CLASS_NAMES))}
    for _ in range(30):
        image, labels = render_scene(rng)
        pole_cols = (labels == CLASS_NAMES.index("pole")).sum(0)
        widths.append(int((pole_cols > 10).sum()))
        for c in np.unique(labels):
            means[int(c)].append(image[labels == c].mean(0))
    assert min(widths) >= 2  # at least one pole of 2-4 px, always
    centres = np.array([np.mean(m, 0) for m in means.values()])
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + 1e3 * np.eye(len(centres))
    assert gaps.min() > 30  # every class has its own colour on average


def test_coarse_labels_are_clearly_worse() -> None:
    rng = np.random.default_rng(1)
    scores = []
    for _ in range(40):
        _, labels = render_scene(rng)
        scores.append(per_image_miou(labels, dilate_erode(labels, rng, radius=COARSE_RADIUS)))
    assert 0.5 <= float(np.mean(scores)) <= 0.75


def test_root_rules(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        make_synthetic(tmp_path / "mine", **SMALL)
    root = make_synthetic(tmp_path / "ds", n_train=4, n_val=1, n_test=1, size=(32, 32))
    make_synthetic(root, n_train=2, n_val=1, n_test=1, size=(32, 32))  # regenerates its own output
    assert len(list((root / "images" / "train").glob("*.png"))) == 2
    assert len(list((root / "labels" / "train_coarse").glob("*.png"))) == 2
    with pytest.raises(ValueError, match="size"):
        make_synthetic(tmp_path / "bad", size=(8, 8))


def test_cli_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "ds"
    argv = ["synth", str(root), "--seed", "2", "--n-train", "4", "--n-val", "1", "--n-test", "1"]
    assert main([*argv, "--height", "32", "--width", "40"]) == 0
    assert str(root) in capsys.readouterr().out
    assert (root / "dataset.yaml").is_file()
    assert main(["synth", str(root), "--n-train", "-1"]) == 2
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x.txt").write_text("x")
    assert main(["synth", str(tmp_path / "foreign")]) == 2
    assert capsys.readouterr().err.count("nlkd synth: error:") == 2
