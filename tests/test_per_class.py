"""Per-class boundary quality: per-image BF_c and IoU_c (nlkd.metrics.per_class_bf / per_class_iou) and
their data-set means (SegmentationMetrics' per_class_bf / per_class_iou)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlkd.metrics import SegmentationMetrics, boundary_f1, per_class_bf, per_class_iou, per_image_iou
from reference_metrics import reference_classes


def _squares(shift: int) -> torch.Tensor:
    """(24, 24): background 0, class 1 at rows/cols 2..9, class 2 at rows 14..19, cols 4+shift..9+shift."""
    m = torch.zeros(24, 24, dtype=torch.long)
    m[2:10, 2:10] = 1
    m[14:20, 4 + shift : 10 + shift] = 2
    return m


def test_the_class_whose_boundary_moved_is_the_one_with_low_bf() -> None:
    target, pred = _squares(0)[None], _squares(10)[None]  # class 2 moved 10 px: no overlap, no match
    bf = per_class_bf(pred, target, num_classes=4, tolerance=2.0)[0]
    iou = per_class_iou(pred, target, num_classes=4)[0]
    assert bf[1] == 1.0 and iou[1] == 1.0  # the square that stayed
    assert bf[2] == 0.0 and iou[2] == 0.0  # the one that moved
    assert 0 < bf[0] < 1  # the background's boundary runs around both
    assert bf[3].isnan() and iou[3].isnan()  # a class in neither map
    want_bf, want_iou = reference_classes(pred[0].numpy(), target[0].numpy(), 4, 2.0)
    np.testing.assert_allclose(bf.numpy(), want_bf, atol=1e-12)
    np.testing.assert_allclose(iou.numpy(), want_iou, atol=1e-12)


@pytest.mark.parametrize(("tolerance", "ignore_index"), [(1.0, None), (2.0, 255), (3.5, 255)])
def test_per_class_values_match_the_reference_and_average_to_the_per_image_ones(tolerance, ignore_index) -> None:
    g = torch.Generator().manual_seed(0)
    c = 4
    target = torch.randint(0, c, (6, 6, 8), generator=g).repeat_interleave(3, 1).repeat_interleave(3, 2)
    pred = torch.where(
        torch.rand(target.shape, generator=g) < 0.15, torch.randint(0, c, target.shape, generator=g), target
    )
    if ignore_index is not None:
        target[:, :3] = ignore_index
        target[5] = ignore_index  # an image without valid pixels: NaN everywhere
    bf = per_class_bf(pred, target, c, tolerance, ignore_index)
    iou = per_class_iou(pred, target, c, ignore_index)
    assert bf.shape == iou.shape == (6, c) and bf.dtype == iou.dtype == torch.float64
    for b in range(6):
        want_bf, want_iou = reference_classes(pred[b].numpy(), target[b].numpy(), c, tolerance, ignore_index)
        np.testing.assert_allclose(bf[b].numpy(), want_bf, atol=1e-12)
        np.testing.assert_allclose(iou[b].numpy(), want_iou, atol=1e-12)
    # per image, BF and IoU are the means of their per-class parts (every image here has boundaries)
    np.testing.assert_allclose(
        torch.nanmean(bf, 1).numpy(), boundary_f1(pred, target, c, tolerance, ignore_index).numpy(), atol=1e-12
    )
    np.testing.assert_allclose(
        torch.nanmean(iou, 1).numpy(), per_image_iou(pred, target, c, ignore_index).numpy(), atol=1e-12
    )


def test_dataset_per_class_means_follow_the_aggregate_definitions() -> None:
    """per_class_iou comes from the one summed confusion matrix (its mean over classes is mIoU);
    per_class_bf is BF_c averaged over the images where class c has a boundary in either map, so where
    every image has a boundary of every class its mean over classes is the mean per-image BF."""
    g = torch.Generator().manual_seed(1)
    c = 3
    target = torch.arange(c).repeat_interleave(4).repeat(10, 12, 1)[..., :12]  # vertical bands: all classes
    target = torch.roll(target, shifts=1, dims=2)
    noise = torch.rand(target.shape, generator=g) < 0.1
    pred = torch.where(noise, torch.randint(0, c, target.shape, generator=g), target)
    part = SegmentationMetrics(c, tolerance=2.0)
    part.update(pred[:4], target[:4])
    other = SegmentationMetrics(c, tolerance=2.0)
    other.update(pred[4:], target[4:])
    result = part.merge(other).compute()
    class_bf = per_class_bf(pred, target, c, 2.0)
    assert not class_bf.isnan().any()
    np.testing.assert_allclose(result["per_class_bf"], class_bf.mean(0).numpy(), atol=1e-12)
    assert np.mean(result["per_class_bf"]) == pytest.approx(result["bf"], abs=1e-12)
    assert np.nanmean(result["per_class_iou"]) == pytest.approx(result["miou"], abs=1e-12)
    assert result["tolerance"] == 2.0


def test_dataset_per_class_bf_skips_the_images_without_that_class() -> None:
    target = torch.stack([_squares(0), torch.zeros(24, 24, dtype=torch.long)])  # image 2: background only
    pred = torch.stack([_squares(10), torch.zeros(24, 24, dtype=torch.long)])
    m = SegmentationMetrics(4, tolerance=2.0)
    m.update(pred, target)
    result = m.compute()
    one = per_class_bf(pred[:1], target[:1], 4, 2.0)[0]
    assert result["per_class_bf"][1] == 1.0 and result["per_class_bf"][2] == 0.0
    assert result["per_class_bf"][0] == pytest.approx(float(one[0]))  # image 2 has no boundary: not counted
    assert np.isnan(result["per_class_bf"][3])
