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
* **Per class** (:func:`per_class_bf`, :func:`per_class_iou`, ``SegmentationMetrics``' ``per_class_bf``):
  the BF_c and IoU_c above, per image (B, C); over a data set, IoU_c from the summed confusion matrix (as
  mIoU) and BF_c as the mean over the images where class c has a boundary in either map (as BF is the
  mean over images).
* **Per image.** BF is the mean of BF_c over the classes not skipped (those with a boundary in either
  map). If no class has a boundary in either map (each map is one region), BF = 1 when the maps agree
  on every valid pixel and 0 otherwise. IoU is the mean over classes whose union is non-empty.
  An image without any valid pixel gives NaN for every metric.

How it is fast: both maps go into one padded tensor with the image index innermost. Boundary pixels
(one comparison per neighbour direction) carry one bit of their class in an integer word; the other
map's words, ORed over the tolerance disk row by row (horizontal windows grown one pixel at a time,
then each row shifted in), say at every pixel which classes have a boundary pixel near it, so the cost
grows with the disk's radius, not its area. One ``bincount`` over (side, image, class, matched) keys
gives every boundary count, another over (image, target, prediction) the confusion matrices for IoU.
Images go in chunks that keep the working set in the CPU cache. All dense ops: they batch on GPUs too.
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
    "per_class_bf",
    "per_class_iou",
    "per_image_iou",
    "segmentation_stats",
    "tolerance_from_diagonal",
    "trimap_confusion",
]

_NO_LABEL = -1


# ----------------------------------------------------------------------------- input handling


def _prepare(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None) -> tuple[Tensor, Tensor]:
    """Check inputs and return (pred, target) as int8 (int16, int32 for many classes) maps, -1 on removed pixels.

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
    dtype = torch.int8 if num_classes <= 127 else (torch.int16 if num_classes < 2**15 - 1 else torch.int32)
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


_CHUNK_PIXELS = 1 << 20  # padded pixels of both maps per chunk of images: keeps the working set in L2


@lru_cache(maxsize=64)
def _disk_rows(tolerance: float, height: int, width: int) -> tuple[tuple[int, int], ...]:
    """The tolerance disk as rows (dy, half_width): |dx| <= half_width exactly when dy² + dx² < tolerance².

    Rows and widths that reach past the image reach only padding (a row wider than the image covers it
    whole), so they are clipped to the image size; this bounds the padding. Narrowest rows first.
    """
    rows = []
    reach = min(math.ceil(tolerance) - 1, height - 1)
    for dy in range(-reach, reach + 1):
        room = tolerance**2 - dy * dy  # exact: dy² is an integer below tolerance²
        if room > 0:  # integers dx with dx² < room are those with dx² <= ceil(room) - 1
            rows.append((dy, min(math.isqrt(math.ceil(room) - 1), width - 1)))
    return tuple(sorted(rows, key=lambda row: (row[1], abs(row[0]), row[0])))


def _bit_word(num_classes: int) -> tuple[torch.dtype, int]:
    """The narrowest integer word with a bit per class plus bit 0, and its bit count (64 for many classes)."""
    for dtype, bits in ((torch.int8, 8), (torch.int16, 16), (torch.int32, 32)):
        if num_classes < bits:
            return dtype, bits
    return torch.int64, 64


def _key_dtype(n_keys: int) -> torch.dtype:
    return torch.int16 if n_keys < 2**15 else (torch.int32 if n_keys < 2**31 else torch.int64)


def _padded_pair(pred: Tensor, target: Tensor, pad: int) -> Tensor:
    """(B, H, W) prepared maps -> (2, H + 2 pad, W + 2 pad, B): target then prediction, image index innermost.

    Around each image: a one-pixel ring that repeats its border (so that the border is not an edge), then
    -1. With the image innermost, a shift by k pixels is a shift by k * B elements of the flat tensor, and
    neighbouring elements belong to different images, so ``bincount`` over them increments different bins
    (about 3x faster than runs of increments into one bin).
    """
    b, h, w = target.shape
    lab = torch.full((2, h + 2 * pad, w + 2 * pad, b), _NO_LABEL, dtype=target.dtype, device=target.device)
    lab[0, pad : pad + h, pad : pad + w] = target.permute(1, 2, 0)
    lab[1, pad : pad + h, pad : pad + w] = pred.permute(1, 2, 0)
    cols = slice(pad, pad + w)
    lab[:, pad - 1, cols] = lab[:, pad, cols]
    lab[:, pad + h, cols] = lab[:, pad + h - 1, cols]
    rows = slice(pad - 1, pad + h + 1)
    lab[:, rows, pad - 1] = lab[:, rows, pad]
    lab[:, rows, pad + w] = lab[:, rows, pad + w - 1]
    return lab


def _pair_confusion(lab: Tensor, pad: int, num_classes: int) -> Tensor:
    """(2, Hp, Wp, B) padded pair -> (B, C, C) int64 confusion matrices of the images inside the padding."""
    _, hp, wp, b = lab.shape
    k = num_classes + 1  # labels shifted by one: removed pixels (-1 in both maps) land in bin (0, 0)
    kt = _key_dtype(b * k * k)
    inner = lab[:, pad : hp - pad, pad : wp - pad]
    base = torch.arange(b, device=lab.device, dtype=kt) * (k * k) + (k + 1)
    key = inner[0].to(kt).mul_(k).add_(inner[1]).add_(base)  # (H, W, B) contiguous
    return torch.bincount(key.view(-1), minlength=b * k * k).view(b, k, k)[:, 1:, 1:]


def _boundary_classes(lab: Tensor, pad: int) -> Tensor:
    """(2, Hp, Wp, B) padded pair -> same shape: class + 1 on boundary pixels, 0 elsewhere (ring included)."""
    _, hp, wp, b = lab.shape
    flat = lab.view(-1)
    edge = torch.zeros(flat.shape, dtype=torch.bool, device=lab.device)
    for step in (b, wp * b):  # left/right and up/down neighbours
        differ = flat[step:] != flat[:-step]
        edge[step:] |= differ
        edge[:-step] |= differ
    classes = (flat + 1).mul_(edge).view(lab.shape)  # removed pixels (-1) give 0
    for row, col in ((pad - 1, pad - 1), (hp - pad, wp - pad)):  # the ring
        classes[:, row] = 0
        classes[:, :, col] = 0
    return classes


def _class_bits(classes: Tensor, num_classes: int) -> Tensor:
    """(2, Hp, Wp, B) class + 1 map -> (G, 2, Hp, Wp, B) words with bit (class + 1) set on boundary pixels.

    G = 1 below 64 classes. Bit 0 (set on all other pixels) is never asked for by a boundary pixel, except
    in word g >= 1, where it stands for class g * (bits - 1) - 1, the last class of the word before.
    """
    word, bits = _bit_word(num_classes)
    per_word = bits - 1
    groups = -(-num_classes // per_word)
    shift = classes.unsqueeze(0).to(word if groups == 1 else classes.dtype)  # one dtype: a vectorised shift
    if groups > 1:  # bit of class c + 1 - g * per_word; out-of-word classes get shift -1 or bits: no bit
        first = torch.arange(groups, device=classes.device, dtype=classes.dtype) * per_word
        shift = (shift - first.view(groups, 1, 1, 1, 1)).clamp_(-1, bits).to(torch.uint8)
    return torch.bitwise_left_shift(torch.ones(1, dtype=word, device=classes.device), shift)


def _dilate(bits: Tensor, rows: tuple[tuple[int, int], ...], px: int, row: int) -> Tensor:
    """OR of a flat bit map over the disk given by ``rows`` (see :func:`_disk_rows`).

    Horizontal windows grow one pixel at a time (|dx| <= half_width), narrowest rows first, and each row
    is ORed in shifted by dy. ``px`` and ``row`` are the flat strides of a pixel and a row; the padding
    must be at least the largest |dy| and half width, so that nothing wraps into another row or image.
    """
    out, window, half = None, bits, 0
    for dy, width in rows:
        while half < width:
            wider = torch.empty_like(window)
            wider[:px], wider[-px:] = window[:px], window[-px:]
            torch.bitwise_or(window[: -2 * px], window[2 * px :], out=wider[px:-px])
            if half == 0:
                wider[px:-px] |= window[px:-px]
            window, half = wider, half + 1
        s, n = dy * row, window.numel()
        if out is None:
            out = window.clone() if s == 0 else torch.zeros_like(window)
            if s == 0:
                continue
        if s > 0:
            out[: n - s] |= window[s:]
        else:
            out[-s:] |= window[: n + s]
    return out


def _pair_boundary_counts(lab: Tensor, pad: int, num_classes: int, rows: tuple[tuple[int, int], ...]) -> Tensor:
    """(2, Hp, Wp, B) padded pair -> (2, 2, B, C) int64 boundary pixel counts ``[side, matched, image, class]``.

    side 0 = target pixels (recall), side 1 = predicted pixels (precision); matched 0 = all boundary pixels,
    1 = those with a boundary pixel of their class in the other map inside the disk.
    """
    wp, b = lab.shape[2:]
    k = num_classes + 1
    classes = _boundary_classes(lab, pad)
    bits = _class_bits(classes, num_classes)
    near = _dilate(bits.view(-1), rows, b, wp * b).view(bits.shape)
    hit = torch.empty_like(bits)
    torch.bitwise_and(near[:, 1], bits[:, 0], out=hit[:, 0])  # target pixels against predicted boundaries
    torch.bitwise_and(near[:, 0], bits[:, 1], out=hit[:, 1])
    matched = hit.bool().any(0) if hit.shape[0] > 1 else hit[0].bool()  # .bool() is ~5x faster than != 0
    kt = _key_dtype(4 * b * k)
    base = torch.arange(2 * b, device=lab.device, dtype=kt).view(2, 1, 1, b) * (2 * k)
    key = classes.to(kt).mul_(2).add_(matched).add_(base)  # (side * B + image) * 2k + 2 (class + 1) + matched
    counts = torch.bincount(key.view(-1), minlength=4 * b * k).view(2, b, k, 2)[:, :, 1:]
    return torch.stack([counts.sum(-1), counts[..., 1]], dim=1)


def _pair_stats(pred: Tensor, target: Tensor, num_classes: int, tolerance: float) -> tuple[Tensor, Tensor]:
    """(B, H, W) prepared maps -> (B, C, C) int64 confusion matrices and (2, 2, B, C) boundary counts.

    How: the two maps go into one padded tensor (:func:`_padded_pair`); boundary pixels carry one bit of
    their class (:func:`_class_bits`); the other map's bits ORed over the tolerance disk
    (:func:`_dilate`) say at each pixel which classes have a boundary pixel near it; one ``bincount``
    over (side, image, class, matched) keys gives every count. Images go in chunks that fit the cache.
    """
    b, h, w = target.shape
    c = num_classes
    if b == 0 or h == 0 or w == 0:
        zeros = torch.zeros(2, 2, b, c, dtype=torch.int64, device=target.device)
        return torch.zeros(b, c, c, dtype=torch.int64, device=target.device), zeros
    rows = _disk_rows(tolerance, h, w)
    pad = max(1, *(max(abs(dy), width) for dy, width in rows))
    step = max(1, _CHUNK_PIXELS // (2 * (h + 2 * pad) * (w + 2 * pad)))
    confusion, counts = [], []
    for i in range(0, b, step):
        lab = _padded_pair(pred[i : i + step], target[i : i + step], pad)
        confusion.append(_pair_confusion(lab, pad, c))
        counts.append(_pair_boundary_counts(lab, pad, c, rows))
    return torch.cat(confusion), torch.cat(counts, dim=2)


def _class_f1(counts: Tensor) -> Tensor:
    """(2, 2, B, C) counts -> (B, C) float64 BF_c; NaN where class c has a boundary in neither map."""
    n_t, n_p = counts[0, 0].double(), counts[1, 0].double()
    m_t, m_p = counts[0, 1].double(), counts[1, 1].double()
    recall = m_t / n_t.clamp(min=1)
    precision = m_p / n_p.clamp(min=1)
    denom = precision + recall  # one-empty classes get f1 = 0 through precision or recall = 0
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), torch.zeros_like(denom))
    return f1.masked_fill((n_t == 0) & (n_p == 0), float("nan"))


def _bf_from_class_f1(f1: Tensor, confusion: Tensor) -> Tensor:
    """(B, C) BF_c and (B, C, C) confusion -> (B,) per-image BF with nlkd's conventions (module docstring)."""
    present = ~f1.isnan()
    n_present = present.sum(1)
    bf = f1.nan_to_num(0.0).sum(1) / n_present.clamp(min=1)
    valid = confusion.sum((1, 2))
    if not bool(n_present.all()):  # one region in each map: 1 if they agree on every valid pixel
        agree = confusion.diagonal(dim1=1, dim2=2).sum(1) == valid
        bf = torch.where(n_present > 0, bf, agree.double())
    return bf.masked_fill(valid == 0, float("nan"))


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


def per_class_iou(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """IoU of every class in every image: the parts :func:`per_image_iou` averages.

    Args:
        pred: (B, H, W) integer predicted labels.
        target: (B, H, W) integer labels; ``ignore_index`` pixels are removed from both maps.

    Returns:
        (B, C) float64; NaN where class c is in neither map of image b.

    >>> per_class_iou(torch.tensor([[[0, 1, 1, 1]]]), torch.tensor([[[0, 0, 1, 1]]]), 3).tolist()
    [[0.5, 0.6666666666666666, nan]]
    """
    p, t = _prepare(pred, target, num_classes, ignore_index)
    return _iou_from_confusion(_confusion(p, t, num_classes))


def per_class_bf(
    pred: Tensor, target: Tensor, num_classes: int, tolerance: float = 2.0, ignore_index: int | None = None
) -> Tensor:
    """Boundary F1 of every class in every image (Eq. 1-3 per class): the BF_c that :func:`boundary_f1`
    averages, from the same boundary matches.

    Args:
        pred: (B, H, W) integer predicted labels.
        target: (B, H, W) integer labels; ``ignore_index`` pixels are removed from both maps.
        tolerance: match distance θ in pixels; a match needs distance strictly below θ.

    Returns:
        (B, C) float64 in [0, 1]; NaN where class c has a boundary in neither map of image b.

    >>> t = torch.tensor([[[0, 0, 1, 1, 2, 2]] * 3])
    >>> p = torch.tensor([[[0, 0, 1, 1, 1, 2]] * 3])  # the 1 | 2 boundary moved by one pixel: no match at θ = 1
    >>> per_class_bf(p, t, 3, tolerance=1.0).tolist()
    [[1.0, 0.5, 0.0]]
    """
    tolerance = _validate_tolerance(tolerance)
    p, t = _prepare(pred, target, num_classes, ignore_index)
    return _class_f1(_pair_stats(p, t, num_classes, tolerance)[1])


def _bf(p: Tensor, t: Tensor, num_classes: int, tolerance: float) -> Tensor:
    confusion, counts = _pair_stats(p, t, num_classes, tolerance)
    return _bf_from_class_f1(_class_f1(counts), confusion)


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

    @property
    def class_iou(self) -> Tensor:
        """(B, C) IoU_c per image and class, NaN where class c is in neither map."""
        return _iou_from_confusion(self.confusion)


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
    cm, counts = _pair_stats(p, t, num_classes, tolerance)
    class_bf = _class_f1(counts)
    return SegmentationStats(_bf_from_class_f1(class_bf, cm), _nanmean_rows(_iou_from_confusion(cm)), class_bf, cm)


# ----------------------------------------------------------------------------- dataset level


class SegmentationMetrics:
    """Dataset-level evaluation: mIoU from one confusion matrix, per-class IoU, pixel accuracy,
    mean per-image BF (the paper's "BF") and per-class BF (BF_c averaged over the images where class c
    has a boundary in either map). State is kept as sums, so merging is addition.

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
        self.class_bf_sum = torch.zeros(self.num_classes, dtype=torch.float64, device=self.device)
        self.class_bf_count = torch.zeros(self.num_classes, dtype=torch.int64, device=self.device)

    def _state(self) -> tuple[Tensor, ...]:
        return self.confusion, self.bf_sum, self.bf_count, self.class_bf_sum, self.class_bf_count

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> Tensor:
        """Add a batch of (B, H, W) label maps; returns the batch's per-image BF, shape (B,)."""
        p, t = _prepare(pred.to(self.device), target.to(self.device), self.num_classes, self.ignore_index)
        cm, counts = _pair_stats(p, t, self.num_classes, self.tolerance)
        self.confusion += cm.sum(0)
        class_bf = _class_f1(counts)
        bf = _bf_from_class_f1(class_bf, cm)
        ok = ~bf.isnan()
        self.bf_sum += bf[ok].sum()
        self.bf_count += ok.sum()
        self.class_bf_sum += class_bf.nan_to_num(0.0).sum(0)
        self.class_bf_count += (~class_bf.isnan()).sum(0)
        return bf

    def merge(self, other: SegmentationMetrics) -> SegmentationMetrics:
        """Add another evaluator's state into this one (e.g. from another process)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge metrics over {other.num_classes} classes into {self.num_classes}")
        for mine, theirs in zip(self._state(), other._state()):
            mine += theirs.to(self.device)
        return self

    def all_reduce(self) -> None:
        """Sum the state over all processes of the default ``torch.distributed`` group (no-op otherwise)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            for t in self._state():
                dist.all_reduce(t)

    def compute(self) -> dict[str, float | list[float]]:
        """Return ``miou``, ``per_class_iou`` (NaN for classes absent from target and prediction),
        ``pixel_accuracy``, ``bf`` (mean per-image BF), ``per_class_bf`` (NaN for classes without a
        boundary in any image), ``tolerance`` (of both BFs, pixels) and ``n_images``."""
        iou = _iou_from_confusion(self.confusion)
        total = self.confusion.sum()
        class_bf = torch.where(
            self.class_bf_count > 0, self.class_bf_sum / self.class_bf_count.clamp(min=1), float("nan")
        )
        return {
            "miou": float(torch.nanmean(iou)) if (~iou.isnan()).any() else float("nan"),
            "per_class_iou": [float(x) for x in iou],
            "pixel_accuracy": float(self.confusion.diagonal().sum() / total) if total > 0 else float("nan"),
            "bf": float(self.bf_sum / self.bf_count) if self.bf_count > 0 else float("nan"),
            "per_class_bf": [float(x) for x in class_bf],
            "tolerance": self.tolerance,
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
