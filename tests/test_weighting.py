"""nlkd.weighting: per-image CE, quality scores, λ schedule, Eq. 6-7, and the four README lines."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nlkd import (
    LambdaSchedule,
    NLKDWeighter,
    bfmiou,
    distill_weights,
    per_image_cross_entropy,
    quality_score,
    weighted_loss,
)
from nlkd.metrics import boundary_f1, per_image_iou


def test_per_image_cross_entropy_matches_loop_and_ignores():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 5, 6, requires_grad=True)
    target = torch.randint(0, 4, (3, 5, 6))
    target[0, :2] = 255
    target[2] = 255  # no valid pixel
    ce = per_image_cross_entropy(logits, target, ignore_index=255)
    for i in range(2):
        expected = F.cross_entropy(logits[i : i + 1], target[i : i + 1], ignore_index=255)
        assert ce[i].item() == pytest.approx(expected.item(), rel=1e-6)
    assert ce[2].item() == 0.0
    ce.sum().backward()
    assert torch.isfinite(logits.grad).all()
    no_ignore = per_image_cross_entropy(logits, target.clamp(max=3))
    assert no_ignore.shape == (3,)


def test_quality_score_metrics():
    t = torch.zeros(2, 10, 10, dtype=torch.long)
    t[:, :, 5:] = 1
    p = t.clone()
    p[1, :, 3:] = 1
    for metric, fn in (("bf", boundary_f1), ("miou", per_image_iou), ("bfmiou", bfmiou)):
        torch.testing.assert_close(quality_score(p, t, 2, metric=metric), fn(p, t, 2).float())
    logits = F.one_hot(p, 2).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(quality_score(logits, t, 2), bfmiou(p, t, 2).float())
    with pytest.raises(ValueError, match="metric"):
        quality_score(p, t, 2, metric="dice")  # type: ignore[arg-type]


def test_lambda_schedule_paper_setting_and_steps():
    s = LambdaSchedule(warmup_epochs=10, total_epochs=100, final=0.5)
    assert s(0) == 0.0 and s(9) == 0.0 and s(10) == 0.0
    assert s(99) == pytest.approx(0.5) and s(150) == pytest.approx(0.5)
    assert s(54) == pytest.approx(0.5 * 44 / 89)
    assert 0 < s(10, step=5, steps_per_epoch=10) < s(11)
    values = [s(e, k, 7) for e in range(100) for k in range(7)]
    assert values == sorted(values)
    with pytest.raises(ValueError):
        LambdaSchedule(warmup_epochs=5, total_epochs=3)


def test_distill_weights_and_nan_rule():
    ws = torch.tensor([0.2, 0.8, float("nan")])
    wt = torch.tensor([0.6, 0.4, float("nan")])
    w = distill_weights(ws, wt, 0.25)
    torch.testing.assert_close(w, torch.tensor([0.25 * 0.2 + 0.75 * 0.6, 0.25 * 0.8 + 0.75 * 0.4, 0.0]))
    with pytest.raises(ValueError):
        distill_weights(ws, wt, 1.5)


def test_weighted_loss_reductions_and_no_gradient_through_weights():
    ce = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = torch.tensor([0.5, 0.0, 1.0], requires_grad=True)
    assert weighted_loss(ce, w, "sum").item() == pytest.approx(3.5)
    assert weighted_loss(ce, w, "mean").item() == pytest.approx(3.5 / 3)
    assert weighted_loss(ce, w, "normalized").item() == pytest.approx(3.5 / 1.5)
    loss = weighted_loss(ce, w, "normalized")
    loss.backward()
    assert w.grad is None and ce.grad is not None
    zero = weighted_loss(ce.detach(), torch.zeros(3), "normalized")
    assert zero.item() == 0.0 and math.isfinite(zero.item())
    with pytest.raises(ValueError, match="reduction"):
        weighted_loss(ce, w, "max")  # type: ignore[arg-type]


def test_normalized_loss_is_the_weighted_mean_even_for_subnormal_weights():
    # found by test_fuzz: dividing by max(Σw, float32 tiny) gave 1.2e-7 instead of 1.0 here
    ce = torch.tensor([0.0, 0.0, 0.0, 1.0])
    w = torch.tensor([math.nan, math.nan, math.nan, 1.401298464324817e-45])
    assert weighted_loss(ce, w, "normalized").item() == pytest.approx(1.0)
    ce = torch.tensor([2.0, 4.0])
    assert weighted_loss(ce, torch.tensor([1e-40, 3e-40]), "normalized").item() == pytest.approx(3.5, rel=1e-4)
    assert weighted_loss(torch.zeros(0), torch.zeros(0), "normalized").item() == 0.0


def test_weighter_uses_teacher_only_during_warmup_then_mixes():
    t = torch.zeros(2, 12, 12, dtype=torch.long)
    t[:, 4:8, 4:8] = 1
    teacher = t.clone()
    student = torch.zeros_like(t)  # misses the square entirely
    weighter = NLKDWeighter(2, LambdaSchedule(warmup_epochs=1, total_epochs=3, final=0.5))
    w_teacher = bfmiou(teacher, t, 2).float()
    torch.testing.assert_close(weighter(student, t, epoch=0, teacher_pred=teacher), w_teacher)
    w_student = bfmiou(student, t, 2).float()
    torch.testing.assert_close(weighter(student, t, epoch=2, teacher_pred=teacher), 0.5 * w_student + 0.5 * w_teacher)
    cached = weighter(student, t, epoch=2, teacher_weight=torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(cached, 0.5 * w_student + 0.5 * torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="exactly one"):
        weighter(student, t, epoch=0)


def test_readme_four_lines_run_in_a_training_step():
    """The README's snippet, verbatim in spirit: a user's own loop gains NLKD in four lines."""
    torch.manual_seed(0)
    student = torch.nn.Conv2d(3, 19, 1)
    images = torch.randn(2, 3, 16, 16)
    masks = torch.randint(0, 19, (2, 16, 16))
    masks[0, :4] = 255
    teacher_pred = masks.clamp(max=18)
    epoch = 12

    weighter = NLKDWeighter(
        num_classes=19,
        ignore_index=255,
        schedule=LambdaSchedule(warmup_epochs=10, total_epochs=100, final=0.5),
    )
    logits = student(images)
    ce = per_image_cross_entropy(logits, masks, ignore_index=255)
    w = weighter(logits.argmax(1), masks, epoch, teacher_pred=teacher_pred)
    loss = weighted_loss(ce, w)

    loss.backward()
    assert w.shape == (2,) and not w.requires_grad and (w > 0).all()
    assert student.weight.grad is not None
