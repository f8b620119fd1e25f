"""Ceilings: oracle_image weighs exactly the manifest's images, oracle_pixel ignores exactly the changed pixels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from nlkd.config import StrategyConfig
from nlkd.errors import DataError
from nlkd.io import write_mask
from nlkd.noise import corrupt_dataset, fine_label_dir
from nlkd.strategies import StepInputs, create_strategy
from nlkd.strategies.base import network_loss
from nlkd.train import train
from nlkd.weighting import per_image_cross_entropy

IGNORE = 255


def _step(target: torch.Tensor, **kw: object) -> StepInputs:
    logits = torch.randn(target.shape[0], 3, *target.shape[1:], generator=torch.Generator().manual_seed(0))
    return StepInputs(
        index=torch.arange(len(target)),
        target=target,
        logits=[logits],
        losses=[torch.zeros(len(target))],
        epoch=0,
        step=0,
        steps_per_epoch=1,
        **kw,
    )


def test_oracle_image_zeroes_exactly_the_corrupted_images():
    s = create_strategy(StrategyConfig(name="oracle_image"), 3, IGNORE, 2)
    target = torch.zeros(4, 2, 2, dtype=torch.long)
    (lw,) = s.loss_weights(_step(target, coarse=torch.tensor([True, False, False, True])))
    assert lw.image.tolist() == [0.0, 1.0, 1.0, 0.0] and lw.image_only


def test_oracle_pixel_drops_exactly_the_changed_pixels_and_equals_ce_with_them_ignored():
    target = torch.tensor([[[0, 1, 2], [1, 1, IGNORE]], [[2, 2, 2], [0, 0, 0]]])
    fine = torch.tensor([[[0, 2, 2], [1, IGNORE, 1]], [[2, 2, 2], [0, 0, 0]]])  # 2 changed pixels in image 0
    s = create_strategy(StrategyConfig(name="oracle_pixel"), 3, IGNORE, 2)
    step = _step(target, extras={"fine_mask": fine})
    (lw,) = s.loss_weights(step)
    assert lw.pixel.tolist() == [[[1, 0, 1], [1, 0, 0]], [[1, 1, 1], [1, 1, 1]]]
    assert lw.image.tolist() == [1.0, 1.0]
    logits = step.logits[0]
    ignored = target.masked_fill(target != fine, IGNORE)  # the reference: CE with those pixels set to ignore
    want = per_image_cross_entropy(logits, ignored, IGNORE).mean()
    got = network_loss(lw, step.losses[0], 0.0, logits, target, IGNORE)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert s.log.pop()["dropped_share"] == pytest.approx(2 / 11)


def _quiet(*args: object, **kwargs: object) -> None:
    pass


def test_corrupt_records_the_fine_folder_relative_and_a_missing_one_is_one_clear_error(tmp_path: Path):
    src = tmp_path / "data" / "labels" / "train"
    src.mkdir(parents=True)
    write_mask(src / "a.png", torch.zeros(8, 8, dtype=torch.uint8).numpy())
    dst = tmp_path / "data" / "labels" / "train_coarse"
    manifest = corrupt_dataset(src, dst, ratio=1.0, mode="dilate_erode", seed=0)
    assert manifest["source_relative"] == "../train" and fine_label_dir(dst) == dst / "../train"
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "data", moved)  # the relative path survives moving the data root
    assert fine_label_dir(moved / "labels" / "train_coarse").resolve() == (moved / "labels" / "train").resolve()
    shutil.rmtree(src)
    with pytest.raises(DataError, match=r"train_coarse/manifest\.json: the fine masks are missing"):
        fine_label_dir(dst)
    with pytest.raises(DataError, match=r"no manifest\.json"):
        fine_label_dir(tmp_path)


def test_oracle_pixel_trains_end_to_end_and_says_when_fine_masks_are_absent(tiny_data: Path, tmp_path: Path):
    cfg = tiny_config(tiny_data, tmp_path / "run", **{"strategy.name": "oracle_pixel", "data.labels": "train_coarse"})
    record = train(cfg, log=_quiet)
    manifest = json.loads((tiny_data / "labels" / "train_coarse" / "manifest.json").read_text())
    assert manifest["source_relative"] == "../train"
    assert 0 < record["dropped_share"] < 1
    cfg = tiny_config(tiny_data, tmp_path / "clean", **{"strategy.name": "oracle_pixel"})  # labels/train: no manifest
    with pytest.raises(DataError, match=r"no manifest\.json, so no fine masks are known"):
        train(cfg, log=_quiet)
