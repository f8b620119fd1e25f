"""The relabel queue: the audit's K worst annotations, each with the teacher's prediction at the image's own
resolution, handed one at a time to the format writers (:mod:`~nlkd.audit.exports`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from nlkd.audit.table import AuditTable
from nlkd.data.folder import FolderDataset
from nlkd.errors import DataError

__all__ = ["RelabelItem", "file_stem", "predict_native", "worst_items"]


@dataclass(frozen=True)
class RelabelItem:
    """One annotation to relabel.

    Attributes:
        rank: 1 = the worst annotation of the split (the audit's order).
        id: the sample id; ``stem`` is its file-name form (:func:`file_stem`).
        image_path: the original image file (copied as it is by the writers).
        annotation: (H, W) uint8, the given mask at the image's own size (``ignore_index`` kept).
        prediction: (H, W) uint8, the teacher's classes at the image's own size.
        confidence: the teacher's mean top-class probability over the image's pixels.
        quality, bf, iou: the audit's numbers (NaN for an image without valid pixels).
    """

    rank: int
    id: str
    stem: str
    image_path: Path
    annotation: np.ndarray
    prediction: np.ndarray
    confidence: float
    quality: float
    bf: float
    iou: float


def file_stem(sample_id: str) -> str:
    """A file-name stem for ``sample_id``: folder separators become ``__`` (Supervisely ids are ``ds/name``).

    >>> file_stem("ds1/img_7")
    'ds1__img_7'
    """
    return sample_id.replace("/", "__").replace("\\", "__")


@torch.no_grad()
def predict_native(logits: Tensor, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Classes and mean confidence of one image's logits brought to its own size.

    Args:
        logits: (C, h, w) teacher logits at the size the network saw.
        size: (H, W) of the image file; the logits are resized bilinearly (as ``nlkd predict`` does).

    Returns:
        ``(prediction (H, W) uint8, mean over pixels of the top softmax probability)``.

    >>> pred, conf = predict_native(torch.tensor([[[2.0, -2.0]], [[0.0, 0.0]]]), (1, 4))
    >>> pred.tolist(), round(conf, 3)
    ([[0, 0, 1, 1]], 0.806)
    """
    if logits.ndim != 3:
        raise ValueError(f"logits must have shape (C, h, w), got {tuple(logits.shape)}")
    x = logits[None].float()
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    prob = x.softmax(1)[0]
    top, pred = prob.max(0)
    return pred.to(torch.uint8).cpu().numpy(), float(top.mean())


def worst_items(
    table: AuditTable,
    dataset: FolderDataset,
    teachers: Callable[[Tensor, Sequence[str]], Tensor],
    k: int,
) -> Iterator[RelabelItem]:
    """The ``k`` worst annotations in the audit's order (ascending quality; unscored images last), one at a
    time: each image is predicted again (one forward pass; nothing is kept between items)."""
    order = table.order()
    if not 1 <= k <= len(order):
        raise ValueError(f"k must lie in 1..{len(order)} (the table's images), got {k}")
    stems: dict[str, str] = {}
    for rank, i in enumerate(order[:k], start=1):
        sample_id = table.ids[i]
        stem = file_stem(sample_id)
        if stem in stems:
            raise DataError(f"samples {stems[stem]!r} and {sample_id!r} would share the export file name {stem!r}")
        stems[stem] = sample_id
        item = dataset[i]
        annotation = np.asarray(dataset.get_full_mask(i), dtype=np.uint8)
        logits = teachers(item["image"][None], [sample_id])[0]
        prediction, confidence = predict_native(logits, annotation.shape)
        yield RelabelItem(
            rank=rank,
            id=sample_id,
            stem=stem,
            image_path=Path(dataset.samples[i].image_path),
            annotation=annotation,
            prediction=prediction,
            confidence=confidence,
            quality=float(table.quality[i]),
            bf=float(table.bf[i]),
            iou=float(table.iou[i]),
        )
