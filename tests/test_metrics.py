"""nlkd.metrics against an independent reference (scipy EDT, one image and class at a time)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nlkd.metrics import (
    SegmentationMetrics,
    bf_and_iou,
    bfmiou,
    boundary_f1,
    boundary_map,
    confusion_matrices,
    per_image_iou,
    tolerance_from_diagonal,
)
from reference_metrics import reference_batch

TOLERANCES = [0.5, 1.0, 1.5, 2.0, 2.2, 3.5, 5.0]


def _check(pred, target, c, tol, ignore_index=None):
    bf, iou = bf_and_iou(torch.as_tensor(pred), torch.as_tensor(target), c, tol, ignore_index)
    rbf, riou = reference_batch(np.asarray(pred), np.asarray(target), c, tol, ignore_index)
    np.testing.assert_array_equal(np.isnan(bf.numpy()), np.isnan(rbf))
    np.testing.assert_allclose(bf.numpy(), rbf, atol=1e-6, rtol=0)
    np.testing.assert_allclose(iou.numpy(), riou, atol=1e-6, rtol=0)


def _smooth_maps(rng, b, h, w, c, cell):
    """Blobby label maps: a coarse random grid upsampled (nearest), so regions have real boundaries."""
    gh, gw = max(1, h // cell), max(1, w // cell)
    grid = rng.integers(0, c, (b, gh + 1, gw + 1))
    ys = np.minimum((np.arange(h) * gh) // max(h, 1), gh)
    xs = np.minimum((np.arange(w) * gw) // max(w, 1), gw)
    return grid[:, ys][:, :, xs]


@pytest.mark.parametrize("tol", TOLERANCES)
@pytest.mark.parametrize("seed", range(3))
def test_random_blobby_maps_match_reference(seed, tol):
    rng = np.random.default_rng(seed)
    target = _smooth_maps(rng, 4, 40, 52, 5, 8)
    pred = target.copy()
    shift = np.roll(target, rng.integers(1, 4), axis=2)
    flip = rng.random(target.shape) < 0.3
    pred[flip] = shift[flip]
    pred[rng.random(target.shape) < 0.02] = rng.integers(0, 5)
    _check(pred, target, 5, tol)


@pytest.mark.parametrize("seed", range(3))
def test_ignore_index_matches_reference(seed):
    rng = np.random.default_rng(seed)
    target = _smooth_maps(rng, 3, 30, 30, 4, 6)
    target[rng.random(target.shape) < 0.1] = 255
    target[:, 5:12, 5:20] = 255
    pred = _smooth_maps(rng, 3, 30, 30, 4, 5)
    _check(pred, target, 4, 2.0, ignore_index=255)


def test_thin_lines_single_pixels_and_empty_classes():
    target = np.zeros((1, 20, 20), np.int64)
    target[0, :, 10] = 1  # one-pixel vertical line
    target[0, 5, 5] = 2  # single pixel
    pred = np.zeros_like(target)
    pred[0, :, 12] = 1  # line two pixels away
    _check(pred, target, 4, 2.0)  # class 3 absent from both, class 2 missing from prediction
    _check(pred, target, 4, 2.0001)
    bf = boundary_f1(torch.as_tensor(pred), torch.as_tensor(target), 4, 2.0)
    bf_loose = boundary_f1(torch.as_tensor(pred), torch.as_tensor(target), 4, 2.0001)
    assert bf_loose > bf  # distance exactly 2 matches only when the tolerance exceeds 2


def test_all_ignore_image_gives_nan_and_others_unaffected():
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[0] = 9
    target[1, :, 4:] = 1
    pred = target.clone().clamp(max=1)
    out = bfmiou(pred, target, 2, ignore_index=9)
    assert math.isnan(out[0]) and out[1] == 1.0
    assert torch.isnan(per_image_iou(pred, target, 2, ignore_index=9)[0])


def test_uniform_maps_agree_or_not():
    t = torch.zeros(2, 6, 6, dtype=torch.long)
    p = torch.zeros(2, 6, 6, dtype=torch.long)
    p[1] = 1
    bf = boundary_f1(p, t, 2)
    assert bf.tolist() == [1.0, 0.0]


def test_border_is_not_a_boundary_and_ignored_pixels_border_neighbours():
    labels = torch.zeros(1, 5, 5, dtype=torch.long)
    assert (boundary_map(labels, 1) == -1).all()
    labels[0, 2, 2] = 7
    b = boundary_map(labels, 1, ignore_index=7)
    assert b[0, 2, 2] == -1  # removed pixel is no boundary
    assert b[0, 1, 2] == 0 and b[0, 2, 1] == 0 and b[0, 1, 1] == -1  # its 4-neighbours are


@settings(max_examples=60, deadline=None)
@given(
    b=st.integers(1, 3),
    h=st.integers(1, 14),
    w=st.integers(1, 14),
    c=st.integers(1, 4),
    tol=st.floats(0.1, 6.0, allow_nan=False),
    ignore=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
    cell=st.integers(1, 5),
)
def test_hypothesis_maps_match_reference(b, h, w, c, tol, ignore, seed, cell):
    rng = np.random.default_rng(seed)
    target = _smooth_maps(rng, b, h, w, c + (1 if ignore else 0), cell)
    pred = _smooth_maps(rng, b, h, w, c, cell)
    _check(pred, target, c, tol, ignore_index=c if ignore else None)


@pytest.mark.parametrize("c", [7, 8, 15, 16, 40, 64, 150])
def test_many_classes_and_large_tolerances_match_reference(c):
    """Class bits in int8, int16, int32 and int64 words, and several words from 64 classes on."""
    rng = np.random.default_rng(c)
    target = _smooth_maps(rng, 3, 24, 31, c, 3)
    pred = _smooth_maps(rng, 3, 24, 31, c, 4)
    target[0, 2:6, 3:9] = 255
    for tol in (1.0, 2.2, 5.0, 60.0):
        _check(pred, target, c, tol, ignore_index=255)


def test_confusion_matrices_and_iou():
    t = torch.tensor([[[0, 0, 1, 1]]])
    p = torch.tensor([[[0, 1, 1, 1]]])
    cm = confusion_matrices(p, t, 2)
    assert cm.tolist() == [[[1, 1], [0, 2]]]
    assert per_image_iou(p, t, 2).item() == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_segmentation_metrics_equals_pooled_confusion_and_merges():
    rng = np.random.default_rng(0)
    t = torch.as_tensor(_smooth_maps(rng, 6, 24, 24, 4, 6))
    p = torch.as_tensor(_smooth_maps(rng, 6, 24, 24, 4, 5))
    t[0, :3] = 255
    whole = SegmentationMetrics(4, ignore_index=255)
    whole.update(p, t)
    a, b = SegmentationMetrics(4, ignore_index=255), SegmentationMetrics(4, ignore_index=255)
    a.update(p[:2], t[:2])
    b.update(p[2:], t[2:])
    merged = a.merge(b).compute()
    res = whole.compute()
    assert merged == res
    cm = confusion_matrices(p, t, 4, ignore_index=255).sum(0).double()
    iou = cm.diagonal() / (cm.sum(0) + cm.sum(1) - cm.diagonal())
    assert res["miou"] == pytest.approx(iou.mean().item())
    assert res["pixel_accuracy"] == pytest.approx((cm.diagonal().sum() / cm.sum()).item())
    assert res["bf"] == pytest.approx(boundary_f1(p, t, 4, ignore_index=255).mean().item())
    whole.reset()
    assert math.isnan(whole.compute()["miou"])


@pytest.mark.parametrize(
    ("pred", "target", "kwargs", "match"),
    [
        (torch.zeros(2, 3), torch.zeros(2, 3), {}, "shape"),
        (torch.zeros(1, 2, 3), torch.zeros(1, 3, 2), {}, "shape"),
        (torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), {}, "integer"),
        (torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 5), {}, "target holds value 5"),
        (torch.full((1, 2, 2), -1), torch.zeros(1, 2, 2, dtype=torch.long), {}, "pred holds value -1"),
        (
            torch.zeros(1, 2, 2, dtype=torch.long),
            torch.zeros(1, 2, 2, dtype=torch.long),
            {"tolerance": 0},
            "tolerance",
        ),
    ],
)
def test_bad_arguments_raise_value_error(pred, target, kwargs, match):
    with pytest.raises(ValueError, match=match):
        boundary_f1(pred, target, 3, **kwargs)


def test_tolerance_from_diagonal_is_inclusive():
    t = tolerance_from_diagonal(0.0075, 360, 480)  # 4.5 px: distances up to 4.5 (d² <= 20) match
    assert 20 < t * t <= 21
    assert tolerance_from_diagonal(0.01, 300, 400, inclusive=False) == pytest.approx(5.0)
    with pytest.raises(ValueError):
        tolerance_from_diagonal(1.5, 10, 10)


def test_int16_and_uint8_inputs_accepted():
    t = torch.randint(0, 3, (2, 9, 9))
    p = torch.randint(0, 3, (2, 9, 9))
    ref = bfmiou(p, t, 3)
    torch.testing.assert_close(bfmiou(p.to(torch.uint8), t.to(torch.int16), 3), ref)
