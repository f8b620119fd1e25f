"""Coarse masks are wrong along their boundaries and right inside them: leave the boundary band of the
images in doubt out of the loss.

    nlkd train --data ROOT --labels train_coarse --strategy band_ignore --teacher CKPT \
        --set strategy.doubt_rule=score          # the band of the images the teacher scores low
    nlkd train ... --strategy band_ignore        # doubt_rule=all: the band of every image, no teacher

Why (issue 14, RESULTS.md): on CamVid, dropping exactly the corrupted *pixels* (``oracle_pixel``) recovers
about 60 % of the clean − coarse gap while dropping the corrupted *images* (``oracle_image``) loses mIoU,
and masks with an unlabelled band along every boundary (polygon-coarse) cost plain CE nothing. A dilated,
eroded or hastily traced mask is wrong only within a few pixels of its own boundary, and which images
are coarse the teacher's image score tells well (AUROC ~0.9); which pixels of them are wrong it tells
much worse. So this rule needs only the image-level detection and gives up the band of a few clean
images, whose boundaries the clean images that remain still teach.
"""

from __future__ import annotations

from typing import get_args

from nlkd.config import BandSide, StrategyConfig
from nlkd.errors import ConfigError
from nlkd.pixelwise import boundary_distance, moved_side_band
from nlkd.strategies.base import LossWeights, StepInputs
from nlkd.strategies.doubt import TEACHER_PROB, DoubtStrategy

__all__ = ["BandIgnore"]


class BandIgnore(DoubtStrategy):
    """CE without the pixels nearer than ``band_radius`` R to an annotated boundary, where in doubt.

    With d(p) the distance of pixel p to the nearest annotated boundary pixel
    (:func:`nlkd.pixelwise.boundary_distance`, 0 on the boundary) and doubt(p) from ``doubt_rule``
    (:mod:`nlkd.strategies.doubt`; ``score``: every pixel of the images whose cached teacher score is
    below the ``doubt_quantile`` quantile of the training set)::

        w(p) = 0   if d(p) < R and doubt(p)
        w(p) = 1   otherwise
        L_i  = mean over the counted pixels of w(p) · CE(p)

    ``band_side=teacher`` leaves out only one side of each boundary: per image and pair of touching
    classes, the side the cached teacher's argmax says the annotation grew into
    (:func:`nlkd.pixelwise.moved_side_band`, one vote over the pair's whole band), so the right side
    keeps teaching where the boundary is. Image weights are 1. Logs ``dropped_share``: the share of
    annotated pixels left out.
    """

    name = "band_ignore"

    def __init__(self, cfg: StrategyConfig, num_classes: int, ignore_index: int | None, epochs: int) -> None:
        super().__init__(cfg, num_classes, ignore_index, epochs)
        self.radius = cfg.band_radius
        if cfg.band_side not in get_args(BandSide):
            raise ConfigError(f"strategy.band_side must be {' or '.join(get_args(BandSide))}, got {cfg.band_side!r}")
        self.side = cfg.band_side
        if self.side == "teacher":
            self.needs_extras = tuple(dict.fromkeys((*self.needs_extras, TEACHER_PROB)))  # type: ignore[misc]

    def loss_weights(self, step: StepInputs) -> list[LossWeights]:
        target = step.target
        if self.side == "teacher":
            teacher = step.extras[TEACHER_PROB].argmax(1)
            drop = moved_side_band(target, teacher, self.num_classes, self.radius, self.ignore_index)
        else:
            drop = boundary_distance(target, self.ignore_index, max_distance=self.radius) < self.radius
        doubt = self.doubt.mask(step, self.ignore_index)
        if doubt is not None:
            drop &= doubt
        annotated = target != self.ignore_index if self.ignore_index is not None else target >= 0
        n = int(annotated.sum())
        if n:
            self.log.add("dropped_share", float((drop & annotated).sum()) / n, n)
        return [LossWeights(self.ones(step), pixel=(~drop).float())]
