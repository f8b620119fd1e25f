"""ADELE (Liu et al., CVPR 2022, "Adaptive Early-Learning Correction for Segmentation from Noisy
Annotations") as a strategy: per class, correct labels by confident predictions once memorisation starts.

    nlkd train --data ROOT --labels train_coarse --strategy adele [--set strategy.adele_threshold=0.7]
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from nlkd.config import StrategyConfig
from nlkd.early_learning import class_overlap_counts, correct_labels, is_triggered
from nlkd.pixelwise import one_hot_labels
from nlkd.strategies.base import LossWeights, StepInputs, Strategy

__all__ = ["Adele"]


class Adele(Strategy):
    """Adaptive early-learning correction, online in the step.

    Each epoch the training IoU_c between the student's argmax and the *original* annotation is summed
    over the epoch per class c (all processes under DDP). After epoch e, every class not yet triggered
    is fitted with f(t) = a(1 − exp(−t^b/c)) and triggered when e >= its update epoch, the first epoch
    at which the fitted slope is below (1 − r) of its slope at epoch 1 (r = ``adele_r`` = 0.9;
    :mod:`nlkd.early_learning`). From the next epoch on, every step trains on::

        ŷ_p = argmax_c p_c(p)  if max_c p_c(p) > τ, ŷ_p triggered, ŷ_p in the image's annotation, y_p labelled
        ŷ_p = y_p               otherwise;       ℓ(p) = CE(z_p, ŷ_p)

    (τ = ``adele_threshold`` = 0.7, the authors' SegTHOR value for predictions of the training pass).
    Before any class triggers the loss is plain CE, bit for bit. Triggers are permanent; the history,
    the running counts and the triggered classes are saved in ``state_dict`` (exact resume).
    Not included: ADELE's multi-scale consistency loss (extra forward passes).

    Logs ``classes_corrected`` (count) and ``pixels_corrected`` (share of labelled pixels changed).
    """

    name = "adele"

    def __init__(self, cfg: StrategyConfig, num_classes: int, ignore_index: int | None, epochs: int) -> None:
        super().__init__(cfg, num_classes, ignore_index, epochs)
        self.r, self.threshold = cfg.adele_r, cfg.adele_threshold
        self.history: list[list[float]] = []  # one IoU per class for each finished epoch
        self.counts = torch.zeros(2, num_classes, dtype=torch.int64)  # the open epoch's intersections, unions
        self.open_epoch: int | None = None
        self.triggered = torch.zeros(num_classes, dtype=torch.bool)

    def _close_epoch(self) -> None:
        """Turn the open epoch's counts into one IoU point per class, then check the triggers."""
        counts = self.counts.clone()
        if dist.is_available() and dist.is_initialized():  # every process saw its share of the epoch
            on_gpu = dist.get_backend() == "nccl"  # NCCL reduces CUDA tensors only
            shared = counts.to(torch.device("cuda", torch.cuda.current_device())) if on_gpu else counts
            dist.all_reduce(shared)
            counts = shared.cpu()
        inter, union = counts.double()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(inter, math.nan))
        self.history.append(iou.tolist())
        self.counts.zero_()
        for c in range(self.num_classes):
            if not self.triggered[c]:
                series = [h[c] for h in self.history]
                self.triggered[c] = is_triggered(series, len(self.history) - 1, self.epochs, self.r)

    def loss_weights(self, step: StepInputs) -> list[LossWeights]:
        if self.open_epoch is not None and step.epoch != self.open_epoch:
            self._close_epoch()
        self.open_epoch = step.epoch
        logits, target = step.logits[0].detach(), step.target
        pred = logits.argmax(1)
        self.counts += class_overlap_counts(pred, target, self.num_classes, self.ignore_index).cpu()
        self.log.add("classes_corrected", float(self.triggered.sum()), len(target))
        if not bool(self.triggered.any()):
            return [LossWeights(self.ones(step))]
        corrected = correct_labels(logits.float().softmax(1), target, self.triggered, self.threshold, self.ignore_index)
        changed = corrected != target
        labelled = changed.numel() if self.ignore_index is None else int((target != self.ignore_index).sum())
        self.log.add("pixels_corrected", float(changed.sum()) / max(labelled, 1), len(target))
        sets = one_hot_labels(corrected, self.num_classes, self.ignore_index)
        return [LossWeights(self.ones(step), target_set=sets)]

    def state_dict(self) -> dict[str, object]:
        return {
            "history": [list(h) for h in self.history],
            "counts": self.counts.tolist(),
            "open_epoch": self.open_epoch,
            "triggered": self.triggered.tolist(),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.history = [list(h) for h in state["history"]]  # type: ignore[attr-defined]
        self.counts = torch.tensor(state["counts"], dtype=torch.int64)
        self.open_epoch = state["open_epoch"]  # type: ignore[assignment]
        self.triggered = torch.tensor(state["triggered"], dtype=torch.bool)
