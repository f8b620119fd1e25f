"""Single-network strategies: plain CE, teacher-only reweighting, and NLKD (Eq. 5-7).

``strategy.transform`` (reweight, nlkd): ``raw`` weights by the scores themselves (the paper); ``rank`` and
``gmm`` map every score — the student's too — through a :class:`nlkd.score_transforms.ScoreTransform`
fitted once on the teacher scores of the training set, and scale the batch's weights to mean 1.
"""

from __future__ import annotations

from torch import Tensor

from nlkd.config import StrategyConfig
from nlkd.score_transforms import ScoreTransform, normalise_batch_mean
from nlkd.strategies.base import StepInputs, Strategy
from nlkd.weighting import LambdaSchedule, NLKDWeighter, distill_weights

__all__ = ["NLKD", "Baseline", "Reweight", "nlkd_components", "nlkd_weighter"]


class Baseline(Strategy):
    """Plain cross-entropy: every image weighs 1."""

    name = "baseline"

    def weights(self, step: StepInputs) -> list[Tensor]:
        return [self.ones(step)]


class _TeacherScored(Strategy):
    """Shared by reweight and nlkd: the score transform, fitted in :meth:`setup` (``raw``: none)."""

    needs_teacher = True
    transform: ScoreTransform | None = None

    def setup(self, all_teacher_scores: Tensor) -> None:
        if self.cfg.transform != "raw":
            self.transform = ScoreTransform(self.cfg.transform, all_teacher_scores)  # type: ignore[arg-type]

    def _transformed(self, scores: Tensor) -> Tensor:
        if self.transform is None:
            raise ValueError(f"strategy.transform={self.cfg.transform!r} needs setup() with the teacher scores")
        return self.transform(scores)


class Reweight(_TeacherScored):
    """Teacher-only reweighting (the paper's "Reweight" rows): w = the teacher's cached score
    (``transform=raw``), or its rank / GMM posterior scaled to batch mean 1.

    In the second half of training only (``strategy.start: 0.5``, which any strategy takes) it beat plain
    CE on CamVid's dilate/erode labels: the coarse labels cost little in the first half and most in the
    second, as the learning rate falls, while the interiors of the corrupted masks still teach (RESULTS.md).
    """

    name = "reweight"

    def weights(self, step: StepInputs) -> list[Tensor]:
        if step.teacher_scores is None:
            raise ValueError("strategy 'reweight' needs StepInputs.teacher_scores; got None")
        if self.cfg.transform == "raw":
            w = step.teacher_scores.nan_to_num(0.0)
        else:
            w = normalise_batch_mean(self._transformed(step.teacher_scores))
        self.log_weights("w_teacher", w, step.coarse)
        return [w]


class NLKD(_TeacherScored):
    """NLKD: W_kd = λ · w_student + (1 − λ) · w_teacher (Eq. 6) with the warm-up + linear λ schedule.

    The student's score comes from the same forward pass (argmax of its logits, no extra pass);
    the teacher's score is cached per image.
    """

    name = "nlkd"

    def __init__(self, cfg, num_classes, ignore_index, epochs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(cfg, num_classes, ignore_index, epochs)
        self.weighter = nlkd_weighter(cfg, num_classes, ignore_index, epochs)

    def weights(self, step: StepInputs) -> list[Tensor]:
        w_student, w_teacher, lam = nlkd_components(self.weighter, step, step.logits[0].detach().argmax(1))
        if self.cfg.transform != "raw":  # the student's score mapped like the teacher's (rank / posterior)
            w_teacher = self._transformed(w_teacher)
            w_student = None if w_student is None else self._transformed(w_student)
        self.log.add("lambda", lam, len(w_teacher))
        self.log_weights("w_teacher", w_teacher, step.coarse)
        if w_student is not None:
            self.log_weights("w_student", w_student, step.coarse)
        w = distill_weights(w_teacher if w_student is None else w_student, w_teacher, lam)
        return [w if self.cfg.transform == "raw" else normalise_batch_mean(w)]


def nlkd_weighter(cfg: StrategyConfig, num_classes: int, ignore_index: int | None, epochs: int) -> NLKDWeighter:
    """NLKD's weighter for a run of ``epochs``: λ = 0 for ``warmup_epochs`` (default 10 % of the epochs, at
    least 1), then linear to ``final_lambda``; the configured quality metric and BF tolerance."""
    warmup = cfg.warmup_epochs if cfg.warmup_epochs is not None else max(1, round(0.1 * epochs))
    return NLKDWeighter(
        num_classes,
        LambdaSchedule(min(warmup, epochs), epochs, cfg.final_lambda),
        metric=cfg.metric,
        tolerance=cfg.tolerance,
        ignore_index=ignore_index,
    )


def nlkd_components(weighter: NLKDWeighter, step: StepInputs, student: Tensor) -> tuple[Tensor | None, Tensor, float]:
    """``(w_student or None while λ = 0, w_teacher, λ)`` of a step: the student's (B, H, W) prediction
    ``student`` scored against the annotation, the teacher's cached scores, λ at this step."""
    return weighter.components(
        student,
        step.target,
        step.epoch,
        teacher_weight=step.teacher_scores,
        step=step.step,
        steps_per_epoch=step.steps_per_epoch,
    )
