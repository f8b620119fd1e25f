"""Where an annotation is in doubt: the pixels a pixel-level strategy (``relax``, ``band_kd``,
``band_ignore``) acts on.

``strategy.doubt_rule``:

* ``all`` — every pixel (the methods as published);
* ``teacher`` — pixels whose cached teacher prediction (argmax of ``extras["teacher_prob"]``) differs
  from the annotation, and unlabelled pixels;
* ``score`` — every pixel of the images whose cached teacher score is below the ``doubt_quantile``
  quantile of the training set's teacher scores (fixed once, in ``setup``).

Issue 13: relaxing every boundary pixel at 120×160 cost 1 mIoU on CamVid in a prototype (the band is a
large share of the pixels at low resolution), so acting only where the annotation is in doubt is the
variant to try first.
"""

from __future__ import annotations

import math
from typing import get_args

import torch
from torch import Tensor

from nlkd.config import DoubtRuleName, StrategyConfig
from nlkd.errors import ConfigError
from nlkd.strategies.base import StepInputs, Strategy
from nlkd.teacher_cache import TEACHER_PROB  # also registers the provider of these maps

__all__ = ["TEACHER_PROB", "DoubtRule", "DoubtStrategy"]


class DoubtRule:
    """Decides per pixel whether the annotation is in doubt (see the module docstring)."""

    def __init__(self, rule: str, quantile: float) -> None:
        if rule not in get_args(DoubtRuleName):
            raise ConfigError(f"strategy.doubt_rule must be one of {', '.join(get_args(DoubtRuleName))}, got {rule!r}")
        if not 0 < quantile <= 1:
            raise ConfigError(f"strategy.doubt_quantile must lie in (0, 1], got {quantile!r}")
        self.rule, self.quantile = rule, quantile
        self.cutoff = math.inf

    @property
    def needs_teacher(self) -> bool:
        return self.rule == "score"

    @property
    def needs_extras(self) -> tuple[str, ...]:
        return (TEACHER_PROB,) if self.rule == "teacher" else ()

    def setup(self, all_teacher_scores: Tensor) -> None:
        """Fix the score cut-off: the ``quantile`` of the training set's scores (NaN scores left out)."""
        s = all_teacher_scores.detach().float().cpu()
        s = s[~s.isnan()]
        self.cutoff = float(torch.quantile(s, self.quantile)) if len(s) else math.inf

    def mask(self, step: StepInputs, ignore_index: int | None) -> Tensor | None:
        """(B, H, W) bool pixels in doubt, or None for "every pixel"."""
        if self.rule == "all":
            return None
        if self.rule == "score":
            if step.teacher_scores is None:
                raise ValueError("doubt_rule 'score' needs StepInputs.teacher_scores; got None")
            low = step.teacher_scores.nan_to_num(-math.inf) < self.cutoff  # an unscorable image is in doubt
            return low.view(-1, 1, 1).expand_as(step.target)
        prob = step.extras.get(TEACHER_PROB)
        if prob is None:
            raise ValueError(f"doubt_rule 'teacher' needs StepInputs.extras[{TEACHER_PROB!r}]; got none")
        doubt = prob.argmax(1) != step.target
        return doubt if ignore_index is None else doubt | (step.target == ignore_index)


class DoubtStrategy(Strategy):
    """A strategy that acts only where the annotation is in doubt (``strategy.doubt_rule``,
    ``strategy.doubt_quantile``): it needs the teacher's scores or maps exactly when its rule does."""

    def __init__(self, cfg: StrategyConfig, num_classes: int, ignore_index: int | None, epochs: int) -> None:
        super().__init__(cfg, num_classes, ignore_index, epochs)
        self.doubt = DoubtRule(cfg.doubt_rule, cfg.doubt_quantile)
        self.needs_teacher = type(self).needs_teacher or self.doubt.needs_teacher  # type: ignore[misc]
        self.needs_extras = tuple(dict.fromkeys((*type(self).needs_extras, *self.doubt.needs_extras)))  # type: ignore[misc]

    def setup(self, all_teacher_scores: Tensor) -> None:
        self.doubt.setup(all_teacher_scores)
