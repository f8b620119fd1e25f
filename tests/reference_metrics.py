"""A deliberately simple, independent reference for the metrics: numpy + scipy's exact Euclidean
distance transform, one image and one class at a time. Slow by design; used by tests and benchmarks."""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import distance_transform_edt


def class_boundary(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool mask -> pixels of the mask with a 4-neighbour inside the image outside the mask."""
    padded = np.pad(mask, 1, constant_values=True)  # outside the image counts as "in the mask"
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def _dist_to(boundary: np.ndarray) -> np.ndarray:
    if not boundary.any():
        return np.full(boundary.shape, np.inf)
    return distance_transform_edt(~boundary)


def reference_image(pred, target, num_classes, tolerance, ignore_index=None):
    """(H, W) arrays -> (bf, iou) floats for one image, following nlkd's documented conventions."""
    pred = np.asarray(pred).astype(np.int64)
    target = np.asarray(target).astype(np.int64)
    valid = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    if not valid.any():
        return math.nan, math.nan
    f1s, ious = [], []
    for c in range(num_classes):
        mp, mt = (pred == c) & valid, (target == c) & valid
        union = (mp | mt).sum()
        if union:
            ious.append((mp & mt).sum() / union)
        bp, bt = class_boundary(mp), class_boundary(mt)
        if not bp.any() and not bt.any():
            continue
        if not bp.any() or not bt.any():
            f1s.append(0.0)
            continue
        precision = (_dist_to(bt)[bp] < tolerance).mean()
        recall = (_dist_to(bp)[bt] < tolerance).mean()
        f1s.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    if f1s:
        bf = float(np.mean(f1s))
    else:
        bf = float(np.all(pred[valid] == target[valid]))
    return bf, float(np.mean(ious))


def reference_batch(pred, target, num_classes, tolerance=2.0, ignore_index=None):
    """(B, H, W) -> two (B,) float64 arrays: BF and IoU."""
    out = [reference_image(p, t, num_classes, tolerance, ignore_index) for p, t in zip(pred, target)]
    return np.array([o[0] for o in out]), np.array([o[1] for o in out])


def reference_classes(pred, target, num_classes, tolerance, ignore_index=None):
    """(H, W) arrays -> (bf_c, iou_c): two (C,) float64 arrays for one image, NaN where undefined
    (no boundary of class c in either map; class c in neither map)."""
    pred, target = np.asarray(pred).astype(np.int64), np.asarray(target).astype(np.int64)
    valid = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    bf, iou = np.full(num_classes, np.nan), np.full(num_classes, np.nan)
    for c in range(num_classes):
        mp, mt = (pred == c) & valid, (target == c) & valid
        if (mp | mt).any():
            iou[c] = (mp & mt).sum() / (mp | mt).sum()
        bp, bt = class_boundary(mp), class_boundary(mt)
        if bp.any() and bt.any():
            precision = (_dist_to(bt)[bp] < tolerance).mean()
            recall = (_dist_to(bp)[bt] < tolerance).mean()
            bf[c] = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        elif bp.any() or bt.any():
            bf[c] = 0.0
    return bf, iou
