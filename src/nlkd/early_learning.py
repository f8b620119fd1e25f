"""ADELE's adaptive early-learning correction (Liu et al., CVPR 2022), as pure functions.

A network first fits the clean part of noisy labels and only later memorises the noise. ADELE tracks,
per class, the training IoU between the prediction and the annotation once per epoch, fits the curve
f(t) = a·(1 − exp(−t^b / c)) to it and, once the fitted slope has flattened (memorisation starts),
replaces that class's labels by the model's confident predictions for the rest of training.

Per class c, with the epoch history IoU_c(0), IoU_c(1), ... (point k at t = k, 0-based epochs, as in the
authors' SegTHOR code):

* fit (:func:`fit_iou_curve`): scipy ``curve_fit`` ('trf', p0 = (1, 1, 1), a ∈ [0, 1], b ∈ [0, 1],
  c >= 0), point weights ``sigma = geomspace(1, 0.1, n)`` (the latest points count about 10× more);
* trigger (:func:`correction_epoch`): rel(t) = | |f′(t)| − |f′(1)| | / |f′(1)| (values > 1 count as 0)
  over the grid t = 1..E−1; update_epoch = #{t : rel(t) <= r} + 1, r = 0.9: the epoch at which the
  slope has fallen to about 10 % of its value at epoch 1. After epoch e the class is corrected from the
  next epoch on when e >= update_epoch, and stays corrected;
* correction (:func:`correct_labels`): pixel p becomes ŷ_p = argmax when max prob > τ, ŷ_p is a
  triggered class, ŷ_p is a class the image's annotation already contains, and p is annotated
  (ignore pixels stay unknown). The authors use τ = 0.8 after a temperature-3 softmax over multi-scale
  eval-mode predictions (VOC), and τ = 0.7 on the training pass's own predictions (SegTHOR, the online
  variant nlkd implements).

Not implemented: ADELE's multi-scale consistency loss (it needs extra forward passes) and SegTHOR's
removal of a leading plateau before the fit.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "class_overlap_counts",
    "correct_labels",
    "correction_epoch",
    "fit_iou_curve",
    "iou_curve",
    "is_triggered",
]

#: ADELE's r: correction starts once the fitted slope is below (1 − r) of its slope at epoch 1.
R_THRESHOLD = 0.9
MIN_POINTS = 3  # three parameters: fewer points cannot pin the curve down (no trigger)


def class_overlap_counts(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """Per-class intersection and union of prediction and annotation, summed over a batch.

    Args:
        pred: (B, H, W) predicted labels in ``0..C-1``.
        target: (B, H, W) annotation; ``ignore_index`` pixels count for nothing.

    Returns:
        (2, C) int64: row 0 = |pred = c ∧ target = c|, row 1 = |pred = c ∨ target = c| (valid pixels).
        IoU_c = row 0 / row 1 (undefined where the union is 0). Counts add up over batches and processes.
    """
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"pred and target must both be (B, H, W), got {tuple(pred.shape)}, {tuple(target.shape)}")
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    p, t = pred[valid].long(), target[valid].long()
    inter = torch.bincount(t[p == t], minlength=num_classes)[:num_classes]
    n_pred = torch.bincount(p, minlength=num_classes)[:num_classes]
    n_true = torch.bincount(t, minlength=num_classes)[:num_classes]
    return torch.stack([inter, n_pred + n_true - inter])


def iou_curve(t: np.ndarray | float, a: float, b: float, c: float) -> np.ndarray:
    """ADELE's learning-curve model f(t) = a · (1 − exp(−t^b / c))."""
    return a * (1.0 - np.exp(-np.power(t, b) / c))


def _iou_curve_slope(t: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """f′(t) = a · (b / c) · t^(b−1) · exp(−t^b / c)."""
    return a * (b / c) * np.power(t, b - 1.0) * np.exp(-np.power(t, b) / c)


def fit_iou_curve(history: Sequence[float] | np.ndarray) -> tuple[float, float, float] | None:
    """Fit f(t) = a(1 − exp(−t^b/c)) to one class's IoU history (point k at epoch t = k).

    Undefined points (NaN: the class was absent that epoch) are left out. Returns (a, b, c), or None
    when fewer than 3 points are defined or the fit fails (then the class does not trigger).

    >>> t = np.arange(12.0)
    >>> a, b, c = fit_iou_curve(iou_curve(t, 0.8, 0.7, 2.0))
    >>> round(a, 2), round(b, 2), round(c, 2)
    (0.8, 0.7, 2.0)
    """
    from scipy.optimize import OptimizeWarning, curve_fit  # local: scipy.optimize is slow to import

    y = np.asarray(history, dtype=np.float64)
    t = np.arange(len(y), dtype=np.float64)
    keep = np.isfinite(y)
    t, y = t[keep], y[keep]
    if len(y) < MIN_POINTS:
        return None
    sigma = np.geomspace(1.0, 0.1, len(y))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            params, _ = curve_fit(
                iou_curve,
                t,
                y,
                p0=(1.0, 1.0, 1.0),
                bounds=([0.0, 0.0, 0.0], [1.0, 1.0, np.inf]),
                method="trf",
                sigma=sigma,
                absolute_sigma=True,
            )
    except (RuntimeError, ValueError):
        return None
    a, b, c = (float(v) for v in params)
    return (a, b, c) if all(math.isfinite(v) for v in (a, b, c)) and c > 0 else None


def correction_epoch(params: tuple[float, float, float], total_epochs: int, r: float = R_THRESHOLD) -> int | None:
    """ADELE's update epoch: #{t ∈ 1..E−1 : rel(t) <= r} + 1 for a fitted curve (see the module doc).

    Returns None for a flat fit (slope 0 at epoch 1: nothing was learned, nothing to correct).
    """
    if not 0.0 < r < 1.0:
        raise ValueError(f"r must lie in (0, 1), got {r!r}")
    a, b, c = params
    grid = np.arange(1, max(total_epochs, 2), dtype=np.float64)
    with np.errstate(all="ignore"):
        d1 = abs(float(_iou_curve_slope(np.array([1.0 + 1e-6]), a, b, c)[0]))
        if not math.isfinite(d1) or d1 <= 0.0:
            return None
        rel = np.abs(np.abs(_iou_curve_slope(grid + 1e-6, a, b, c)) - d1) / d1
    rel = np.where(np.isfinite(rel) & (rel <= 1.0), rel, 0.0)
    return int((rel <= r).sum()) + 1


def is_triggered(history: Sequence[float] | np.ndarray, epoch: int, total_epochs: int, r: float = R_THRESHOLD) -> bool:
    """Whether a class with this IoU history (one point per finished epoch) is corrected after ``epoch``
    (0-based, the last finished one): ``epoch >= correction_epoch(fit)``; False when the fit fails."""
    params = fit_iou_curve(history)
    if params is None:
        return False
    update = correction_epoch(params, total_epochs, r)
    return update is not None and epoch >= update


def correct_labels(
    prob: Tensor,
    target: Tensor,
    triggered: Tensor,
    threshold: float = 0.7,
    ignore_index: int | None = None,
    present_only: bool = True,
) -> Tensor:
    """Replace annotations by confident predictions of triggered classes (ADELE's label correction).

    Pixel p takes ŷ_p = argmax_c prob_c(p) when: max_c prob_c(p) > ``threshold``, ``triggered[ŷ_p]``,
    p is annotated (not ``ignore_index``), and (``present_only``) ŷ_p occurs in the image's annotation.
    Every other pixel keeps its label. With no class triggered nothing changes.

    Args:
        prob: (B, C, H, W) class probabilities (no gradient needed).
        target: (B, H, W) annotation.
        triggered: (C,) bool, the classes whose labels are corrected.
        threshold: τ in [0, 1).

    Returns:
        (B, H, W) labels, same dtype as ``target``.
    """
    if prob.ndim != 4 or target.shape != (prob.shape[0], *prob.shape[2:]):
        raise ValueError(f"prob (B, C, H, W) and target (B, H, W) expected, got {tuple(prob.shape)}, "
                         f"{tuple(target.shape)}")  # fmt: skip
    if triggered.shape != (prob.shape[1],):
        raise ValueError(f"triggered must have shape ({prob.shape[1]},), got {tuple(triggered.shape)}")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [0, 1), got {threshold!r}")
    triggered = triggered.to(device=target.device, dtype=torch.bool)
    if not bool(triggered.any()):
        return target
    conf, pred = prob.detach().max(1)
    change = (conf > threshold) & triggered[pred] & (pred != target)
    if ignore_index is not None:
        change &= target != ignore_index
    if present_only:
        b, c = prob.shape[:2]
        valid = target if ignore_index is None else target.masked_fill(target == ignore_index, c)
        key = valid.long() + torch.arange(b, device=target.device).view(b, 1, 1) * (c + 1)
        present = torch.bincount(key.flatten(), minlength=b * (c + 1)).view(b, c + 1)[:, :c] > 0
        change &= present.gather(1, pred.flatten(1)).view_as(pred)
    return torch.where(change, pred.to(target.dtype), target)
