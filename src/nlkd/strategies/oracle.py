"""Ceilings for measurement: strategies that know which annotations are wrong.

    nlkd train --data ROOT --labels train_coarse --strategy oracle_image
    nlkd train --data ROOT --labels train_coarse --strategy oracle_pixel

Both read what ``nlkd corrupt`` recorded: ``oracle_image`` the manifest's corrupted ids (weight 0 for a
corrupted image, 1 otherwise: the best any image-level selection could do), ``oracle_pixel`` the fine masks
the label folder was made from (the pixels whose annotation differs from the fine mask are ignored, the
rest is plain CE: the best any pixel-level selection could do). Neither is a method: they tell how much
an image-level or a pixel-level method could gain on a setting.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nlkd.strategies.base import LossWeights, StepInputs, Strategy

__all__ = ["OracleImage", "OraclePixel", "oracle_pixel_weights"]


class OracleImage(Strategy):
    """w = 0 for the images the corruption manifest (or ``strategy.coarse_list``) marks corrupted, else 1."""

    name = "oracle_image"
    needs_coarse_flags = True

    def weights(self, step: StepInputs) -> list[Tensor]:
        if step.coarse is None:
            raise ValueError("strategy 'oracle_image' needs StepInputs.coarse, the (B,) corrupted flags; got None")
        w = (~step.coarse.bool()).float().to(step.target.device)
        self.log.add("w_mean", w, len(w))
        return [w]


def oracle_pixel_weights(target: Tensor, fine_mask: Tensor) -> Tensor:
    """(B, H, W) annotation and fine mask -> (B, H, W) float weights: 0 where they differ, else 1."""
    if target.shape != fine_mask.shape:
        raise ValueError(
            f"target and fine_mask must have one shape, got {tuple(target.shape)} {tuple(fine_mask.shape)}"
        )
    return (target == fine_mask).float()


class OraclePixel(Strategy):
    """CE over the pixels whose annotation equals the fine mask (``extras["fine_mask"]``); every image weighs 1.

    Logs ``dropped_share``: the share of annotated pixels left out (the corrupted share of the labels).
    """

    name = "oracle_pixel"
    needs_extras = ("fine_mask",)

    def weights(self, step: StepInputs) -> list[Tensor]:
        return [self.ones(step)]

    def loss_weights(self, step: StepInputs) -> list[LossWeights]:
        fine = step.extras.get("fine_mask")
        if fine is None:
            raise ValueError("strategy 'oracle_pixel' needs StepInputs.extras['fine_mask'] (B, H, W); got none")
        pixel = oracle_pixel_weights(step.target, fine)
        annotated = step.target != self.ignore_index if self.ignore_index is not None else torch.ones_like(pixel).bool()
        dropped = ((pixel == 0) & annotated).flatten(1).sum(1).float()
        self.log.add("dropped_share", float(dropped.sum() / annotated.sum().clamp(min=1)), int(annotated.sum()))
        return [LossWeights(self.ones(step), pixel=pixel)]
