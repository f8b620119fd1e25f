"""Boundary label relaxation (Zhu et al., CVPR 2019, "Improving Semantic Segmentation via Video
Propagation and Label Relaxation"), as a strategy.

    nlkd train --data ROOT --labels train_coarse --strategy relax [--set strategy.relax_radius=1]
    nlkd train ... --strategy relax --teacher CKPT --set strategy.doubt_rule=teacher   # only where in doubt
"""

from __future__ import annotations

from nlkd.config import StrategyConfig
from nlkd.pixelwise import one_hot_labels, relaxed_label_set
from nlkd.strategies.base import LossWeights, StepInputs
from nlkd.strategies.doubt import DoubtStrategy

__all__ = ["Relax"]


class Relax(DoubtStrategy):
    """Label relaxation: near an annotated boundary any class of the neighbourhood counts as right.

    Per pixel p with N(p) the classes annotated in the (2r+1)² window around p (``relax_radius`` r,
    authors' default 1)::

        ℓ(p) = −log Σ_{c∈N(p)} softmax(z_p)_c = logsumexp(z_{N(p)}) − logsumexp(z_p)

    which is plain CE away from boundaries (N(p) = {y_p}). Unlabelled pixels are never a class; one
    with labelled neighbours learns their union, one without is left out. ``doubt_rule`` restricts the
    relaxation to the pixels in doubt (:mod:`nlkd.strategies.doubt`); elsewhere the loss is CE. The
    authors' class weights and their batch-wide 1/n(p) (a bug) are left out; image weights are 1.

    Logs ``relaxed_share``: the share of counted pixels whose label set has more than one class.
    """

    name = "relax"

    def __init__(self, cfg: StrategyConfig, num_classes: int, ignore_index: int | None, epochs: int) -> None:
        super().__init__(cfg, num_classes, ignore_index, epochs)
        self.radius = int(cfg.relax_radius)

    def loss_weights(self, step: StepInputs) -> list[LossWeights]:
        target = step.target
        sets = relaxed_label_set(target, self.num_classes, self.radius, self.ignore_index)
        doubt = self.doubt.mask(step, self.ignore_index)
        if doubt is not None:
            exact = one_hot_labels(target, self.num_classes, self.ignore_index)
            sets = sets.where(doubt.unsqueeze(1), exact)
        n = sets.sum(1)
        counted = int((n > 0).sum())
        if counted:
            self.log.add("relaxed_share", float((n > 1).sum()) / counted, len(target))
        return [LossWeights(self.ones(step), target_set=sets)]
