"""The audit's numbers: per batch (:func:`audit_batch`) and over a data set in one streamed pass that
can be saved and resumed (:func:`audit_dataset`).

Per image it keeps only numbers: BF, IoU, the share of valid pixels where prediction and annotation
differ, the share of labelled pixels, and per class the boundary disagreement 1 − BF_c (NaN where the
class has a boundary in neither map).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Subset

from nlkd.audit.table import AuditTable
from nlkd.data.folder import FolderDataset, make_loader
from nlkd.io import atomic_write_text

# ``metrics`` exposes per-image BF only; the per-class counts come from its private counter so that
# 1 − BF_c uses exactly the matching behind the ``bf`` column (tests check mean_c BF_c == bf).
from nlkd.metrics import SegmentationStats, segmentation_stats
from nlkd.progress import progress

__all__ = ["BatchScores", "audit_batch", "audit_dataset", "strict_bf_iou"]


@dataclass
class BatchScores:
    """Per-image audit numbers of a batch: ``bf``, ``iou``, ``pixel_disagreement``, ``labelled``,
    ``strict_quality`` (B,) and ``class_disagreement`` (B, C), float64 numpy; NaN where undefined;
    ``class_intersection``, ``class_union`` (B, C) pixel counts of class c in both / either map."""

    bf: np.ndarray
    iou: np.ndarray
    pixel_disagreement: np.ndarray
    class_disagreement: np.ndarray
    labelled: np.ndarray
    strict_quality: np.ndarray
    class_intersection: np.ndarray
    class_union: np.ndarray


@torch.no_grad()
def audit_batch(
    pred: Tensor, target: Tensor, num_classes: int, tolerance: float = 2.0, ignore_index: int | None = None
) -> BatchScores:
    """Audit numbers of a batch of predictions against annotations.

    Args:
        pred: (B, H, W) integer predicted labels.
        target: (B, H, W) integer annotation; ``ignore_index`` pixels count nowhere.
        num_classes: C.
        tolerance: BF match distance in pixels (strictly below).

    Returns:
        :class:`BatchScores`; ``class_disagreement[b, c] = 1 − BF_c`` (NaN when class c has a boundary
        in neither map), ``pixel_disagreement`` = share of valid pixels with ``pred != target``,
        ``strict_quality`` = (BF + IoU) / 2 with unlabelled pixels as disagreement (:func:`strict_bf_iou`).

    >>> t = torch.tensor([[[0, 0, 1, 1]] * 4])
    >>> s = audit_batch(torch.zeros_like(t), t, num_classes=2)
    >>> s.pixel_disagreement.tolist(), s.class_disagreement.tolist()
    ([0.5], [[1.0, 1.0]])
    """
    stats = segmentation_stats(pred, target, num_classes, tolerance, ignore_index)
    cm = stats.confusion.double()  # (B, C, C)
    total = cm.sum((1, 2))
    agree = cm.diagonal(dim1=1, dim2=2).sum(1)
    pixel = torch.where(total > 0, 1 - agree / total.clamp(min=1), torch.full_like(total, float("nan")))
    labelled = total / max(target[0].numel(), 1)
    bf, iou, class_bf = stats.bf, stats.iou, stats.class_bf
    strict_bf, strict_iou = strict_bf_iou(pred, target, num_classes, tolerance, ignore_index, stats=stats)
    strict = (strict_bf + strict_iou) / 2
    inter = stats.confusion.diagonal(dim1=1, dim2=2)
    union = stats.confusion.sum(2) + stats.confusion.sum(1) - inter
    numpy = (t.cpu().numpy() for t in (bf, iou, pixel, 1 - class_bf, labelled, strict, inter, union))
    return BatchScores(*numpy)


@torch.no_grad()
def strict_bf_iou(
    pred: Tensor,
    target: Tensor,
    num_classes: int,
    tolerance: float = 2.0,
    ignore_index: int | None = None,
    *,
    stats: SegmentationStats | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-image BF and IoU that count unlabelled pixels as disagreement.

    ``ignore_index`` pixels become a region of their own that no prediction matches (an extra class
    left out of the class means): a class loses IoU where the prediction claims unlabelled pixels, and
    a class region that ends at an unlabelled band has its boundary there, away from the predicted one.
    Images without unlabelled pixels get exactly :func:`nlkd.metrics.segmentation_stats`' BF and IoU.

    Args:
        pred: (B, H, W) integer predicted labels in [0, C).
        target: (B, H, W) integer annotation in [0, C) or ``ignore_index``.
        num_classes: C.
        tolerance: BF match distance in pixels (strictly below).
        stats: ``segmentation_stats`` of the same inputs, when already computed.

    Returns:
        ``(bf, iou)``, each (B,) float64; NaN for images without labelled pixels.

    >>> t = torch.tensor([[[0, 0, 9, 1, 1, 1]] * 4])  # one unlabelled column between the classes
    >>> bf, iou = strict_bf_iou(torch.tensor([[[0, 0, 0, 1, 1, 1]] * 4]), t, 2, 1.0, ignore_index=9)
    >>> round(iou.item(), 4)  # class 0: 8 of 12 predicted pixels labelled 0; class 1: 12 of 12
    0.8333
    """
    if stats is None:
        stats = segmentation_stats(pred, target, num_classes, tolerance, ignore_index)
    bf, iou = stats.bf.double(), stats.iou.double()
    if ignore_index is None:
        return bf, iou
    unlabelled = target == ignore_index
    some = unlabelled.flatten(1).any(1)
    if not bool(some.any()):
        return bf, iou
    extra = segmentation_stats(pred, target.masked_fill(unlabelled, num_classes), num_classes + 1, tolerance)
    class_bf = extra.class_bf[:, :num_classes].double()
    cm = extra.confusion.double()
    inter = cm.diagonal(dim1=1, dim2=2)
    union = (cm.sum(2) + cm.sum(1) - inter)[:, :num_classes]
    class_iou = torch.where(union > 0, inter[:, :num_classes] / union.clamp(min=1), torch.nan)
    labelled = ~unlabelled.flatten(1).all(1)
    bf = torch.where(some, torch.nanmean(class_bf, 1), bf).masked_fill(~labelled, torch.nan)
    iou = torch.where(some, torch.nanmean(class_iou, 1), iou).masked_fill(~labelled, torch.nan)
    return bf, iou


def audit_dataset(
    teachers: Callable[[Tensor, Sequence[str]], Tensor],
    dataset: FolderDataset,
    *,
    tolerance: float = 2.0,
    batch_size: int = 8,
    partial: Path | None = None,
    key: str | None = None,
    resume: bool = False,
    save_every: int = 10,
) -> AuditTable:
    """Audit every image of ``dataset`` (no augmentation), batch by batch, keeping only numbers.

    ``teachers(images (B, 3, H, W), ids) -> logits (B, C, H, W)``. With ``partial`` the rows are
    streamed there: appended (full precision) every ``save_every`` batches and at the end, so the file
    grows with the work and nothing is rewritten; with ``resume`` the rows already in it (written under
    the same ``key``; a half-written last line is dropped) are kept and their images skipped.
    """
    info = dataset.info
    table = AuditTable.for_dataset(dataset)
    done = np.zeros(len(table.ids), dtype=bool)
    if resume and partial is not None and partial.is_file():
        done = table.load_rows(partial, key)
    if partial is not None:  # the rows kept (none when starting over), complete lines only; then append
        atomic_write_text(partial, table.to_csv(np.flatnonzero(done).tolist(), key=key, progress=True))
    todo = np.flatnonzero(~done).tolist()
    loader = make_loader(Subset(dataset, todo), batch_size=batch_size, shuffle=False, seed=0)
    bar = progress(loader, "auditing", unit="batch", show=bool(todo))
    unsaved: list[int] = []
    for step, batch in enumerate(bar, start=1):
        logits = teachers(batch["image"], batch["id"])
        s = audit_batch(
            logits.argmax(1), batch["mask"].to(logits.device), info.num_classes, tolerance, info.ignore_index
        )
        idx = batch["index"].numpy()
        table.bf[idx], table.iou[idx], table.pixel_disagreement[idx] = s.bf, s.iou, s.pixel_disagreement
        table.labelled[idx], table.strict_quality[idx] = s.labelled, s.strict_quality
        table.class_disagreement[idx] = s.class_disagreement
        table.class_intersection[idx], table.class_union[idx] = s.class_intersection, s.class_union
        unsaved.extend(idx.tolist())
        if partial is not None and (step % save_every == 0 or step == len(loader)):
            with open(partial, "a", encoding="utf-8", newline="") as f:
                f.write(table.csv_rows(unsaved, progress=True))
            unsaved.clear()
    return table
