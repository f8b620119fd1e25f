"""NLKD at pixel level: a pixel counts when the teacher and the student confirm its annotation within
the BF tolerance, mixed by the λ schedule of Eq. 6, inside the image's NLKD weight.

    nlkd train --data ROOT --labels train_coarse --strategy nlkd_pixel --teacher CKPT --size 96x128
"""

from __future__ import annotations

from torch import Tensor

from nlkd.config import StrategyConfig
from nlkd.pixelwise import agreement_map
from nlkd.strategies.base import LossWeights, StepInputs, Strategy
from nlkd.strategies.doubt import TEACHER_PROB
from nlkd.strategies.simple import nlkd_components, nlkd_weighter
from nlkd.weighting import distill_weights

__all__ = ["NLKDPixel"]


class NLKDPixel(Strategy):
    """Per-pixel weights from agreement within the tolerance, times the image's NLKD weight.

    With a_f(p) = 1 when network f predicts the annotated class y_p somewhere within θ of p (θ =
    ``tolerance``, strictly below, as in BF; :func:`nlkd.pixelwise.agreement_map`), the weights are::

        w(p)  = λ(t) · a_student(p) + (1 − λ(t)) · a_teacher(p)        (Eq. 6 per pixel)
        W_img = λ(t) · w_student + (1 − λ(t)) · w_teacher               (Eq. 6, the image's BFmIoU)
        L_i   = W_img · mean over counted p of w(p) · CE(p)

    λ(t) is NLKD's warm-up + linear schedule (``warmup_epochs``, ``final_lambda``); during the warm-up
    only the teacher decides. A pixel that neither network confirms is dropped (w = 0); the mean runs
    over the pixels kept. The teacher's argmax comes from the cached probability maps, its image score
    from the cached scores; the student's from this step's logits (no extra pass).

    Logs ``lambda``, ``w_teacher`` / ``w_student`` (image weights, as ``nlkd``) and ``pixel_kept``.
    """

    name = "nlkd_pixel"
    needs_teacher = True
    needs_extras = (TEACHER_PROB,)

    def __init__(self, cfg: StrategyConfig, num_classes: int, ignore_index: int | None, epochs: int) -> None:
        super().__init__(cfg, num_classes, ignore_index, epochs)
        self.weighter = nlkd_weighter(cfg, num_classes, ignore_index, epochs)

    def loss_weights(self, step: StepInputs) -> list[LossWeights]:
        student = step.logits[0].detach().argmax(1)
        w_student, w_teacher, lam = nlkd_components(self.weighter, step, student)
        image = distill_weights(w_teacher if w_student is None else w_student, w_teacher, lam)
        theta = self.weighter.tolerance
        pixel = agreement_map(step.extras[TEACHER_PROB].argmax(1), step.target, theta, self.ignore_index).float()
        if lam > 0:
            pixel = (1.0 - lam) * pixel + lam * agreement_map(student, step.target, theta, self.ignore_index).float()
        self.log.add("lambda", lam, len(image))
        self.log_weights("w_teacher", w_teacher, step.coarse)
        if w_student is not None:
            self.log_weights("w_student", w_student, step.coarse)
        self._log_kept(pixel, step.target)
        return [LossWeights(image, pixel=pixel)]

    def _log_kept(self, pixel: Tensor, target: Tensor) -> None:
        labelled = target != self.ignore_index if self.ignore_index is not None else None
        kept = (pixel > 0) if labelled is None else (pixel > 0)[labelled]
        if kept.numel():
            self.log.add("pixel_kept", kept.float().mean(), len(target))
