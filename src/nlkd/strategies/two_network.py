"""Two-network strategies (the paper's Table 5): Decoupling, Co-teaching and Co-teaching+.

    nlkd train --data ROOT --labels train_coarse --strategy coteaching --set strategy.peer_model=deeplabv3plus

Network A is the configured model (the one evaluated and checkpointed as ``models[0]``), network B is
``strategy.peer_model`` (default: the same architecture). Each strategy returns ``[w_A, w_B]``, 0/1
weights that select which images of the batch each network is updated on.

Building blocks, all batched over the B images of a step:

* :func:`disagreement` — per-image 1 − IoU between the two networks' argmax maps on valid pixels;
* :func:`keep_rate` — the co-teaching schedule R(t) = 1 − τ·min(t / T_k, 1), t in fractional epochs;
* :func:`small_loss_mask` — the ``n`` smallest-loss images (of a candidate set), ties by dataset index.
"""

from __future__ import annotations

import math
from typing import get_args

import torch
from torch import Tensor

from nlkd.config import DisagreeRule, StrategyConfig
from nlkd.errors import ConfigError
from nlkd.metrics import per_image_iou
from nlkd.strategies.base import StepInputs, Strategy

__all__ = [
    "CoTeaching",
    "CoTeachingPlus",
    "Decoupling",
    "disagreement",
    "keep_rate",
    "round_half_up",
    "small_loss_mask",
]


def round_half_up(x: float) -> int:
    """Nearest integer, halves rounded up (``round_half_up(2.5) == 3``, unlike Python's ``round``)."""
    return math.floor(x + 0.5)


@torch.no_grad()
def disagreement(
    logits_a: Tensor, logits_b: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None
) -> Tensor:
    """Per-image disagreement of two networks: 1 − mean IoU of A's argmax map against B's.

    IoU is :func:`nlkd.metrics.per_image_iou` with ``pred`` = A and ``target`` = B over the pixels whose
    annotation is not ``ignore_index``. The value is 0 exactly when the two maps agree on every valid
    pixel; an image without valid pixels gets 0 (nothing to disagree on).

    Args:
        logits_a, logits_b: (B, C, H, W) logits of networks A and B (or (B, H, W) label maps).
        target: (B, H, W) annotation; only its ``ignore_index`` pixels are used (they are left out).

    Returns:
        (B,) float64 in [0, 1].
    """
    pred_a = logits_a.argmax(1) if logits_a.ndim == 4 else logits_a
    pred_b = logits_b.argmax(1) if logits_b.ndim == 4 else logits_b
    if ignore_index is not None:
        # mark ignored pixels with a value no prediction can take, so a dataset whose ignore_index
        # is also a class index cannot remove predicted pixels of that class
        pred_b = pred_b.masked_fill(target == ignore_index, num_classes)
        return (1.0 - per_image_iou(pred_a, pred_b, num_classes, num_classes)).nan_to_num(nan=0.0)
    return (1.0 - per_image_iou(pred_a, pred_b, num_classes)).nan_to_num(nan=0.0)


def keep_rate(t: float, forget_rate: float, forget_epochs: float) -> float:
    """Co-teaching's R(t) = 1 − τ·min(t / T_k, 1): the share of images kept at ``t`` fractional epochs.

    >>> [keep_rate(t, 0.2, 2) for t in (0, 1, 2, 5)]
    [1.0, 0.9, 0.8, 0.8]
    """
    if forget_epochs <= 0:
        raise ValueError(f"forget_epochs must be > 0, got {forget_epochs!r}")
    return 1.0 - forget_rate * min(t / forget_epochs, 1.0)


def small_loss_mask(loss: Tensor, index: Tensor, n_keep: int, candidates: Tensor | None = None) -> Tensor:
    """Flag the ``n_keep`` images with the smallest loss, among ``candidates`` if given.

    Equal losses are broken by dataset index (the lower index is kept first), so the choice does not
    depend on the batch order.

    Args:
        loss: (B,) per-image losses (only read).
        index: (B,) dataset indices of the images.
        n_keep: how many to flag, 0 <= n_keep <= number of candidates.
        candidates: (B,) bool, the images that may be flagged; default all.

    Returns:
        (B,) bool with exactly ``n_keep`` True entries.

    >>> small_loss_mask(torch.tensor([0.3, 0.1, 0.3, 0.2]), torch.tensor([7, 4, 5, 6]), 2).tolist()
    [False, True, False, True]
    """
    if loss.ndim != 1 or index.shape != loss.shape:
        raise ValueError(f"loss and index must both have shape (B,), got {tuple(loss.shape)}, {tuple(index.shape)}")
    n_cand = loss.numel() if candidates is None else int(candidates.sum())
    if not 0 <= n_keep <= n_cand:
        raise ValueError(f"n_keep must lie in [0, {n_cand}] (the number of candidates), got {n_keep}")
    order = torch.argsort(index, stable=True)  # batch positions by dataset index
    key = loss.detach().float()[order]
    if candidates is not None:
        key = key.masked_fill(~candidates[order], math.inf)
    chosen = order[torch.argsort(key, stable=True)[:n_keep]]
    mask = torch.zeros(loss.numel(), dtype=torch.bool, device=loss.device)
    mask[chosen] = True
    return mask


def most_disagreeing(d: Tensor) -> Tensor:
    """(B,) bool: disagreement strictly above the batch median (``torch.median``, the lower middle value
    for an even B); when none is (the largest values tie at the median), the images at the maximum."""
    selected = d > d.median()
    return selected if selected.any() else d == d.max()


class _TwoNetworks(Strategy):
    """Shared parts: two networks, the forget-rate schedule and its config checks."""

    num_networks = 2

    def __init__(self, cfg: StrategyConfig, num_classes: int, ignore_index: int | None, epochs: int) -> None:
        super().__init__(cfg, num_classes, ignore_index, epochs)
        if not 0.0 <= cfg.forget_rate <= 1.0:
            raise ConfigError(f"strategy.forget_rate must lie in [0, 1], got {cfg.forget_rate!r}")
        if cfg.forget_epochs is not None and cfg.forget_epochs < 1:
            raise ConfigError(f"strategy.forget_epochs must be >= 1 (or null), got {cfg.forget_epochs!r}")
        self.forget_epochs = cfg.forget_epochs if cfg.forget_epochs is not None else max(1, round(0.1 * epochs))

    def keep_rate(self, step: StepInputs) -> float:
        """R(t) at this step, t = epoch + step / steps_per_epoch."""
        t = step.epoch + (step.step / step.steps_per_epoch if step.steps_per_epoch else 0.0)
        return keep_rate(t, self.cfg.forget_rate, self.forget_epochs)

    def disagreement(self, step: StepInputs) -> Tensor:
        """(B,) 1 − IoU(argmax A, argmax B) on the valid pixels of ``step.target``."""
        return disagreement(
            step.logits[0].detach(), step.logits[1].detach(), step.target, self.num_classes, self.ignore_index
        )


class Decoupling(_TwoNetworks):
    """Decoupling (Malach & Shalev-Shwartz 2017): update on the images where the networks disagree most.

    Rule: an image is selected when its :func:`disagreement` is strictly above the batch median
    (``torch.median``, the lower of the two middle values for an even B); when no image is (the largest
    values tie at the median), the images with the largest disagreement are selected, so at least one
    is. Both networks get weight 1 on the selection, 0 elsewhere. ("All images with disagreement > 0"
    would select nearly every image in segmentation, where two maps almost never agree on every pixel.)
    Logs ``disagreement`` (batch mean) and ``kept`` (share selected).
    """

    name = "decoupling"

    def weights(self, step: StepInputs) -> list[Tensor]:
        d = self.disagreement(step)
        w = most_disagreeing(d).float().to(step.target.device)
        n = len(w)
        self.log.add("disagreement", d, n)
        self.log.add("kept", w, n)
        return [w, w.clone()]


class CoTeaching(_TwoNetworks):
    """Co-teaching (Han et al. 2018): each network trains on the images its peer finds small-loss.

    Each network keeps ``max(1, round(R(t) · B))`` images (halves rounded up) with its smallest losses
    (ties broken by dataset index); network A is weighted 1 on B's selection, B on A's. R(t) is
    :func:`keep_rate` with τ = ``strategy.forget_rate`` and T_k = ``strategy.forget_epochs`` (default
    10 % of the epochs, at least 1). Logs ``keep_rate``, ``kept`` (share of the batch each network is
    updated on) and ``overlap`` (share of A's selection that B also selected).
    """

    name = "coteaching"

    def weights(self, step: StepInputs) -> list[Tensor]:
        rate = self.keep_rate(step)
        b = step.target.shape[0]
        n_keep = min(b, max(1, round_half_up(rate * b)))
        pick_a = small_loss_mask(step.losses[0], step.index, n_keep)
        pick_b = small_loss_mask(step.losses[1], step.index, n_keep)
        self.log.add("keep_rate", rate, b)
        self.log.add("kept", n_keep / b, b)
        self.log.add("overlap", float((pick_a & pick_b).sum()) / n_keep, b)
        dev = step.target.device
        return [pick_b.float().to(dev), pick_a.float().to(dev)]


class CoTeachingPlus(_TwoNetworks):
    """Co-teaching+ (Yu et al. 2019): co-teaching restricted to the images the networks disagree on.

    Rule: the candidates are the images with :func:`disagreement` > 0 (the argmax maps differ on at
    least one valid pixel). Among the D candidates each network keeps ``max(1, round(R(t) · D))``
    (halves rounded up) with its smallest losses, ties by dataset index, and its peer is updated on
    them. When no image disagrees nothing is updated that step (all weights 0), as in Algorithm 1 of
    the paper (the small-loss set of an empty disagreement set is empty). The disagreement restriction
    applies from the first step: the code of Yu et al. runs plain co-teaching for an initial number of
    epochs, but here R(t) = 1 during the ramp already keeps every disagreeing image, and two freshly
    initialised segmentation networks disagree somewhere on practically every image. Logs
    ``disagree_share``, ``keep_rate`` and ``kept`` (share of the batch each network is updated on).

    Measured on CamVid (RESULTS.md, Table 5): with this rule every image of every batch was a
    candidate, so Co-teaching+ selected exactly as Co-teaching. ``strategy.disagree_rule=median``
    takes Decoupling's candidates instead (:func:`most_disagreeing`: above the batch median).
    """

    name = "coteaching_plus"

    def __init__(self, cfg: StrategyConfig, num_classes: int, ignore_index: int | None, epochs: int) -> None:
        super().__init__(cfg, num_classes, ignore_index, epochs)
        if cfg.disagree_rule not in get_args(DisagreeRule):
            rules = " or ".join(get_args(DisagreeRule))
            raise ConfigError(f"strategy.disagree_rule must be {rules}, got {cfg.disagree_rule!r}")

    def weights(self, step: StepInputs) -> list[Tensor]:
        rate = self.keep_rate(step)
        b = step.target.shape[0]
        d = self.disagreement(step)
        candidates = d > 0 if self.cfg.disagree_rule == "any" else most_disagreeing(d) & (d > 0)
        n_cand = int(candidates.sum())
        n_keep = min(n_cand, max(1, round_half_up(rate * n_cand)))
        pick_a = small_loss_mask(step.losses[0], step.index, n_keep, candidates)
        pick_b = small_loss_mask(step.losses[1], step.index, n_keep, candidates)
        self.log.add("disagree_share", n_cand / b, b)
        self.log.add("keep_rate", rate, b)
        self.log.add("kept", n_keep / b, b)
        dev = step.target.device
        return [pick_b.float().to(dev), pick_a.float().to(dev)]
