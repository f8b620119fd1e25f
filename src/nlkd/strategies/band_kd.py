"""Boundary-aware distillation (after BAKD, Sun et al., IEEE TGRS 2025): near an annotated boundary the
student learns the teacher's soft prediction, elsewhere the annotation.

    nlkd train --data ROOT --labels train_coarse --strategy band_kd --teacher CKPT --size 96x128
"""

from __future__ import annotations

from nlkd.config import StrategyConfig
from nlkd.pixelwise import boundary_distance, one_hot_labels, reliability_weight, soften_probabilities
from nlkd.strategies.base import LossWeights, StepInputs
from nlkd.strategies.doubt import TEACHER_PROB, DoubtStrategy

__all__ = ["BandKD"]


class BandKD(DoubtStrategy):
    """Per-pixel target mixing the annotation and the cached teacher by the annotation's reliability.

    With d(p) the distance to the annotated boundary, α(p) = 1 − exp(−d(p)/σ) (BAKD's boundary
    reliability, ``band_sigma`` σ = 1 px), t(p) the teacher's probabilities softened at temperature T
    (``kd_temperature``, q ∝ t^(1/T)) and κ(p) = max_c t_c(p) the teacher's confidence, the target of a
    pixel in the band d(p) < ``band_radius`` is::

        q(p) = α(p) · onehot(y_p) + (1 − α(p)) · κ(p) · t^T(p)
        ℓ(p) = −Σ_c q_c(p) log softmax(z_p)_c  = α · CE(y_p) + (1 − α) · κ · CE(t^T)

    and outside the band q(p) = onehot(y_p), plain CE. On the boundary itself (d = 0) only the teacher
    teaches, weighted by its confidence; a teacher that is one-hot on the annotation gives exactly CE.
    Unlabelled pixels in the band learn the teacher alone (weight (1 − α) κ); where the teacher has no
    prediction (padding) nothing is learned. ``doubt_rule`` restricts the band to pixels in doubt.
    The teacher's maps are cached once per run (:mod:`nlkd.teacher_cache`); image weights are 1.

    Logs ``band_share`` (share of pixels in the band) and ``teacher_share`` (mean teacher part 1 − α).
    """

    name = "band_kd"
    needs_extras = (TEACHER_PROB,)

    def __init__(self, cfg: StrategyConfig, num_classes: int, ignore_index: int | None, epochs: int) -> None:
        super().__init__(cfg, num_classes, ignore_index, epochs)
        self.radius, self.sigma, self.temperature = cfg.band_radius, cfg.band_sigma, cfg.kd_temperature

    def loss_weights(self, step: StepInputs) -> list[LossWeights]:
        target = step.target
        prob = step.extras[TEACHER_PROB].float()
        d = boundary_distance(target, self.ignore_index, max_distance=self.radius)
        band = d < self.radius
        doubt = self.doubt.mask(step, self.ignore_index)
        if doubt is not None:
            band &= doubt
        alpha = reliability_weight(d, self.sigma).masked_fill(~band, 1.0).unsqueeze(1)  # (B, 1, H, W)
        confidence = prob.amax(1, keepdim=True)
        teacher = soften_probabilities(prob, self.temperature) * confidence
        onehot = one_hot_labels(target, self.num_classes, self.ignore_index).to(teacher.dtype)
        q = alpha * onehot + (1.0 - alpha) * teacher
        self.log.add("band_share", band.float().mean(), len(target))
        self.log.add("teacher_share", 1.0 - alpha.mean(), len(target))
        return [LossWeights(self.ones(step), soft_target=q)]
