"""The strategy interface: per-image losses in, :class:`LossWeights` out (one per network).

The training loop computes each network's logits and per-image losses, asks the strategy for weights
and reduces with :func:`nlkd.weighting.weighted_loss`. A strategy never touches models or optimisers,
so any strategy runs with any model, and two-network strategies (co-teaching, ...) need nothing else.
Image-level strategies implement :meth:`Strategy.weights` ((B,) weights per network); pixel-level ones
override :meth:`Strategy.loss_weights` and may add per-pixel weights, a soft target or a target set,
which the loop reduces with :func:`nlkd.weighting.per_image_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from nlkd.config import StrategyConfig
from nlkd.weighting import Reduction, per_image_loss, weighted_loss

__all__ = ["LossWeights", "RunningMeans", "StepInputs", "Strategy", "network_loss"]


@dataclass(kw_only=True)
class StepInputs:
    """What a strategy sees at one training step (batch of B images, N networks).

    Attributes:
        index: (B,) int64 dataset indices of the images.
        target: (B, H, W) int64 annotations as trained on.
        logits: N tensors (B, C, H, W), with gradient (strategies must only read them).
        losses: N tensors (B,), per-image losses (CE + model auxiliary), with gradient.
        epoch, step, steps_per_epoch: position in training (epoch from 0).
        teacher_scores: (B,) cached teacher quality scores of these images, or None.
        coarse: (B,) bool, images flagged coarse (label folder's manifest or a list), or None. The
            ``fixed`` strategy weights by it; others only log their weights split by it.
        extras: per-image maps under the same augmentation as ``target``, by name: e.g. ``fine_mask``
            (B, H, W) int64 (the uncorrupted annotation), ``teacher_prob`` (B, C, H, W) float. The loop
            provides those the strategy names in ``needs_extras`` (and ``fine_mask`` when it is known).
    """

    index: Tensor
    target: Tensor
    logits: list[Tensor]
    losses: list[Tensor]
    epoch: int
    step: int
    steps_per_epoch: int
    teacher_scores: Tensor | None = None
    coarse: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class LossWeights:
    """What a strategy returns for one network (tensors carry no gradient).

    Attributes:
        image: (B,) per-image weights >= 0.
        pixel: (B, H, W) per-pixel weights >= 0, or None; 0 drops the pixel.
        soft_target: (B, C, H, W) per-pixel target distribution replacing the one-hot annotation
            (loss ``-Σ_c q_c log p_c``), or None.
        target_set: (B, C, H, W) bool multi-hot relaxed label (loss ``-log Σ_{c∈S} p_c``), or None.
    """

    image: Tensor
    pixel: Tensor | None = None
    soft_target: Tensor | None = None
    target_set: Tensor | None = None

    @property
    def image_only(self) -> bool:
        """True when only per-image weights are set (the per-image CE of the loop is used as it is)."""
        return self.pixel is None and self.soft_target is None and self.target_set is None


def network_loss(
    lw: LossWeights,
    losses: Tensor,
    aux: Tensor | float,
    logits: Tensor,
    target: Tensor,
    ignore_index: int | None,
    reduction: Reduction = "mean",
) -> Tensor:
    """One network's batch loss: ``weighted_loss(per-image loss, lw.image)``.

    Args:
        lw: the strategy's weights for this network.
        losses: (B,) per-image CE + auxiliary loss as the loop computed it; used as it is when ``lw`` has
            only image weights (so image-level strategies train exactly as before).
        aux: (B,) or scalar auxiliary loss of the model, added to the recomputed per-pixel loss.
        logits: (B, C, H, W) and target (B, H, W), for :func:`nlkd.weighting.per_image_loss`.
    """
    if not lw.image_only:
        pixel = per_image_loss(logits.float(), target, ignore_index, lw.pixel, lw.soft_target, lw.target_set)
        losses = pixel + aux
    return weighted_loss(losses, lw.image, reduction)


class RunningMeans:
    """Means of logged per-step values over an epoch (e.g. mean student weight)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, value: Tensor | float, n: int = 1) -> None:
        v = float(value.float().mean()) if isinstance(value, Tensor) else float(value)
        self.sums[name] = self.sums.get(name, 0.0) + v * n
        self.counts[name] = self.counts.get(name, 0) + n

    def pop(self) -> dict[str, float]:
        out = {k: self.sums[k] / self.counts[k] for k in self.sums if self.counts[k]}
        self.sums.clear()
        self.counts.clear()
        return out


class Strategy:
    """Base class. Subclasses set ``name`` and implement :meth:`weights` (or :meth:`loss_weights`).

    Args:
        cfg: the strategy section of the training config.
        num_classes, ignore_index: of the data set.
        epochs: total training epochs (for schedules).
    """

    name: ClassVar[str]
    num_networks: ClassVar[int] = 1
    needs_teacher: ClassVar[bool] = False  # the loop provides ``teacher_scores``
    needs_coarse_flags: ClassVar[bool] = False  # the loop provides ``coarse``
    needs_extras: ClassVar[tuple[str, ...]] = ()  # the loop provides these ``extras`` maps

    def __init__(self, cfg: StrategyConfig, num_classes: int, ignore_index: int | None, epochs: int) -> None:
        self.cfg = cfg
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.epochs = epochs
        self.log = RunningMeans()

    def weights(self, step: StepInputs) -> list[Tensor]:
        """Return one (B,) weight tensor (no gradient) per network."""
        raise NotImplementedError  # pragma: no cover - abstract

    def loss_weights(self, step: StepInputs) -> list[LossWeights]:
        """What the loop calls: one :class:`LossWeights` per network. Default: :meth:`weights` per image."""
        return [LossWeights(w) for w in self.weights(step)]

    def setup(self, all_teacher_scores: Tensor) -> None:
        """Called once by the loop, after scoring, with the (N,) teacher scores of the whole training set
        in dataset order (only for ``needs_teacher`` strategies). Default: nothing."""
        del all_teacher_scores

    def state_dict(self) -> dict[str, object]:
        return {}

    def load_state_dict(self, state: dict[str, object]) -> None:
        del state

    def log_weights(self, name: str, w: Tensor, coarse: Tensor | None) -> None:
        """Log the batch mean of ``w`` as ``name``, and split into ``name_coarse`` / ``name_clean`` when
        coarse flags are known (how well the weights separate bad annotations, epoch by epoch)."""
        w = w.detach().float().nan_to_num(0.0)
        self.log.add(name, w, len(w))
        if coarse is not None:
            for suffix, mask in (("coarse", coarse), ("clean", ~coarse)):
                if mask.any():
                    self.log.add(f"{name}_{suffix}", w[mask], int(mask.sum()))

    @staticmethod
    def ones(step: StepInputs) -> Tensor:
        return torch.ones(step.target.shape[0], device=step.target.device)
