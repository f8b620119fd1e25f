"""FolderDataset, list_pairs, make_loader, transforms and DatasetInfo on tiny generated folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nlkd.data.folder import FolderDataset, collate, list_pairs, make_loader
from nlkd.data.info import DatasetInfo, default_palette, load_dataset_info
from nlkd.data.transforms import denormalize, random_scale_crop, to_tensor
from nlkd.errors import ConfigError, DataError

INFO = DatasetInfo(num_classes=3, ignore_index=255)
H, W = 12, 16


def _make_folder(root: Path, n: int = 4, split: str = "train", seed: int = 0) -> Path:
    """Images whose red channel encodes the mask (red = 60 * class), so geometry can be checked."""
    rng = np.random.default_rng(seed)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        mask = rng.integers(0, 3, size=(H, W), dtype=np.uint8)
        mask[0, :3] = 255
        image = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
        image[..., 0] = np.where(mask == 255, 250, mask * 60)
        Image.fromarray(image).save(root / "images" / split / f"img{i}.png")
        Image.fromarray(mask, mode="L").save(root / "labels" / split / f"img{i}.png")
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return _make_folder(tmp_path / "data")


def _red(image: torch.Tensor) -> np.ndarray:
    return denormalize(image)[0].numpy().astype(int)


def test_list_pairs(root: Path) -> None:
    pairs = list_pairs(root, "train")
    assert [p.id for p in pairs] == ["img0", "img1", "img2", "img3"]
    assert pairs[0].image_path == root / "images/train/img0.png"
    assert pairs[0].mask_path == root / "labels/train/img0.png"
    (root / "labels/train/img2.png").unlink()
    with pytest.raises(DataError, match=r"img2\.png: no mask"):
        list_pairs(root, "train")
    with pytest.raises(DataError, match=r"images/val: folder not found \(available: train\)"):
        list_pairs(root, "val")


def test_items_shapes_dtypes_and_normalisation(root: Path) -> None:
    ds = FolderDataset(root, "train", info=INFO, size=None)
    item = ds[1]
    assert item["image"].shape == (3, H, W) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (H, W) and item["mask"].dtype == torch.int64
    assert item["id"] == "img1" and item["index"] == 1 and ds.ids[1] == "img1"
    original = np.asarray(Image.open(root / "images/train/img1.png"))
    assert np.abs(denormalize(item["image"]).permute(1, 2, 0).numpy().astype(int) - original).max() <= 1
    assert np.array_equal(ds.get_mask(1), np.asarray(Image.open(root / "labels/train/img1.png")))
    assert np.array_equal(ds.get_image(1), original)
    assert ds[-1]["id"] == "img3"
    with pytest.raises(IndexError):
        ds[4]


def test_resize_keeps_mask_values(root: Path) -> None:
    ds = FolderDataset(root, "train", info=INFO, size=(7, 23))
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].shape == (3, 7, 23) and item["mask"].shape == (7, 23)
        original = np.unique(np.asarray(Image.open(ds.samples[i].mask_path)))
        assert set(np.unique(item["mask"].numpy())) <= set(original)


@pytest.mark.parametrize("scale", [None, (0.6, 1.8)])
def test_augmentation_applies_same_geometry_to_image_and_mask(tmp_path: Path, scale) -> None:
    """Left part class 0 (red 0), right part class 1 (red 200): image and mask must stay in step."""
    for folder in ("images/train", "labels/train"):
        (tmp_path / folder).mkdir(parents=True)
    for i in range(3):
        mask = np.zeros((H, W), np.uint8)
        mask[:, 5 + 2 * i :] = 1
        image = np.zeros((H, W, 3), np.uint8)
        image[..., 0] = mask * 200
        Image.fromarray(image).save(tmp_path / f"images/train/{i}.png")
        Image.fromarray(mask, mode="L").save(tmp_path / f"labels/train/{i}.png")
    ds = FolderDataset(tmp_path, "train", info=DatasetInfo(2, 255), train=True, scale=scale)
    flips = []
    for seed in range(16):
        item = ds[(seed % 3, seed)]
        mask, red = item["mask"].numpy(), _red(item["image"])
        valid = mask != 255  # scale-crop padding
        assert ((red > 100) == (mask == 1))[valid].mean() > 0.9
        plain = ds.get_mask(seed % 3)
        if scale is None:
            assert np.array_equal(mask, plain) or np.array_equal(mask, plain[:, ::-1])
        flips.append(bool(mask[:, 0].mean() > mask[:, -1].mean()))  # class 1 ended up on the left
    assert any(flips) and not all(flips)


def test_scale_crop_pads_mask_with_ignore_index_and_image_with_mean() -> None:
    rng = np.random.default_rng(0)
    image = np.full((3, 20, 30), 200, dtype=np.uint8)
    mask = np.ones((20, 30), dtype=np.uint8)
    out_img, out_mask = random_scale_crop(image, mask, (0.4, 0.5), rng, fill=255)
    assert out_img.shape == (3, 20, 30) and out_mask.shape == (20, 30)
    assert set(np.unique(out_mask)) == {1, 255}
    normalised = to_tensor(out_img)
    assert normalised[:, torch.from_numpy(out_mask == 255)].abs().max() < 0.02
    _, zoomed = random_scale_crop(image, mask, (1.5, 2.0), rng, fill=255)
    assert (zoomed == 1).all()


def test_scale_crop_fill_in_dataset_uses_ignore_index_or_zero(root: Path) -> None:
    for info, fill in ((INFO, 255), (DatasetInfo(num_classes=3, ignore_index=None), 0)):
        (root / "labels/train").mkdir(exist_ok=True)
        for p in (root / "labels/train").iterdir():
            Image.fromarray(np.ones((H, W), np.uint8), mode="L").save(p)
        ds = FolderDataset(root, "train", info=info, train=True, scale=(0.3, 0.4))
        assert fill in ds[(0, 1)]["mask"].numpy()


def test_cache_gives_identical_items(root: Path) -> None:
    kw = dict(info=INFO, size=(10, 9), train=True, scale=(0.7, 1.3))
    cached, uncached = FolderDataset(root, "train", **kw), FolderDataset(root, "train", cache=False, **kw)
    for item in [(0, 5), (3, 7), (2, 11)]:
        a, b = cached[item], uncached[item]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert np.array_equal(cached.get_mask(2), uncached.get_mask(2))


def test_loader_is_deterministic_and_collates_ids(root: Path) -> None:
    ds = FolderDataset(root, "train", info=INFO, train=True, scale=(0.5, 1.5))

    def run(seed: int, workers: int = 0) -> list[dict]:
        loader = make_loader(ds, batch_size=3, shuffle=True, seed=seed, num_workers=workers)
        return [b for _ in range(2) for b in loader]

    a, b, c = run(1), run(1), run(2)
    assert isinstance(a[0]["id"], list) and isinstance(a[0]["id"][0], str)
    assert a[0]["index"].dtype == torch.int64 and a[0]["image"].shape == (3, 3, H, W)
    assert [x["id"] for x in a] == [x["id"] for x in b]
    assert all(torch.equal(x["image"], y["image"]) and torch.equal(x["mask"], y["mask"]) for x, y in zip(a, b))
    assert any(not torch.equal(x["image"], y["image"]) for x, y in zip(a, c))
    assert not torch.equal(a[0]["image"], a[2]["image"]) or a[0]["id"] != a[2]["id"]  # epochs differ
    w = run(1, workers=1)
    assert all(torch.equal(x["image"], y["image"]) for x, y in zip(a, w))


def test_loader_rejects_shuffle_with_sampler_and_collate_rejects_mixed_sizes(root: Path) -> None:
    ds = FolderDataset(root, "train", info=INFO)
    with pytest.raises(ValueError, match="sampler"):
        make_loader(ds, 2, shuffle=True, seed=0, sampler=torch.utils.data.SequentialSampler(ds))
    with pytest.raises(DataError, match="fixed size"):
        collate([{"mask": torch.zeros(2, 2)}, {"mask": torch.zeros(3, 2)}])


def test_dataset_reports_bad_values_and_size_mismatch(root: Path) -> None:
    Image.fromarray(np.full((H, W), 7, np.uint8), mode="L").save(root / "labels/train/img1.png")
    with pytest.raises(DataError, match=r"img1\.png: values \[7\] outside 0\.\.2 \(ignore_index 255\)"):
        FolderDataset(root, "train", info=INFO)
    Image.fromarray(np.zeros((H, W + 1), np.uint8), mode="L").save(root / "labels/train/img1.png")
    with pytest.raises(DataError, match=r"img1\.png: mask 12×17 \(H×W\) does not match image 12×16"):
        FolderDataset(root, "train", info=INFO)


def test_dataset_info_defaults_and_checks() -> None:
    info = DatasetInfo(num_classes=4)
    assert info.class_names == ["class_0", "class_1", "class_2", "class_3"]
    assert info.palette == default_palette(4) and len(set(info.palette)) == 4
    assert default_palette(3) == [(0, 0, 0), (128, 0, 0), (0, 128, 0)]
    assert info.invalid_values(np.array([[0, 3, 4, 255]], np.uint8)) == [4, 255]
    assert INFO.invalid_values(np.array([0, 2, 255, 300, -1])) == [-1, 300]
    with pytest.raises(ValueError, match="class_names"):
        DatasetInfo(num_classes=2, class_names=["a"])
    with pytest.raises(ValueError, match="ignore_index"):
        DatasetInfo(num_classes=2, ignore_index=-100)


def test_load_dataset_info_yaml_and_overrides(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"--num-classes.*dataset\.yaml"):
        load_dataset_info(tmp_path)
    assert load_dataset_info(tmp_path, num_classes=5).ignore_index is None
    yaml_path = tmp_path / "dataset.yaml"
    yaml_path.write_text(
        "num_classes: 2\nignore_index: 11\nclass_names: [sky, road]\npalette: [[1, 2, 3], [4, 5, 6]]\n"
    )
    info = load_dataset_info(tmp_path)
    assert (info.num_classes, info.ignore_index, info.class_names) == (2, 11, ["sky", "road"])
    assert info.palette == [(1, 2, 3), (4, 5, 6)]
    with pytest.raises(ConfigError, match=r"dataset\.yaml: class_names must have num_classes=3 entries"):
        load_dataset_info(tmp_path, num_classes=3)
    yaml_path.write_text("num_classes: 2\nignore_index: 11\n")
    overridden = load_dataset_info(tmp_path, num_classes=3, ignore_index=255)
    assert (overridden.num_classes, overridden.ignore_index) == (3, 255)
    assert overridden.class_names == ["class_0", "class_1", "class_2"]


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("num_classes: 2\nnum_clases: 3\n", r"dataset\.yaml: unknown key 'num_clases'"),
        ("num_classes: two\n", r"dataset\.yaml: num_classes must be an int, got 'two'"),
        ("num_classes: 2\nclass_names: [a]\n", r"dataset\.yaml: class_names must have num_classes=2"),
        ("num_classes: 2\nignore_index: 300\n", r"dataset\.yaml: ignore_index must be None or an int"),
        ("[1, 2]\n", r"dataset\.yaml: expected a mapping"),
        ("num_classes: [\n", r"dataset\.yaml: invalid YAML"),
    ],
)
def test_load_dataset_info_errors(tmp_path: Path, text: str, pattern: str) -> None:
    (tmp_path / "dataset.yaml").write_text(text)
    with pytest.raises(ConfigError, match=pattern):
        load_dataset_info(tmp_path)


def test_explicit_bad_argument_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--num-classes: num_classes must lie in 1\.\.256"):
        load_dataset_info(tmp_path, num_classes=0)
