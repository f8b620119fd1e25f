"""Single-network strategies: plain CE, teacher-only reweighting, and NLKD (Eq. 5-7)."""

from __future__ import annotations

from torch import Tensor

from nlkd.strategies.base import StepInputs, Strategy
from nlkd.weighting import LambdaSchedule, NLKDWeighter, distill_weights

__all__ = ["NLKD", "Baseline", "Reweight"]


class Baseline(Strategy):
    """Plain cross-entropy: every image weighs 1."""

    name = "baseline"

    def weights(self, step: StepInputs) -> list[Tensor]:
        return [self.ones(step)]


class Reweight(Strategy):
    """Teacher-only reweighting (the paper's "Reweight" rows): w = the teacher's cached score."""

    name = "reweight"
    needs_teacher = True

    def weights(self, step: StepInputs) -> list[Tensor]:
        assert step.teacher_scores is not None
        w = step.teacher_scores.nan_to_num(0.0)
        self.log_weights("w_teacher", w, step.coarse)
        return [w]


class NLKD(Strategy):
    """NLKD: W_kd = λ · w_student + (1 − λ) · w_teacher (Eq. 6) with the warm-up + linear λ schedule.

    The student's score comes from the same forward pass (argmax of its logits, no extra pass);
    the teacher's score is cached per image.
    """

    name = "nlkd"
    needs_teacher = True

    def __init__(self, cfg, num_classes, ignore_index, epochs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(cfg, num_classes, ignore_index, epochs)
        warmup = cfg.warmup_epochs if cfg.warmup_epochs is not None else max(1, round(0.1 * epochs))
        self.weighter = NLKDWeighter(
            num_classes,
            LambdaSchedule(min(warmup, epochs), epochs, cfg.final_lambda),
            metric=cfg.metric,
            tolerance=cfg.tolerance,
            ignore_index=ignore_index,
        )

    def weights(self, step: StepInputs) -> list[Tensor]:
        w_student, w_teacher, lam = self.weighter.components(
            step.logits[0].detach().argmax(1),
            step.target,
            step.epoch,
            teacher_weight=step.teacher_scores,
            step=step.step,
            steps_per_epoch=step.steps_per_epoch,
        )
        self.log.add("lambda", lam, len(w_teacher))
        self.log_weights("w_teacher", w_teacher, step.coarse)
        if w_student is not None:
            self.log_weights("w_student", w_student, step.coarse)
        return [distill_weights(w_teacher if w_student is None else w_student, w_teacher, lam)]
