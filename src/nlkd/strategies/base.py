"""The strategy interface: per-image losses in, per-image weights out (one vector per network).

The training loop computes each network's logits and per-image losses, asks the strategy for weights
and reduces with :func:`nlkd.weighting.weighted_loss`. A strategy never touches models or optimisers,
so any strategy runs with any model, and two-network strategies (co-teaching, ...) need nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from nlkd.config import StrategyConfig

__all__ = ["RunningMeans", "StepInputs", "Strategy"]


@dataclass
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
    """Base class. Subclasses set ``name`` and implement :meth:`weights`.

    Args:
        cfg: the strategy section of the training config.
        num_classes, ignore_index: of the data set.
        epochs: total training epochs (for schedules).
    """

    name: ClassVar[str]
    num_networks: ClassVar[int] = 1
    needs_teacher: ClassVar[bool] = False  # the loop provides ``teacher_scores``
    needs_coarse_flags: ClassVar[bool] = False  # the loop provides ``coarse``

    def __init__(self, cfg: StrategyConfig, num_classes: int, ignore_index: int | None, epochs: int) -> None:
        self.cfg = cfg
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.epochs = epochs
        self.log = RunningMeans()

    def weights(self, step: StepInputs) -> list[Tensor]:
        """Return one (B,) weight tensor (no gradient) per network."""
        raise NotImplementedError  # pragma: no cover - abstract

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
