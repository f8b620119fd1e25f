"""Trimap band, trimap confusion and BoundaryMetrics against independent numpy/scipy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from nlkd.metrics import BoundaryMetrics, boundary_band, boundary_f1, confusion_matrices, trimap_confusion
from reference_metrics import class_boundary

IGNORE = 9


def blobby(rng: np.random.Generator, b: int, h: int, w: int, c: int, cell: int = 6) -> np.ndarray:
    grid = rng.integers(0, c, (b, h // cell + 1, w // cell + 1))
    return grid[:, np.arange(h) // cell][:, :, np.arange(w) // cell]


def reference_band(target: np.ndarray, radius: float, ignore_index: int | None) -> np.ndarray:
    """(H, W) -> bool: valid pixels whose distance to a boundary pixel of any class is < radius."""
    valid = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    edge = np.zeros(target.shape, bool)
    for c in np.unique(target[valid]):
        edge |= class_boundary((target == c) & valid)
    if not edge.any():
        return np.zeros(target.shape, bool)
    return (distance_transform_edt(~edge) < radius) & valid


@pytest.mark.parametrize("radius", [0.5, 1.0, 2.0, 3.0, 4.5])
@pytest.mark.parametrize("ignore_index", [None, IGNORE])
def test_band_matches_distance_transform_reference(radius: float, ignore_index: int | None) -> None:
    rng = np.random.default_rng(int(radius * 10))
    target = blobby(rng, 3, 30, 41, 4)
    if ignore_index is not None:
        target[:, 5:9, 10:20] = IGNORE
    band = boundary_band(torch.as_tensor(target), 4 if ignore_index is None else 10, radius, ignore_index)
    for i in range(3):
        np.testing.assert_array_equal(band[i].numpy(), reference_band(target[i], radius, ignore_index))


def test_trimap_confusion_splits_the_confusion_matrix() -> None:
    rng = np.random.default_rng(0)
    target = torch.as_tensor(blobby(rng, 4, 24, 32, 3))
    target[:, :3, :3] = IGNORE
    pred = torch.as_tensor(blobby(rng, 4, 24, 32, 3))
    tri = trimap_confusion(pred, target, 10, 3.0, IGNORE)
    assert tri.shape == (4, 2, 10, 10)
    torch.testing.assert_close(tri.sum(1), confusion_matrices(pred, target, 10, IGNORE))
    band = boundary_band(target, 10, 3.0, IGNORE)
    assert int(tri[:, 0].sum()) == int(band.sum())


def test_boundary_metrics_against_reference_values() -> None:
    rng = np.random.default_rng(1)
    target = torch.as_tensor(blobby(rng, 5, 20, 28, 3))
    pred = target.clone()
    pred[:, :, 1:] = target[:, :, :-1]  # shifted by one pixel: errors only next to boundaries
    m = BoundaryMetrics(3, None, tolerances=(1.0, 2.0), band_radius=3.0)
    m.update(pred[:2], target[:2])
    other = BoundaryMetrics(3, None, tolerances=(1.0, 2.0), band_radius=3.0)
    other.update(pred[2:], target[2:])
    r = m.merge(other).compute()
    for tol in (1.0, 2.0):
        assert r[f"bf_{tol:g}"] == pytest.approx(float(boundary_f1(pred, target, 3, tol).mean()), abs=1e-12)
    assert r["bf_1"] < r["bf_2"] == pytest.approx(1.0)  # a 1-px shift matches only at θ = 2
    assert r["miou_interior"] == 1.0 and r["miou_band"] < 1.0
    tband = np.stack([reference_band(t, 3.0, None) for t in target.numpy()])
    ious = []
    for c in range(3):
        p, t = (pred.numpy() == c) & tband, (target.numpy() == c) & tband
        ious.append((p & t).sum() / (p | t).sum())
    assert r["miou_band"] == pytest.approx(np.mean(ious), abs=1e-12)
    assert r["band_share"] == pytest.approx(tband.mean(), abs=1e-12)


def test_boundary_metrics_empty_and_bad_arguments() -> None:
    m = BoundaryMetrics(3)
    r = m.compute()
    assert all(np.isnan(v) for v in r.values())
    with pytest.raises(ValueError, match="tolerance"):
        BoundaryMetrics(3, band_radius=0)
    with pytest.raises(ValueError, match="tolerances"):
        BoundaryMetrics(3, tolerances=())
    with pytest.raises(ValueError, match="merge"):
        BoundaryMetrics(3).merge(BoundaryMetrics(3, tolerances=(1.0,)))
