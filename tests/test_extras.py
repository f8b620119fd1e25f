"""nlkd.data.extras: per-image maps (fine masks, probability maps) under the item's own augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nlkd.data.extras import ExtraMap, label_maps
from nlkd.data.folder import FolderDataset, make_loader
from nlkd.data.info import DatasetInfo
from nlkd.errors import DataError

H, W, C = 12, 16, 3


def _folder(root: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for sub in ("images/train", "labels/train", "labels/fine"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        mask = rng.integers(0, C, size=(H, W), dtype=np.uint8)
        Image.fromarray(rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)).save(root / f"images/train/{i}.png")
        Image.fromarray(mask, mode="L").save(root / f"labels/train/{i}.png")
        Image.fromarray((mask + 1) % C, mode="L").save(root / f"labels/fine/{i}.png")  # differs everywhere
    return root


@pytest.mark.parametrize("scale", [None, (0.5, 1.5)])
def test_label_and_prob_maps_follow_the_masks_augmentation(tmp_path: Path, scale) -> None:
    root = _folder(tmp_path / "d")
    ds = FolderDataset(root, "train", info=DatasetInfo(C, 255), train=True, scale=scale, size=(H, W))
    ds.add_extra("fine_mask", label_maps(ds, root / "labels" / "fine"))
    # a probability map that is the one-hot of the mask: bilinear zoom keeps its argmax on the mask
    ds.add_extra("prob", ExtraMap("prob", lambda i: np.eye(C, dtype=np.float32)[ds.get_mask(i)].transpose(2, 0, 1)))
    for seed in range(12):
        item = ds[(seed % 4, seed)]
        mask, fine, prob = item["mask"], item["extras"]["fine_mask"], item["extras"]["prob"]
        assert fine.dtype == torch.int64 and prob.dtype == torch.float32 and prob.shape == (C, H, W)
        pad = mask == 255
        assert torch.equal(fine == 255, pad)  # the crop pads the fine mask with the ignore index too
        assert torch.equal(fine[~pad], (mask[~pad] + 1) % C)  # nearest: pixel for pixel in step
        assert torch.all(prob[:, pad] == 0)  # no class where nothing was
        if scale is None:  # no zoom: exactly the one-hot of the mask
            assert torch.equal(prob.argmax(0), mask) and set(prob.unique().tolist()) <= {0.0, 1.0}


def test_extras_batch_and_validation_items_are_unaugmented(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d")
    ds = FolderDataset(root, "train", info=DatasetInfo(C, 255), size=(H, W))
    ds.add_extra("fine_mask", label_maps(ds, root / "labels" / "fine"))
    batch = next(iter(make_loader(ds, 4, shuffle=False, seed=0)))
    assert batch["extras"]["fine_mask"].shape == (4, H, W)
    assert torch.equal(batch["extras"]["fine_mask"], (batch["mask"] + 1) % C)


def test_missing_or_mismatched_maps_are_one_line_data_errors(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d")
    ds = FolderDataset(root, "train", info=DatasetInfo(C, 255), size=(H, W))
    with pytest.raises(DataError, match="label folder not found"):
        label_maps(ds, root / "labels" / "nope")
    (root / "labels/fine/2.png").unlink()
    with pytest.raises(DataError, match=r"2\.png: no such mask"):
        label_maps(ds, root / "labels" / "fine")
    Image.fromarray(np.zeros((H, W + 1), np.uint8), mode="L").save(root / "labels/fine/2.png")
    with pytest.raises(DataError, match="differs from"):
        label_maps(ds, root / "labels" / "fine")
    ds.add_extra("prob", ExtraMap("prob", lambda i: np.zeros((C, H, W - 1), np.float32)))
    with pytest.raises(DataError, match="extra map 'prob'"):
        ds[0]


def test_bench_extras_quick_runs_and_prints_its_ratio() -> None:
    import os
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_extras.py"), "--quick"],
                          capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(
        r"16 items at 32x48: plain ([\d.]+) ms/item, with fine_mask ([\d.]+) ms/item, ratio ([\d.]+)", proc.stdout
    )
    assert m is not None, proc.stdout
    plain, fine, ratio = (float(v) for v in m.groups())
    assert ratio > 0 and ratio == pytest.approx(fine / plain, rel=0.05)  # printed values are rounded
