"""Exact, batched segmentation metrics: per-image IoU, boundary F1 (BF) and BFmIoU.

All functions take integer label maps ``pred`` and ``target`` of shape (B, H, W) on any device and
return one value per image, shape (B,), as float64 (double precision keeps sums exact enough for
comparisons at 1e-6 and costs nothing at this size).

Conventions (the paper's Eq. 1-3 and 5 leave these open; nlkd fixes them):

* **Ignored pixels.** Pixels where ``target == ignore_index`` are removed from *both* maps before
  anything is computed. A removed pixel counts as "not in the mask" for its neighbours.
* **Boundary of class c.** The pixels of the class-c mask that have at least one 4-neighbour inside
  the image that is not in the mask. The image border is not a boundary by itself.
* **Matching.** A boundary pixel of class c matches when the Euclidean distance to the nearest
  boundary pixel of class c in the other map is strictly below ``tolerance`` (pixels, any real > 0).
  Use :func:`tolerance_from_diagonal` for the "fraction of the image diagonal" convention.
* **Per class.** Precision P_c is the matched share of predicted boundary pixels, recall R_c the matched
  share of target boundary pixels, BF_c = 2 P_c R_c / (P_c + R_c). Both boundaries empty: class
  skipped. One empty: BF_c = 0. P_c + R_c = 0: BF_c = 0.
* **Per image.** BF is the mean of BF_c over the classes not skipped (those with a boundary in either
  map). If no class has a boundary in either map (each map is one region), BF = 1 when the maps agree
  on every valid pixel and 0 otherwise. IoU is the mean over classes whose union is non-empty.
  An image without any valid pixel gives NaN for every metric.

How it is fast: every pixel has one class, so the boundaries of all classes fit into one (B, H, W) map
of boundary class ids (-1 elsewhere). Matching gathers, at boundary pixels only, the other map's
boundary id at each integer offset inside the tolerance disk and compares it with the pixel's own
class; one ``bincount`` over (side, matched, image, class) keys then gives every count. Matched pixels
are dropped from the work list as the offsets move outward. The per-image confusion matrices for IoU
come from one ``bincount`` over (image, target, prediction) triples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

__all__ = [
    "BoundaryMetrics",
    "SegmentationMetrics",
    "SegmentationStats",
    "bf_and_iou",
    "bfmiou",
    "boundary_band",
    "boundary_f1",
    "boundary_map",
    "confusion_matrices",
    "per_image_iou",
    "segmentation_stats",
    "tolerance_from_diagonal",
    "trimap_confusion",
]

_NO_LABEL = -1


# ----------------------------------------------------------------------------- input handling


def _prepare(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None) -> tuple[Tensor, Tensor]:
    """Check inputs and return (pred, target) as int16 (or int32) maps with -1 on removed pixels.

    Args:
        pred: (B, H, W) integer predicted labels in [0, num_classes).
        target: (B, H, W) integer labels in [0, num_classes) or ``ignore_index``.
    """
    if not isinstance(pred, Tensor) or not isinstance(target, Tensor):
        raise TypeError(f"pred and target must be tensors, got {type(pred).__name__}, {type(target).__name__}")
    if pred.ndim != 3 or pred.shape != target.shape:
        raise ValueError(
            f"pred and target must both have shape (B, H, W); got {tuple(pred.shape)}, {tuple(target.shape)}"
        )
    for name, t in (("pred", pred), ("target", target)):
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer label map, got dtype {t.dtype}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    dtype = torch.int16 if num_classes < 2**15 - 1 else torch.int32
    if target.numel():
        invalid = target == ignore_index if ignore_index is not None else None
        checked = target if invalid is None else target.masked_fill(invalid, 0)
        for name, t in (("target", checked), ("pred", pred)):
            lo, hi = (int(v) for v in torch.aminmax(t))
            if lo < 0 or hi >= num_classes:
                extra = f" (ignore_index={ignore_index})" if name == "target" and ignore_index is not None else ""
                raise ValueError(f"{name} holds value {lo if lo < 0 else hi} outside 0..{num_classes - 1}{extra}")
    pred, target = pred.to(dtype).contiguous(), target.to(dtype).contiguous()
    if ignore_index is not None and target.numel():
        target = target.masked_fill(invalid, _NO_LABEL)
        pred = pred.masked_fill(invalid, _NO_LABEL)
    return pred, target


def _validate_tolerance(tolerance: float) -> float:
    tolerance = float(tolerance)
    if not math.isfinite(tolerance) or tolerance <= 0:
        raise ValueError(f"tolerance must be a finite number of pixels > 0, got {tolerance!r}")
    return tolerance


def tolerance_from_diagonal(fraction: float, height: int, width: int, *, inclusive: bool = True) -> float:
    """Turn a tolerance given as a fraction of the image diagonal into pixels for nlkd's metrics.

    MATLAB's ``bfscore`` (default 0.75 % of the diagonal) and the DAVIS benchmark state the tolerance
    this way and count a match at distance *up to and including* it. nlkd matches at distance strictly
    below the tolerance; since squared pixel distances are integers, ``d <= t`` is exactly
    ``d < sqrt(floor(t**2) + 1)``, which this returns when ``inclusive`` (the default).

    >>> tolerance_from_diagonal(0.0075, 360, 480)  # 0.75 % of a 600 px diagonal = 4.5 px, inclusive
    4.58257569495584
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}")
    t = fraction * math.hypot(height, width)
    return math.sqrt(math.floor(t * t) + 1) if inclusive else t


# ----------------------------------------------------------------------------- boundaries


def _edges(labels: Tensor) -> Tensor:
    """(N, H, W) labels -> (N, H, W) bool: pixels with a 4-neighbour inside the image of another label."""
    edge = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    dv = labels[:, 1:, :] != labels[:, :-1, :]
    edge[:, 1:, :] |= dv
    edge[:, :-1, :] |= dv
    dh = labels[:, :, 1:] != labels[:, :, :-1]
    edge[:, :, 1:] |= dh
    edge[:, :, :-1] |= dh
    return edge


def _boundary_ids(labels: Tensor) -> Tensor:
    """(B, H, W) labels with -1 on removed pixels -> same-shape map: class id on boundary pixels, else -1."""
    return labels.masked_fill(~_edges(labels), _NO_LABEL)  # removed pixels are -1 already


def boundary_map(labels: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """Boundary class ids of a batch of label maps.

    Args:
        labels: (B, H, W) integer label map.
        num_classes: number of classes C.
        ignore_index: label of removed pixels (they are never boundary, but border their neighbours).

    Returns:
        (B, H, W) int tensor: the pixel's class on boundary pixels, -1 elsewhere.
    """
    as_pred = labels if ignore_index is None else labels.masked_fill(labels == ignore_index, 0)
    _, labels = _prepare(as_pred, labels, num_classes, ignore_index)
    return _boundary_ids(labels)


@lru_cache(maxsize=32)
def _disk_offsets(tolerance: float) -> tuple[tuple[int, int], ...]:
    """Integer offsets (dy, dx) with dy² + dx² < tolerance², nearest first."""
    r = math.ceil(tolerance) - 1
    offs = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx < tolerance**2]
    return tuple(sorted(offs, key=lambda o: (o[0] ** 2 + o[1] ** 2, o)))


def _boundary_counts(pred: Tensor, target: Tensor, num_classes: int, tolerance: float) -> Tensor:
    """Boundary pixel counts per image and class.

    Args:
        pred, target: (B, H, W) prepared label maps (-1 on removed pixels).

    Returns:
        (2, 2, B, C) int64: ``[side, matched, image, class]``; side 0 = target pixels (recall),
        side 1 = predicted pixels (precision); matched 0 = all pixels, 1 = matched pixels.
    """
    b, h, w = target.shape
    c = num_classes
    if h == 0 or w == 0:
        return torch.zeros(2, 2, b, c, dtype=torch.int64, device=target.device)
    # Any two pixels of an image are closer than its diagonal + 1: a larger tolerance changes nothing.
    offsets = _disk_offsets(min(tolerance, math.hypot(h, w) + 1.0))
    r = max(abs(dy) for dy, _ in offsets)
    hp, wp = h + 2 * r, w + 2 * r
    n_keys = 2 * b * c
    dtype = torch.int16 if n_keys < 2**15 - 1 else torch.int32
    # One dense map holding, at every boundary pixel, its key (side * B + image) * C + class, and -1
    # elsewhere; padded so that every offset of a pixel stays inside its own image. (2, B, Hp, Wp).
    labels = torch.stack([target, pred]).view(2 * b, h, w).to(dtype)
    base = torch.arange(2 * b, device=target.device, dtype=dtype).view(2 * b, 1, 1) * c
    keys = (labels + base).masked_fill_(~_edges(labels) | (labels < 0), _NO_LABEL)
    both = torch.full((2, b, hp, wp), _NO_LABEL, dtype=dtype, device=target.device)
    both.view(2 * b, hp, wp)[:, r : r + h, r : r + w] = keys
    flat = both.view(-1)
    block = b * hp * wp

    pos = torch.nonzero(flat >= 0).squeeze(1)  # every boundary pixel of both maps
    key = flat.index_select(0, pos)
    on_target = key < b * c
    partner = torch.where(on_target, pos + block, pos - block)  # the same pixel in the other map
    if 2 * block < 2**31:  # int32 indices halve the memory traffic of the gathers below
        partner = partner.int()
    want = torch.where(on_target, key + b * c, key - b * c)  # the key a matching pixel there holds
    key_long = key.long()
    total = torch.bincount(key_long, minlength=n_keys)
    # A pixel whose class has no boundary at all in the other map's image can never match: count it
    # as unmatched now and mark it done (-2), so the first compaction drops it.
    hopeless = total.index_select(0, want.long()) == 0
    unmatched = torch.bincount(key_long, weights=hopeless.double(), minlength=n_keys).long()
    want.masked_fill_(hopeless, -2)

    last = len(offsets) - 1
    for i, (dy, dx) in enumerate(offsets):
        # A matched pixel's wanted key becomes -2, which no pixel holds: it cannot match again.
        want.masked_fill_(flat.index_select(0, partner + (dy * wp + dx)) == want, -2)
        if i % 4 == 0 and i != last:  # drop matched pixels now and then: far offsets touch fewer
            keep = torch.nonzero(want >= 0).squeeze(1)
            partner, want = partner.index_select(0, keep), want.index_select(0, keep)
    # A pixel still wanting a key is unmatched; its own key is the wanted one moved back to its side.
    # Matched pixels (-2) go to an extra bin that is dropped.
    own = torch.where(want >= b * c, want - b * c, want + b * c).masked_fill_(want < 0, n_keys)
    unmatched += torch.bincount(own.long(), minlength=n_keys + 1)[:n_keys]
    return torch.stack([total, total - unmatched]).view(2, 2, b, c).transpose(0, 1)


def _class_f1(counts: Tensor) -> Tensor:
    """(2, 2, B, C) counts -> (B, C) float64 BF_c; NaN where class c has a boundary in neither map."""
    n_t, n_p = counts[0, 0].double(), counts[1, 0].double()
    m_t, m_p = counts[0, 1].double(), counts[1, 1].double()
    recall = m_t / n_t.clamp(min=1)
    precision = m_p / n_p.clamp(min=1)
    denom = precision + recall  # one-empty classes get f1 = 0 through precision or recall = 0
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), torch.zeros_like(denom))
    return f1.masked_fill((n_t == 0) & (n_p == 0), float("nan"))


def _bf_from_class_f1(f1: Tensor, pred: Tensor, target: Tensor) -> Tensor:
    """(B, C) BF_c -> (B,) per-image BF with nlkd's conventions (see module docstring)."""
    present = ~f1.isnan()
    n_present = present.sum(1)
    bf = f1.nan_to_num(0.0).sum(1) / n_present.clamp(min=1)
    if not bool(n_present.all()):  # one region in each map: 1 if they agree (removed pixels are -1 in both)
        agree = (pred == target).flatten(1).all(1)
        bf = torch.where(n_present > 0, bf, agree.double())
    valid_any = (target >= 0).flatten(1).any(1)
    return bf.masked_fill(~valid_any, float("nan"))


# ----------------------------------------------------------------------------- confusion / IoU


def _confusion(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(B, H, W) prepared maps -> (B, C, C) int64 confusion matrices, rows = target, cols = prediction."""
    b = target.shape[0]
    k = num_classes + 1  # labels shifted by one: removed pixels (-1 in both maps) land in bin (0, 0)
    n_keys = b * k * k
    dtype = torch.int16 if n_keys < 2**15 - 1 else (torch.int32 if n_keys < 2**31 - 1 else torch.int64)
    key = (target.to(dtype) + 1).mul_(k).add_(pred.to(dtype)).add_(1)
    key += torch.arange(b, device=target.device, dtype=dtype).view(b, 1, 1) * (k * k)
    cm = torch.bincount(key.view(-1).long(), minlength=n_keys).view(b, k, k)
    return cm[:, 1:, 1:]


def _iou_from_confusion(cm: Tensor) -> Tensor:
    """(..., C, C) confusion -> (..., C) IoU per class, NaN where the union is empty."""
    inter = cm.diagonal(dim1=-2, dim2=-1).double()
    union = cm.sum(-1).double() + cm.sum(-2).double() - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(union, float("nan")))


def _nanmean_rows(x: Tensor) -> Tensor:
    """Mean over the last axis ignoring NaN; NaN where a row is all NaN."""
    return torch.nanmean(x, dim=-1)


def confusion_matrices(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """Per-image confusion matrices over valid pixels.

    Args:
        pred, target: (B, H, W) integer label maps.

    Returns:
        (B, C, C) int64, entry [b, i, j] = number of valid pixels of image b with target i, prediction j.
    """
    p, t = _prepare(pred, target, num_classes, ignore_index)
    return _confusion(p, t, num_classes)


# ----------------------------------------------------------------------------- public metrics


def per_image_iou(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """Per-image mean IoU over the classes present in target or prediction (Eq. 5's mIoU, per image).

    Args:
        pred: (B, H, W) integer predicted labels.
        target: (B, H, W) integer labels; ``ignore_index`` pixels are removed from both maps.

    Returns:
        (B,) float64; NaN for an image without valid pixels.
    """
    p, t = _prepare(pred, target, num_classes, ignore_index)
    return _nanmean_rows(_iou_from_confusion(_confusion(p, t, num_classes)))


def boundary_f1(
    pred: Tensor, target: Tensor, num_classes: int, tolerance: float = 2.0, ignore_index: int | None = None
) -> Tensor:
    """Per-image boundary F1 score (Eq. 1-3), averaged over classes.

    Args:
        pred: (B, H, W) integer predicted labels.
        target: (B, H, W) integer labels; ``ignore_index`` pixels are removed from both maps.
        tolerance: match distance θ in pixels; a match needs distance strictly below θ.

    Returns:
        (B,) float64 in [0, 1]; NaN for an image without valid pixels.
    """
    tolerance = _validate_tolerance(tolerance)
    p, t = _prepare(pred, target, num_classes, ignore_index)
    return _bf(p, t, num_classes, tolerance)


def _bf(p: Tensor, t: Tensor, num_classes: int, tolerance: float) -> Tensor:
    return _bf_from_class_f1(_class_f1(_boundary_counts(p, t, num_classes, tolerance)), p, t)


def bfmiou(
    pred: Tensor, target: Tensor, num_classes: int, tolerance: float = 2.0, ignore_index: int | None = None
) -> Tensor:
    """Per-image BFmIoU = (BF + IoU) / 2, the paper's annotation-quality score (Eq. 5).

    Args:
        pred: (B, H, W) integer predicted labels.
        target: (B, H, W) integer labels; ``ignore_index`` pixels are removed from both maps.
        tolerance: BF match distance θ in pixels (strictly below).

    Returns:
        (B,) float64 in [0, 1]; NaN for an image without valid pixels.
    """
    bf, iou = bf_and_iou(pred, target, num_classes, tolerance, ignore_index)
    return (bf + iou) / 2


def bf_and_iou(
    pred: Tensor, target: Tensor, num_classes: int, tolerance: float = 2.0, ignore_index: int | None = None
) -> tuple[Tensor, Tensor]:
    """Per-image BF and IoU from one preparation of the inputs: ``((B,), (B,))`` float64."""
    stats = segmentation_stats(pred, target, num_classes, tolerance, ignore_index)
    return stats.bf, stats.iou


@dataclass
class SegmentationStats:
    """Everything the per-image metrics are made of, for one batch (see :func:`segmentation_stats`).

    Attributes:
        bf: (B,) per-image BF. iou: (B,) per-image IoU (both NaN without valid pixels).
        class_bf: (B, C) BF_c per image and class, NaN where class c has a boundary in neither map.
        confusion: (B, C, C) int64 confusion matrices over valid pixels (rows target, cols prediction).
    """

    bf: Tensor
    iou: Tensor
    class_bf: Tensor
    confusion: Tensor


def segmentation_stats(
    pred: Tensor, target: Tensor, num_classes: int, tolerance: float = 2.0, ignore_index: int | None = None
) -> SegmentationStats:
    """Per-image BF and IoU with their per-class parts, all from one pass over the inputs.

    Args:
        pred: (B, H, W) integer predicted labels.
        target: (B, H, W) integer labels; ``ignore_index`` pixels are removed from both maps.
        tolerance: BF match distance θ in pixels (strictly below).
    """
    tolerance = _validate_tolerance(tolerance)
    p, t = _prepare(pred, target, num_classes, ignore_index)
    cm = _confusion(p, t, num_classes)
    class_bf = _class_f1(_boundary_counts(p, t, num_classes, tolerance))
    return SegmentationStats(_bf_from_class_f1(class_bf, p, t), _nanmean_rows(_iou_from_confusion(cm)), class_bf, cm)


# ----------------------------------------------------------------------------- dataset level


class SegmentationMetrics:
    """Dataset-level evaluation: mIoU from one confusion matrix, per-class IoU, pixel accuracy and
    mean per-image BF (the paper's "BF"). State is kept as sums, so merging is addition.

    >>> m = SegmentationMetrics(num_classes=3)
    >>> bf = m.update(torch.tensor([[[0, 1], [2, 2]]]), torch.tensor([[[0, 1], [2, 1]]]))
    >>> round(m.compute()["miou"], 4)
    0.6667
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = None,
        tolerance: float = 2.0,
        device: str | torch.device = "cpu",
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.tolerance = _validate_tolerance(tolerance)
        self.device = torch.device(device)
        self.reset()

    def reset(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64, device=self.device)
        self.bf_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.bf_count = torch.zeros((), dtype=torch.int64, device=self.device)

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> Tensor:
        """Add a batch of (B, H, W) label maps; returns the batch's per-image BF, shape (B,)."""
        p, t = _prepare(pred.to(self.device), target.to(self.device), self.num_classes, self.ignore_index)
        self.confusion += _confusion(p, t, self.num_classes).sum(0)
        bf = _bf(p, t, self.num_classes, self.tolerance)
        ok = ~bf.isnan()
        self.bf_sum += bf[ok].sum()
        self.bf_count += ok.sum()
        return bf

    def merge(self, other: SegmentationMetrics) -> SegmentationMetrics:
        """Add another evaluator's state into this one (e.g. from another process)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge metrics over {other.num_classes} classes into {self.num_classes}")
        self.confusion += other.confusion.to(self.device)
        self.bf_sum += other.bf_sum.to(self.device)
        self.bf_count += other.bf_count.to(self.device)
        return self

    def all_reduce(self) -> None:
        """Sum the state over all processes of the default ``torch.distributed`` group (no-op otherwise)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            for t in (self.confusion, self.bf_sum, self.bf_count):
                dist.all_reduce(t)

    def compute(self) -> dict[str, float | list[float]]:
        """Return ``miou``, ``per_class_iou`` (NaN for classes absent from target and prediction),
        ``pixel_accuracy``, ``bf`` (mean per-image BF) and ``n_images``."""
        iou = _iou_from_confusion(self.confusion)
        total = self.confusion.sum()
        return {
            "miou": float(torch.nanmean(iou)) if (~iou.isnan()).any() else float("nan"),
            "per_class_iou": [float(x) for x in iou],
            "pixel_accuracy": float(self.confusion.diagonal().sum() / total) if total > 0 else float("nan"),
            "bf": float(self.bf_sum / self.bf_count) if self.bf_count > 0 else float("nan"),
            "n_images": int(self.bf_count),
        }


# ----------------------------------------------------------------------------- where the errors are


def _band(target: Tensor, radius: float) -> Tensor:
    """(B, H, W) prepared target -> (B, H, W) bool: valid pixels closer than ``radius`` to a boundary pixel."""
    offsets = _disk_offsets(radius)
    r = max(abs(dy) for dy, _ in offsets)
    kernel = torch.zeros(1, 1, 2 * r + 1, 2 * r + 1, dtype=torch.float32, device=target.device)
    for dy, dx in offsets:
        kernel[0, 0, dy + r, dx + r] = 1.0
    edge = (_edges(target) & (target >= 0)).unsqueeze(1).float()
    near = torch.nn.functional.conv2d(edge, kernel, padding=r).squeeze(1) > 0.5
    return near & (target >= 0)


def boundary_band(labels: Tensor, num_classes: int, radius: float = 3.0, ignore_index: int | None = None) -> Tensor:
    """The trimap band: valid pixels at Euclidean distance strictly below ``radius`` from a boundary pixel.

    With ``radius = 3`` the band holds the boundary pixels themselves and the two next rings on each side
    of every class edge (3 px per side), as BF matches at distance strictly below θ.

    Args:
        labels: (B, H, W) integer label map (the *true* labels; its boundaries define the band).
        radius: band half-width in pixels (> 0).
        ignore_index: label of removed pixels (never in the band, but they border their neighbours).

    Returns:
        (B, H, W) bool.
    """
    radius = _validate_tolerance(radius)
    as_pred = labels if ignore_index is None else labels.masked_fill(labels == ignore_index, 0)
    _, t = _prepare(as_pred, labels, num_classes, ignore_index)
    return _band(t, radius)


def _trimap_confusion(p: Tensor, t: Tensor, num_classes: int, radius: float) -> Tensor:
    band = _band(t, radius)
    inner = ~band & (t >= 0)
    parts = [_confusion(p.masked_fill(~m, _NO_LABEL), t.masked_fill(~m, _NO_LABEL), num_classes) for m in (band, inner)]
    return torch.stack(parts, dim=1)


def trimap_confusion(
    pred: Tensor, target: Tensor, num_classes: int, radius: float = 3.0, ignore_index: int | None = None
) -> Tensor:
    """Per-image confusion matrices inside the band around the true boundaries and in the interior.

    Args:
        pred: (B, H, W) integer predicted labels.
        target: (B, H, W) integer true labels; ``ignore_index`` pixels are removed from both maps.
        radius: band half-width (see :func:`boundary_band`).

    Returns:
        (B, 2, C, C) int64: ``[:, 0]`` over band pixels, ``[:, 1]`` over the other valid pixels (rows
        target, columns prediction). The two add up to :func:`confusion_matrices`.
    """
    radius = _validate_tolerance(radius)
    p, t = _prepare(pred, target, num_classes, ignore_index)
    return _trimap_confusion(p, t, num_classes, radius)


class BoundaryMetrics:
    """Where a model's errors are, over a data set: mean per-image BF at several tolerances, and the
    trimap mIoU inside the band of ``band_radius`` px around the true boundaries vs in the interior
    (one confusion matrix each, as for mIoU). State is kept as sums, so merging is addition.

    >>> m = BoundaryMetrics(num_classes=2, tolerances=(1.0, 2.0), band_radius=1.0)
    >>> target = torch.tensor([[[0, 0, 1, 1]] * 4])
    >>> m.update(torch.tensor([[[0, 1, 1, 1]] * 4]), target)
    >>> r = m.compute(); r["miou_interior"], round(r["miou_band"], 4), r["bf_2"]
    (1.0, 0.25, 1.0)
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = None,
        tolerances: tuple[float, ...] = (1.0, 2.0),
        band_radius: float = 3.0,
        device: str | torch.device = "cpu",
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if not tolerances:
            raise ValueError("tolerances must name at least one BF tolerance in pixels")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.tolerances = tuple(_validate_tolerance(t) for t in tolerances)
        self.band_radius = _validate_tolerance(band_radius)
        self.device = torch.device(device)
        self.reset()

    def reset(self) -> None:
        c = self.num_classes
        self.trimap = torch.zeros(2, c, c, dtype=torch.int64, device=self.device)
        self.bf_sums = torch.zeros(len(self.tolerances), dtype=torch.float64, device=self.device)
        self.bf_count = torch.zeros((), dtype=torch.int64, device=self.device)

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch of (B, H, W) label maps."""
        p, t = _prepare(pred.to(self.device), target.to(self.device), self.num_classes, self.ignore_index)
        self.trimap += _trimap_confusion(p, t, self.num_classes, self.band_radius).sum(0)
        bfs = torch.stack([_bf(p, t, self.num_classes, tol) for tol in self.tolerances])  # (T, B)
        ok = ~bfs[0].isnan()
        self.bf_sums += bfs[:, ok].sum(1)
        self.bf_count += ok.sum()

    def merge(self, other: BoundaryMetrics) -> BoundaryMetrics:
        """Add another evaluator's state (same classes and settings) into this one."""
        if (other.num_classes, other.tolerances, other.band_radius) != (
            self.num_classes,
            self.tolerances,
            self.band_radius,
        ):
            raise ValueError("cannot merge BoundaryMetrics with other classes, tolerances or band radius")
        self.trimap += other.trimap.to(self.device)
        self.bf_sums += other.bf_sums.to(self.device)
        self.bf_count += other.bf_count.to(self.device)
        return self

    def all_reduce(self) -> None:
        """Sum the state over all processes of the default ``torch.distributed`` group (no-op otherwise)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            for t in (self.trimap, self.bf_sums, self.bf_count):
                dist.all_reduce(t)

    def compute(self) -> dict[str, float]:
        """``bf_<θ>`` per tolerance (``bf_1``, ``bf_2``; ``bf_1.5`` for 1.5), ``miou_band``,
        ``miou_interior`` and ``band_share`` (share of valid pixels in the band); NaN when undefined."""
        out = {
            f"bf_{tol:g}": float(s / self.bf_count) if self.bf_count > 0 else float("nan")
            for tol, s in zip(self.tolerances, self.bf_sums)
        }
        for name, cm in (("band", self.trimap[0]), ("interior", self.trimap[1])):
            iou = _iou_from_confusion(cm)
            out[f"miou_{name}"] = float(torch.nanmean(iou)) if (~iou.isnan()).any() else float("nan")
        total = self.trimap.sum()
        out["band_share"] = float(self.trimap[0].sum().double() / total) if total > 0 else float("nan")
        return out
