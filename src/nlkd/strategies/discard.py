"""Detect and discard (the paper's §2.1 / Table 1 foil): drop the images the teacher scores worst.

    nlkd train --data ROOT --labels train_coarse --strategy discard --teacher runs/teacher/best.pt
    nlkd train ... --strategy discard --set strategy.discard_threshold=0.6

Which images are dropped is decided once, from the teacher scores of the whole training set
(:meth:`Discard.setup`, called by the loop after scoring), not per batch; a dropped image weighs 0 in
every epoch, a kept image 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nlkd.config import StrategyConfig
from nlkd.errors import ConfigError
from nlkd.strategies.base import StepInputs, Strategy

__all__ = ["Discard", "lowest_share_mask"]


def lowest_share_mask(scores: Tensor, ratio: float) -> Tensor:
    """Flag exactly ``round(ratio · N)`` images (halves rounded up) with the lowest scores.

    Ties at the cut-off are broken by position (the lower dataset index is dropped first), so the
    count is exact whatever the ties; a NaN score (image without a valid pixel) ranks lowest.

    Args:
        scores: (N,) per-image scores in dataset order.
        ratio: share of images to flag, in [0, 1).

    Returns:
        (N,) bool, True for the flagged images.

    >>> lowest_share_mask(torch.tensor([0.9, 0.2, 0.5, 0.2]), 0.25).tolist()
    [False, True, False, False]
    """
    if scores.ndim != 1:
        raise ValueError(f"scores must have shape (N,), got {tuple(scores.shape)}")
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must lie in [0, 1), got {ratio!r}")
    k = math.floor(ratio * scores.numel() + 0.5)
    ranked = torch.argsort(scores.float().nan_to_num(nan=-math.inf), stable=True)
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    mask[ranked[:k]] = True
    return mask


class Discard(Strategy):
    """Weight 0 for images the teacher flags as noisy, 1 otherwise.

    Rule: with ``strategy.discard_threshold`` set, an image is dropped when its teacher score is below
    the threshold (strictly) or NaN; otherwise the ``strategy.discard_ratio`` share of the whole training
    set with the lowest scores is dropped (exactly ``round(ratio · N)`` images, ties broken by dataset
    index, see :func:`lowest_share_mask`). Logs ``kept`` (share of the batch kept).
    """

    name = "discard"
    needs_teacher = True

    def __init__(self, cfg: StrategyConfig, num_classes: int, ignore_index: int | None, epochs: int) -> None:
        super().__init__(cfg, num_classes, ignore_index, epochs)
        if not 0.0 <= cfg.discard_ratio < 1.0:
            raise ConfigError(f"strategy.discard_ratio must lie in [0, 1), got {cfg.discard_ratio!r}")
        thr = cfg.discard_threshold
        if thr is not None and not math.isfinite(thr):
            raise ConfigError(f"strategy.discard_threshold must be a finite number or null, got {thr!r}")
        self.dropped: Tensor | None = None  # (N,) bool over the training set, set by setup()

    def setup(self, all_teacher_scores: Tensor) -> None:
        """Decide once which images are dropped, from the (N,) teacher scores in dataset order."""
        s = all_teacher_scores.detach()
        if self.cfg.discard_threshold is not None:
            self.dropped = ~(s >= self.cfg.discard_threshold)  # NaN compares False -> dropped
        else:
            self.dropped = lowest_share_mask(s, self.cfg.discard_ratio)

    def weights(self, step: StepInputs) -> list[Tensor]:
        """(B,) weights: 0 for the dropped images of the batch (by ``step.index``), 1 otherwise."""
        if self.dropped is None:
            raise RuntimeError("Discard.setup(all_teacher_scores) must be called before weights()")
        dropped = self.dropped.to(step.index.device)[step.index]
        w = (~dropped).float().to(step.target.device)
        self.log.add("kept", w, len(w))
        return [w]
