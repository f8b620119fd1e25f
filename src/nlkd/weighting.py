"""The NLKD method in one screen: per-image losses, quality scores, the λ schedule, distilled
weights (Eq. 6) and the weighted loss (Eq. 7).

Add NLKD to your own loop::

    weighter = NLKDWeighter(num_classes=19, ignore_index=255,
                            schedule=LambdaSchedule(warmup_epochs=10, total_epochs=100, final=0.5))
    ce = per_image_cross_entropy(logits, masks, ignore_index=255)                # (B,)
    w = weighter(logits.argmax(1), masks, epoch, teacher_pred=teacher_pred)      # (B,), no grad
    loss = weighted_loss(ce, w)

NaN rule: a quality score is NaN only for an image without valid pixels; such an image has a
per-image CE of 0 and gets weight 0, so nothing undefined ever reaches the loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from nlkd.metrics import bf_and_iou, boundary_f1, per_image_iou

__all__ = [
    "LambdaSchedule",
    "Metric",
    "NLKDWeighter",
    "Reduction",
    "distill_weights",
    "per_image_cross_entropy",
    "per_image_loss",
    "quality_score",
    "weighted_loss",
]

Metric = Literal["bfmiou", "bf", "miou"]
Reduction = Literal["mean", "sum", "normalized"]
METRICS: tuple[str, ...] = get_args(Metric)  # the per-image quality metrics, by name
REDUCTIONS: tuple[str, ...] = get_args(Reduction)


def per_image_cross_entropy(logits: Tensor, target: Tensor, ignore_index: int | None = None) -> Tensor:
    """Mean pixel cross-entropy of each image over its valid pixels (Eq. 4, averaged per image).

    Args:
        logits: (B, C, H, W) unnormalised scores (or (B, C, *S), e.g. (B, C, N) sampled points).
        target: (B, H, W) integer labels (or (B, *S)); ``ignore_index`` pixels do not count.

    Returns:
        (B,) per-image loss, differentiable; 0 for an image without valid pixels.
    """
    if logits.ndim < 3 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"logits (B, C, H, W) and target (B, H, W) expected, got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    if not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
    _check_target_values(target, logits.shape[1], ignore_index)
    ii = -100 if ignore_index is None else ignore_index
    ce = F.cross_entropy(logits, target.long(), ignore_index=ii, reduction="none")  # 0 at ignored pixels
    n_valid = target.shape[1:].numel() if ignore_index is None else (target != ignore_index).flatten(1).sum(1)
    return ce.flatten(1).sum(1) / (max(n_valid, 1) if isinstance(n_valid, int) else n_valid.clamp(min=1))


def per_image_loss(
    logits: Tensor,
    target: Tensor,
    ignore_index: int | None = None,
    pixel_weights: Tensor | None = None,
    soft_target: Tensor | None = None,
    target_set: Tensor | None = None,
) -> Tensor:
    """Per-image loss with optional per-pixel weights and a soft or set-valued target (the one reduction
    every strategy goes through).

    Per pixel p the loss is CE on the annotation, or ``-Σ_c q_c log p_c`` given a soft target q, or
    ``-log Σ_{c∈S} p_c = logsumexp(z_S) − logsumexp(z)`` given a target set S (a one-hot set is CE).
    A pixel is counted when it is annotated (not ``ignore_index``) — or, given a soft target/set, when
    that has at least one class, whatever the annotation says — and its weight is > 0. The image's loss
    is the mean of ``w_p · loss_p`` over its counted pixels (0 without any). With ``pixel_weights``,
    ``soft_target`` and ``target_set`` all None this is :func:`per_image_cross_entropy`, bit for bit.

    Args:
        logits: (B, C, H, W) unnormalised scores, with gradient.
        target: (B, H, W) integer annotation.
        pixel_weights: (B, H, W) float weights >= 0 (no gradient); 0 drops the pixel.
        soft_target: (B, C, H, W) float target distribution per pixel (rows may sum to 0: not counted).
        target_set: (B, C, H, W) bool multi-hot allowed classes per pixel (an empty set is not counted).
            At most one of ``soft_target`` and ``target_set``.

    Returns:
        (B,) per-image loss, differentiable in ``logits``.

    >>> z = torch.tensor([[[[2.0]], [[0.0]]]])  # one 1x1 image, 2 classes
    >>> t = torch.zeros(1, 1, 1, dtype=torch.long)
    >>> both = torch.ones(1, 2, 1, 1, dtype=torch.bool)  # "class 0 or 1": nothing to learn
    >>> per_image_loss(z, t, target_set=both).abs().item() < 1e-6
    True
    """
    if pixel_weights is None and soft_target is None and target_set is None:
        return per_image_cross_entropy(logits, target, ignore_index)
    if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"logits (B, C, H, W) and target (B, H, W) expected, got {tuple(logits.shape)} and "
                         f"{tuple(target.shape)}")  # fmt: skip
    if soft_target is not None and target_set is not None:
        raise ValueError("give at most one of soft_target and target_set")
    for name, t in (("soft_target", soft_target), ("target_set", target_set)):
        if t is not None and t.shape != logits.shape:
            raise ValueError(f"{name} must have the logits' shape {tuple(logits.shape)}, got {tuple(t.shape)}")
    log_p = F.log_softmax(logits, dim=1)
    if soft_target is not None:
        q = soft_target.detach().to(log_p.dtype)
        counted = (q > 0).any(1)
        loss = -(q * log_p).sum(1)
    elif target_set is not None:
        s = target_set.bool()
        counted = s.any(1)
        # an empty set is filled (loss 0, finite gradient) and then not counted
        in_set = log_p.masked_fill(~(s | ~counted.unsqueeze(1)), float("-inf"))
        loss = -torch.logsumexp(in_set, dim=1)
    else:
        _check_target_values(target, logits.shape[1], ignore_index)
        counted = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
        safe = target.masked_fill(~counted, 0).long()
        loss = -log_p.gather(1, safe.unsqueeze(1)).squeeze(1)
    if pixel_weights is not None:
        w = _check_pixel_weights(pixel_weights, target.shape).to(log_p.dtype)
        counted = counted & (w > 0)
        loss = loss * w
    loss = torch.where(counted, loss, torch.zeros_like(loss))
    return loss.flatten(1).sum(1) / counted.flatten(1).sum(1).clamp(min=1)


def _check_target_values(target: Tensor, num_classes: int, ignore_index: int | None) -> None:
    if target.numel():
        checked = target if ignore_index is None else target.masked_fill(target == ignore_index, 0)
        lo, hi = (int(v) for v in torch.aminmax(checked))
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"target holds value {lo if lo < 0 else hi} outside 0..{num_classes - 1}"
                + (f" (ignore_index={ignore_index})" if ignore_index is not None else "")
            )


def _check_pixel_weights(w: Tensor, shape: torch.Size) -> Tensor:
    if w.shape != shape:
        raise ValueError(f"pixel_weights must have the target's shape {tuple(shape)}, got {tuple(w.shape)}")
    w = w.detach()
    if not w.dtype.is_floating_point:
        w = w.float()
    if bool((~torch.isfinite(w)).any()) or bool((w < 0).any()):
        raise ValueError("pixel_weights must be finite and >= 0")
    return w


@torch.no_grad()
def quality_score(
    pred: Tensor,
    target: Tensor,
    num_classes: int,
    metric: Metric = "bfmiou",
    tolerance: float = 2.0,
    ignore_index: int | None = None,
) -> Tensor:
    """Agreement of a prediction with the annotation, per image (Eq. 5 for ``"bfmiou"``).

    Args:
        pred: (B, H, W) predicted labels (argmax), or (B, C, H, W) logits (argmax is taken).
        target: (B, H, W) annotation.
        metric: ``"bfmiou"`` = (BF + IoU) / 2, ``"bf"`` or ``"miou"``.

    Returns:
        (B,) float32 in [0, 1]; NaN for an image without valid pixels. Higher = annotation agrees more.
    """
    if pred.ndim == 4:
        pred = pred.argmax(1)
    if metric == "bfmiou":
        bf, iou = bf_and_iou(pred, target, num_classes, tolerance, ignore_index)
        score = (bf + iou) / 2
    elif metric == "bf":
        score = boundary_f1(pred, target, num_classes, tolerance, ignore_index)
    elif metric == "miou":
        score = per_image_iou(pred, target, num_classes, ignore_index)
    else:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return score.float()


@dataclass(frozen=True)
class LambdaSchedule:
    """λ of Eq. 6: 0 for ``warmup_epochs`` epochs, then linear up to ``final`` at the last epoch.

    Epochs count from 0. With ``step`` and ``steps_per_epoch`` λ moves every step (fractional epochs).
    The paper: ``LambdaSchedule(warmup_epochs=10, total_epochs=100, final=0.5)``.

    >>> s = LambdaSchedule(warmup_epochs=2, total_epochs=6, final=0.5)
    >>> [s(e) for e in range(6)]
    [0.0, 0.0, 0.0, 0.16666666666666666, 0.3333333333333333, 0.5]
    """

    warmup_epochs: int
    total_epochs: int
    final: float = 0.5

    def __post_init__(self) -> None:
        if self.total_epochs < 1 or not 0 <= self.warmup_epochs <= self.total_epochs:
            raise ValueError(
                f"need 0 <= warmup_epochs <= total_epochs and total_epochs >= 1, got "
                f"warmup_epochs={self.warmup_epochs}, total_epochs={self.total_epochs}"
            )
        if not 0.0 <= self.final <= 1.0:
            raise ValueError(f"final must lie in [0, 1], got {self.final}")

    def __call__(self, epoch: int, step: int = 0, steps_per_epoch: int | None = None) -> float:
        t = float(epoch) + (step / steps_per_epoch if steps_per_epoch else 0.0)
        if t < self.warmup_epochs:
            return 0.0
        span = self.total_epochs - 1 - self.warmup_epochs
        if span <= 0:
            return self.final
        return self.final * min(1.0, (t - self.warmup_epochs) / span)


def distill_weights(w_student: Tensor, w_teacher: Tensor, lam: float) -> Tensor:
    """Eq. 6: ``W_kd = λ · w_student + (1 − λ) · w_teacher``; (B,) -> (B,), detached, NaN -> 0."""
    if not 0.0 <= lam <= 1.0 or math.isnan(lam):
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    w = lam * w_student.detach() + (1.0 - lam) * w_teacher.detach() if lam > 0 else w_teacher.detach()
    return torch.nan_to_num(w.float(), nan=0.0)


def weighted_loss(ce: Tensor, w: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Eq. 7: the batch loss from per-image losses ``ce`` (B,) and weights ``w`` (B,).

    ``"sum"`` is Eq. 7 as printed (Σ w·ce); ``"mean"`` divides by the batch size (the scale of a plain
    mean CE); ``"normalized"`` divides by Σ w (0 when all weights are 0). Weights carry no gradient.
    """
    if ce.shape != w.shape or ce.ndim != 1:
        raise ValueError(f"ce and w must both have shape (B,), got {tuple(ce.shape)} and {tuple(w.shape)}")
    w = w.detach()
    if bool(torch.isinf(w).any()) or bool((w < 0).any()):
        raise ValueError(f"weights must be finite and >= 0 (NaN counts as 0), got {w.tolist()}")
    w = torch.nan_to_num(w.to(ce.dtype), nan=0.0)
    if reduction == "normalized" and w.numel():
        # scaled by the largest weight, so tiny (even subnormal) weights still give the weighted mean:
        # Σ w'·ce / Σ w' with max w' = 1, hence Σ w' >= 1 unless every weight is 0 (loss 0)
        peak = w.amax()
        w = w / torch.where(peak > 0, peak, torch.ones_like(peak))
    total = (w * ce).sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / max(ce.shape[0], 1)
    if reduction == "normalized":
        return total / w.sum().clamp(min=1.0)
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


class NLKDWeighter:
    """Per-image NLKD weights for anyone's training loop (Eq. 5-6).

    Args:
        num_classes: number of classes C.
        schedule: the λ schedule.
        metric: quality score used for both networks.
        tolerance: BF tolerance θ in pixels.
        ignore_index: label ignored in the annotations.

    Call with the student's prediction, the annotation and the epoch, plus either the teacher's
    prediction or the teacher's cached per-image scores; returns (B,) weights without gradient.
    """

    def __init__(
        self,
        num_classes: int,
        schedule: LambdaSchedule,
        metric: Metric = "bfmiou",
        tolerance: float = 2.0,
        ignore_index: int | None = None,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.num_classes = num_classes
        self.schedule = schedule
        self.metric: Metric = metric
        self.tolerance = tolerance
        self.ignore_index = ignore_index

    def score(self, pred: Tensor, target: Tensor) -> Tensor:
        """(B, H, W) prediction or (B, C, H, W) logits -> (B,) quality scores (NaN: no valid pixel)."""
        return quality_score(pred, target, self.num_classes, self.metric, self.tolerance, self.ignore_index)

    @torch.no_grad()
    def components(
        self,
        student_pred: Tensor,
        target: Tensor,
        epoch: int,
        teacher_pred: Tensor | None = None,
        teacher_weight: Tensor | None = None,
        step: int = 0,
        steps_per_epoch: int | None = None,
    ) -> tuple[Tensor | None, Tensor, float]:
        """(w_student or None while λ = 0, w_teacher, λ) — what :meth:`__call__` mixes."""
        if (teacher_pred is None) == (teacher_weight is None):
            raise ValueError("pass exactly one of teacher_pred (predictions) or teacher_weight (cached scores)")
        lam = self.schedule(epoch, step, steps_per_epoch)
        if teacher_weight is None:
            w_teacher = self.score(teacher_pred, target)
        else:
            w_teacher = teacher_weight.detach().float().to(target.device)
        w_student = self.score(student_pred, target) if lam > 0 else None
        return w_student, w_teacher, lam

    def __call__(
        self,
        student_pred: Tensor,
        target: Tensor,
        epoch: int,
        teacher_pred: Tensor | None = None,
        teacher_weight: Tensor | None = None,
        step: int = 0,
        steps_per_epoch: int | None = None,
    ) -> Tensor:
        w_student, w_teacher, lam = self.components(
            student_pred, target, epoch, teacher_pred, teacher_weight, step, steps_per_epoch
        )
        if w_student is None:
            return distill_weights(w_teacher, w_teacher, 0.0)
        return distill_weights(w_student, w_teacher, lam)
