"""How well a strategy's weights separate corrupted from clean annotations, epoch by epoch.

When the corruption is known (``nlkd corrupt`` wrote a manifest, and the fine masks it started from),
the loop logs per epoch, for network 0:

* ``weight_auroc`` — AUROC of the per-image weights for telling clean images (positives) from the
  manifest's corrupted ones: 1 = every clean image weighs more than every corrupted one, 0.5 = chance;
* ``weight_ratio_corrupted_clean`` — mean weight of corrupted images / mean weight of clean images;
* ``loss_share_corrupted_pixels`` — the share of the loss weight that lands on corrupted pixels
  (annotation != fine mask): each counted pixel weighs image weight × pixel weight / counted pixels of
  its image, exactly its factor in the batch loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from nlkd.strategies.base import LossWeights, StepInputs

__all__ = ["WeightSeparation", "corrupted_loss_share", "weight_auroc", "weight_ratio"]


def weight_auroc(weights: Tensor, corrupted: Tensor) -> float:
    """AUROC of ``weights`` (N,) for clean images vs ``corrupted`` (N,) bool ones: P(w_clean > w_corrupted)
    + ½·P(tie) (Mann–Whitney with mid-ranks). NaN when either group is empty.

    >>> weight_auroc(torch.tensor([0.9, 0.8, 0.1, 0.8]), torch.tensor([False, False, True, True]))
    0.875
    """
    w, bad = weights.detach().double().flatten().nan_to_num(0.0), corrupted.bool().flatten()
    n_bad, n_good = int(bad.sum()), int((~bad).sum())
    if n_bad == 0 or n_good == 0:
        return float("nan")
    _, inverse, counts = torch.unique(w, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    ranks = (ends - (counts.double() - 1) / 2)[inverse]  # 1-based mid-ranks
    return float((ranks[~bad].sum() - n_good * (n_good + 1) / 2) / (n_good * n_bad))


def weight_ratio(weights: Tensor, corrupted: Tensor) -> float:
    """Mean weight of corrupted images / mean weight of clean ones (NaN if a group is empty or the clean
    mean is 0). ``weights`` (N,), ``corrupted`` (N,) bool."""
    w, bad = weights.detach().double().flatten().nan_to_num(0.0), corrupted.bool().flatten()
    if not bad.any() or bad.all() or float(w[~bad].mean()) == 0:
        return float("nan")
    return float(w[bad].mean() / w[~bad].mean())


def corrupted_loss_share(lw: LossWeights, target: Tensor, fine_mask: Tensor, ignore_index: int | None) -> Tensor:
    """Loss weight on corrupted pixels and in total, as a (2,) float64 tensor [on corrupted, total].

    Args:
        lw: the strategy's weights for one network (image (B,), optional pixel (B, H, W), soft target or
            target set (B, C, H, W), which decide which pixels count as in ``per_image_loss``).
        target: (B, H, W) annotation; ``fine_mask``: (B, H, W) the fine annotation it was made from.
    """
    if lw.soft_target is not None:
        counted = (lw.soft_target > 0).any(1)
    elif lw.target_set is not None:
        counted = lw.target_set.bool().any(1)
    else:
        counted = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    pixel = torch.ones(target.shape, dtype=torch.float64, device=target.device)
    if lw.pixel is not None:
        pixel = lw.pixel.detach().double()
        counted = counted & (pixel > 0)
    per_image = lw.image.detach().double().nan_to_num(0.0) / counted.flatten(1).sum(1).clamp(min=1)
    share = per_image[:, None, None] * pixel * counted
    return torch.stack([share[target != fine_mask].sum(), share.sum()]).cpu()


class WeightSeparation:
    """Collects network 0's weights over an epoch; :meth:`pop` gives the epoch's separation figures."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.weights: list[Tensor] = []
        self.corrupted: list[Tensor] = []
        self.share = torch.zeros(2, dtype=torch.float64)  # loss weight [on corrupted pixels, in total]

    def add(self, lw: LossWeights, step: StepInputs, ignore_index: int | None) -> None:
        if step.coarse is not None:
            self.weights.append(lw.image.detach().float().cpu())
            self.corrupted.append(step.coarse.bool().cpu())
        fine = step.extras.get("fine_mask")
        if fine is not None:
            self.share += corrupted_loss_share(lw, step.target, fine, ignore_index)

    def pop(self, gather: bool = False) -> dict[str, float]:
        """The epoch's figures (keys only where defined); ``gather``: over all DDP processes. Resets."""
        parts: list[Any] = [(self.weights, self.corrupted, self.share)]
        if gather:
            parts = [None] * dist.get_world_size()
            dist.all_gather_object(parts, (self.weights, self.corrupted, self.share))
        w = torch.cat([t for p in parts for t in p[0]]) if any(p[0] for p in parts) else torch.zeros(0)
        c = torch.cat([t for p in parts for t in p[1]]) if any(p[1] for p in parts) else torch.zeros(0, dtype=bool)
        share = sum((p[2] for p in parts), torch.zeros(2, dtype=torch.float64))
        self.reset()
        out: dict[str, float] = {}
        if c.any() and not c.all():
            out["weight_auroc"] = weight_auroc(w, c)
            ratio = weight_ratio(w, c)
            if ratio == ratio:
                out["weight_ratio_corrupted_clean"] = ratio
        if share[1] > 0:
            out["loss_share_corrupted_pixels"] = float(share[0] / share[1])
        return out
