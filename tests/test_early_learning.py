"""nlkd.early_learning: ADELE's per-class IoU counts, curve fit, trigger rule and label correction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlkd.early_learning import (
    class_overlap_counts,
    correct_labels,
    correction_epoch,
    fit_iou_curve,
    iou_curve,
    is_triggered,
)

IGN = 255


def test_class_overlap_counts_match_per_class_sets():
    torch.manual_seed(0)
    t = torch.randint(0, 3, (2, 5, 6))
    t[0, 0] = IGN
    p = torch.randint(0, 3, (2, 5, 6))
    counts = class_overlap_counts(p, t, 3, ignore_index=IGN)
    valid = t != IGN
    for c in range(3):
        inter = ((p == c) & (t == c) & valid).sum()
        union = (((p == c) | (t == c)) & valid).sum()
        assert counts[:, c].tolist() == [int(inter), int(union)]


def test_fit_recovers_curve_and_guards():
    t = np.arange(15.0)
    a, b, c = fit_iou_curve(iou_curve(t, 0.7, 0.5, 3.0))
    assert (a, b, c) == pytest.approx((0.7, 0.5, 3.0), rel=1e-3)
    assert fit_iou_curve([0.1, 0.2]) is None  # too few points
    assert fit_iou_curve([0.1, float("nan"), 0.3]) is None  # two defined points
    assert fit_iou_curve([np.nan] * 6) is None


def test_correction_epoch_is_where_slope_falls_to_ten_percent():
    a, b, c = 0.8, 1.0, 2.0  # f'(t) = (a/c) exp(-t/c): 10 % of f'(1) at t = 1 + c ln 10 = 5.6
    assert correction_epoch((a, b, c), total_epochs=30) == 6  # t = 1..5 still >= 10 %: 5 + 1
    assert correction_epoch((0.0, 1.0, 2.0), total_epochs=30) is None  # flat: never
    assert correction_epoch((a, b, c), total_epochs=4) == 4  # the grid 1..3 bounds it


def test_is_triggered_only_after_the_curve_flattens():
    history = iou_curve(np.arange(30.0), 0.8, 1.0, 2.0)  # update epoch 6 (see above)
    assert not is_triggered(history[:5], epoch=4, total_epochs=30)
    assert not is_triggered(history[:6], epoch=5, total_epochs=30)
    assert is_triggered(history[:7], epoch=6, total_epochs=30)
    linear = np.linspace(0.1, 0.6, 8)  # still learning at the same pace: no trigger
    assert not is_triggered(linear, epoch=7, total_epochs=30)


def _probs(pred: torch.Tensor, conf: float, c: int) -> torch.Tensor:
    p = torch.full((*pred.shape, c), (1 - conf) / (c - 1))
    p.scatter_(-1, pred.unsqueeze(-1), conf)
    return p.permute(0, 3, 1, 2)


def test_correct_labels_changes_nothing_before_any_trigger():
    torch.manual_seed(0)
    t = torch.randint(0, 3, (2, 4, 5))
    prob = _probs(torch.randint(0, 3, (2, 4, 5)), 0.99, 3)
    assert torch.equal(correct_labels(prob, t, torch.zeros(3, dtype=torch.bool)), t)


def test_correct_labels_rules():
    t = torch.tensor([[[0, 0, 1, IGN, 0, 0]]])
    pred = torch.tensor([[[1, 1, 1, 1, 2, 1]]])
    prob = _probs(pred, 0.9, 3)
    prob[0, :, 0, 1] = torch.tensor([0.25, 0.5, 0.25])  # not confident
    triggered = torch.tensor([False, True, True])
    out = correct_labels(prob, t, triggered, threshold=0.7, ignore_index=IGN)
    # px0 -> 1 (confident, triggered, present); px1 unconfident; px3 ignore stays; px4: class 2 absent from image
    assert out.tolist() == [[[1, 0, 1, IGN, 0, 1]]]
    loose = correct_labels(prob, t, triggered, threshold=0.7, ignore_index=IGN, present_only=False)
    assert loose.tolist() == [[[1, 0, 1, IGN, 2, 1]]]
    only_two = correct_labels(prob, t, torch.tensor([False, False, True]), 0.7, IGN, present_only=False)
    assert only_two.tolist() == [[[0, 0, 1, IGN, 2, 0]]]
