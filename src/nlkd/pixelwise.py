"""Pixel-level pieces for coarse annotations: relaxed label sets, the distance to the annotated boundary,
reliability weights, softened teacher targets and tolerant agreement maps.

A coarse mask is wrong at its boundary, not everywhere: these pure, batched functions let a loss trust
an annotation less near its boundaries. They are what the ``relax``, ``band_kd`` and ``nlkd_pixel``
strategies use, and they fit into any training loop::

    sets = relaxed_label_set(masks, num_classes=19, radius=1, ignore_index=255)     # (B, C, H, W) bool
    loss_map = relaxed_label_loss(logits, sets)                                     # (B, H, W)
    w = reliability_weight(boundary_distance(masks, ignore_index=255), sigma=1.0)   # (B, H, W) in [0, 1]

Conventions (shared with :mod:`nlkd.metrics`): masks are (B, H, W) integer maps; ``ignore_index``
pixels are *unknown*, never a class: they add no class to a neighbour's label set, and outside the
image counts as unknown too. Distances are in pixels between pixel centres.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nlkd.metrics import _disk_offsets

__all__ = [
    "agreement_map",
    "boundary_distance",
    "boundary_pixels",
    "moved_side_band",
    "near_class",
    "one_hot_labels",
    "relaxed_label_loss",
    "relaxed_label_set",
    "reliability_weight",
    "soften_probabilities",
]


def _check_mask(target: Tensor, name: str = "target") -> None:
    if not isinstance(target, Tensor) or target.ndim != 3:
        shape = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(f"{name} must be a (B, H, W) label map, got {shape}")
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer label map, got dtype {target.dtype}")


def one_hot_labels(target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """The annotation as a one-hot set: (B, H, W) labels -> (B, C, H, W) bool; ignore pixels get no class.

    Raises ``ValueError`` for a label outside ``0..num_classes-1`` (other than ``ignore_index``).
    """
    _check_mask(target)
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    labels = target.masked_fill(~valid, 0).long()
    if labels.numel():
        lo, hi = (int(v) for v in torch.aminmax(labels))
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"target holds value {lo if lo < 0 else hi} outside 0..{num_classes - 1} (ignore_index={ignore_index})"
            )
    onehot = F.one_hot(labels, num_classes).permute(0, 3, 1, 2).bool()
    return onehot & valid.unsqueeze(1)


def relaxed_label_set(target: Tensor, num_classes: int, radius: int = 1, ignore_index: int | None = None) -> Tensor:
    """N(p): the classes annotated in the (2r+1)² window around each pixel (Zhu et al., CVPR 2019).

    N(p) = {c : y_q = c for some q with |q_y − p_y| ≤ r and |q_x − p_x| ≤ r}, the max-pool of the one-hot
    annotation. Ignore pixels and pixels outside the image contribute no class; an ignore pixel with an
    annotated neighbour gets its neighbours' classes (as in the authors' code), one without gets the
    empty set. ``radius=0`` is the one-hot annotation, so the relaxed loss is CE.

    Args:
        target: (B, H, W) integer labels in ``0..num_classes-1`` or ``ignore_index``.
        radius: r >= 0; the authors' default is 1 (a 3×3 window).

    Returns:
        (B, C, H, W) bool multi-hot sets.

    >>> t = torch.tensor([[[0, 0, 1, 1]]])
    >>> relaxed_label_set(t, 2, radius=1)[0, :, 0].int().tolist()
    [[1, 1, 1, 0], [0, 1, 1, 1]]
    """
    if not isinstance(radius, int) or radius < 0:
        raise ValueError(f"radius must be an int >= 0, got {radius!r}")
    onehot = one_hot_labels(target, num_classes, ignore_index)
    if radius == 0:
        return onehot
    # max_pool2d pads with -inf, so outside the image adds no class; float16/32 only on CPU
    pooled = F.max_pool2d(onehot.float(), kernel_size=2 * radius + 1, stride=1, padding=radius)
    return pooled > 0


def relaxed_label_loss(logits: Tensor, target_set: Tensor) -> Tensor:
    """Per-pixel union likelihood loss ℓ(p) = −log Σ_{c∈N(p)} softmax(z_p)_c.

    Computed stably as logsumexp(z_{N(p)}) − logsumexp(z_p) (no log of a small sum of probabilities), and
    per image with its own sets (the public code divides by the whole batch's n(p), which mixes images).
    A one-hot set gives CE; an empty set gives 0 (the pixel is unknown; leave it out of any mean).

    Args:
        logits: (B, C, H, W) unnormalised scores.
        target_set: (B, C, H, W) bool allowed classes per pixel.

    Returns:
        (B, H, W) loss >= 0, differentiable in ``logits`` (finite gradient, also on empty sets).
    """
    if logits.ndim != 4 or target_set.shape != logits.shape:
        raise ValueError(
            f"logits and target_set must both have shape (B, C, H, W), got {tuple(logits.shape)}, "
            f"{tuple(target_set.shape)}"
        )
    s = target_set.bool()
    empty = ~s.any(1, keepdim=True)
    z = logits.float()
    in_set = z.masked_fill(~(s | empty), float("-inf"))  # an empty set becomes "every class": loss 0
    return torch.logsumexp(z, 1) - torch.logsumexp(in_set, 1)


def boundary_pixels(target: Tensor, ignore_index: int | None = None) -> Tensor:
    """Annotated boundary: labelled pixels with a 4-neighbour (inside the image) of another value.

    A neighbour with ``ignore_index`` counts as another value (an unlabelled gap ends the annotated
    region); ignore pixels themselves are never boundary, and the image border is not a boundary.

    Args:
        target: (B, H, W) integer labels.

    Returns:
        (B, H, W) bool.
    """
    _check_mask(target)
    edge = torch.zeros(target.shape, dtype=torch.bool, device=target.device)
    dv = target[:, 1:, :] != target[:, :-1, :]
    edge[:, 1:, :] |= dv
    edge[:, :-1, :] |= dv
    dh = target[:, :, 1:] != target[:, :, :-1]
    edge[:, :, 1:] |= dh
    edge[:, :, :-1] |= dh
    return edge if ignore_index is None else edge & (target != ignore_index)


def boundary_distance(target: Tensor, ignore_index: int | None = None, max_distance: float | None = 8.0) -> Tensor:
    """Euclidean distance of every pixel to the nearest annotated boundary pixel, capped at ``max_distance``.

    Exact: the result equals ``min(d(p), max_distance)`` where d is the exact Euclidean distance between
    pixel centres (scipy's ``distance_transform_edt`` of the non-boundary map; the tests check this).
    Two separable passes over offsets up to K = ceil(max_distance): first the vertical distance to the
    nearest boundary pixel in each column, then d² = min over |dx| <= K of dx² + g(x + dx)². Any nearest
    boundary pixel at d <= K lies within both windows, so the cap makes it exact and cheap (4K + 2
    elementwise passes, any device). ``max_distance=None`` searches the whole image (no cap).
    An image without a boundary gets ``max_distance`` everywhere (``inf`` without a cap).

    Args:
        target: (B, H, W) integer labels (see :func:`boundary_pixels` for the boundary).
        max_distance: cap in pixels (> 0), or None.

    Returns:
        (B, H, W) float32 distances, 0 on boundary pixels.
    """
    edge = boundary_pixels(target, ignore_index)
    _, h, w = edge.shape
    if max_distance is not None and not (max_distance > 0):
        raise ValueError(f"max_distance must be > 0 or None, got {max_distance!r}")
    k = max(h, w) if max_distance is None else min(math.ceil(max_distance), max(h, w))
    inf = float("inf")
    # vertical pass: g = |dy| to the nearest boundary pixel in the same column (inf beyond k)
    padded = F.pad(edge, (0, 0, k, k))
    g = torch.where(edge, 0.0, inf)
    for dy in range(1, k + 1):
        hit = padded[:, k + dy : k + dy + h] | padded[:, k - dy : k - dy + h]
        g = torch.where(hit & torch.isinf(g), float(dy), g)
    # horizontal pass: d² = min_dx dx² + g(x + dx)²
    g2 = F.pad(g * g, (k, k), value=inf)
    d2 = g2[:, :, k : k + w].clone()
    for dx in range(1, k + 1):
        near = torch.minimum(g2[:, :, k + dx : k + dx + w], g2[:, :, k - dx : k - dx + w])
        d2 = torch.minimum(d2, near + dx * dx)
    d = d2.sqrt()
    return d if max_distance is None else d.clamp(max=float(max_distance))


def reliability_weight(distance: Tensor, sigma: float = 1.0) -> Tensor:
    """How far an annotation is trusted by distance to its boundary (BAKD's boundary reliability).

    w(p) = 1 − exp(−d(p) / σ): 0 on the boundary, 0.63 at σ, 0.95 at 3σ, 1 at d = inf. The authors'
    code uses σ = 1 px.

    Args:
        distance: (B, H, W) distances >= 0 (e.g. :func:`boundary_distance`).
        sigma: scale σ in pixels, > 0.

    Returns:
        (B, H, W) float weights in [0, 1].
    """
    if not (sigma > 0) or math.isinf(sigma):
        raise ValueError(f"sigma must be a finite number of pixels > 0, got {sigma!r}")
    return -torch.expm1(-distance.float() / sigma)


def soften_probabilities(prob: Tensor, temperature: float = 1.0) -> Tensor:
    """Teacher probabilities at temperature T: q_c ∝ p_c^(1/T) (= softmax(log p / T)), over dim 1.

    Exact for zeros (a one-hot stays one-hot at any T); a pixel whose probabilities are all 0 (no
    teacher prediction there) stays all 0.

    Args:
        prob: (B, C, H, W) probabilities >= 0 (e.g. dequantised from a cache; rows need not sum to 1).
        temperature: T > 0; T > 1 flattens, T < 1 sharpens.

    Returns:
        (B, C, H, W) float32, rows summing to 1 (or 0).
    """
    if not (temperature > 0) or math.isinf(temperature):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    p = prob.float().clamp(min=0)
    if temperature != 1.0:
        # scale by the row maximum first, so p^(1/T) cannot underflow to an all-zero row
        peak = p.amax(1, keepdim=True)
        p = (p / peak.clamp(min=torch.finfo(p.dtype).tiny)).pow(1.0 / temperature)
    total = p.sum(1, keepdim=True)
    return p / total.clamp(min=torch.finfo(p.dtype).tiny)


def agreement_map(pred: Tensor, target: Tensor, tolerance: float = 2.0, ignore_index: int | None = None) -> Tensor:
    """Pixels whose annotation a prediction confirms within the BF tolerance.

    a(p) = 1 when some pixel q with |q − p| < θ (Euclidean, strictly below, as in the BF metric) is
    predicted as the annotated class y_p. A boundary that the prediction places less than θ away from
    the annotated one therefore still agrees; a wrongly annotated rim wider than θ does not.
    Ignore pixels never agree.

    Args:
        pred: (B, H, W) predicted labels.
        target: (B, H, W) annotation.
        tolerance: θ in pixels, > 0.

    Returns:
        (B, H, W) bool.
    """
    _check_mask(pred, "pred")
    _check_mask(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)}, {tuple(target.shape)}")
    if not (tolerance > 0) or math.isinf(tolerance):
        raise ValueError(f"tolerance must be a finite number of pixels > 0, got {tolerance!r}")
    _, h, w = target.shape
    offsets = _disk_offsets(float(min(tolerance, math.hypot(h, w) + 1.0)))
    r = max(abs(dy) for dy, _ in offsets)
    padded = F.pad(pred.long(), (r, r, r, r), value=-1)
    t = target.long()
    agree = torch.zeros(target.shape, dtype=torch.bool, device=target.device)
    for dy, dx in offsets:
        agree |= padded[:, r + dy : r + dy + h, r + dx : r + dx + w] == t
    return agree if ignore_index is None else agree & (target != ignore_index)


def near_class(target: Tensor, num_classes: int, radius: float, ignore_index: int | None = None) -> Tensor:
    """For every pixel and class c: is some pixel annotated c nearer than ``radius``?

    near[b, c, p] = 1 when a pixel q with |q − p| < R (Euclidean, strictly below, as in BF) has y_q = c.

    Args:
        target: (B, H, W) labels; ``ignore_index`` pixels are no class.
        radius: R in pixels, > 0.

    Returns:
        (B, C, H, W) bool.
    """
    return _near(one_hot_labels(target, num_classes, ignore_index), radius)


def _near(onehot: Tensor, radius: float) -> Tensor:
    """:func:`near_class` of a (B, C, H, W) bool one-hot annotation."""
    if not (radius > 0) or math.isinf(radius):
        raise ValueError(f"radius must be a finite number of pixels > 0, got {radius!r}")
    _, _, h, w = onehot.shape
    offsets = _disk_offsets(float(min(radius, math.hypot(h, w) + 1.0)))
    r = max(abs(dy) for dy, _ in offsets)
    padded = F.pad(onehot, (r, r, r, r), value=False)
    near = torch.zeros_like(onehot)
    for dy, dx in offsets:
        near |= padded[:, :, r + dy : r + dy + h, r + dx : r + dx + w]
    return near


def moved_side_band(
    target: Tensor, pred: Tensor, num_classes: int, radius: float, ignore_index: int | None = None
) -> Tensor:
    """The side of each annotated boundary that a reference prediction says the annotation moved into.

    A coarse mask is often grown or shrunk consistently along the boundary between two classes (an
    annotator who traces outside an object does so all around it). Per image and pair of touching
    classes (a, b), count the pixels of the band on each side that the prediction gives to the other
    class::

        n(a, b) = #{p : y_p = a, some pixel annotated b nearer than R, pred_p = b}   (a grew into b)

    and mark the side with the larger count: the pixels annotated a nearer than R to b when
    n(a, b) > n(b, a) (on a tie neither side). One vote per image and pair of classes, over all the
    pixels of their common band, decides which side is wrong; the pixel-by-pixel disagreement does not.

    Args:
        target: (B, H, W) annotation; ``ignore_index`` pixels are never marked.
        pred: (B, H, W) reference labels (e.g. the teacher's argmax); other values count as no class.
        radius: band width R in pixels, > 0 (:func:`near_class`).

    Returns:
        (B, H, W) bool, the pixels on the moved side of their boundaries.
    """
    _check_mask(pred, "pred")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)}, {tuple(target.shape)}")
    onehot = one_hot_labels(target, num_classes, ignore_index)  # (B, C, H, W)
    near = _near(onehot, radius)
    annotated = onehot.float()
    pred = pred.long()
    pred = pred.where((pred >= 0) & (pred < num_classes), num_classes)  # no class: the extra column
    predicted = F.one_hot(pred, num_classes + 1)[..., :num_classes]
    claimed = (near & predicted.permute(0, 3, 1, 2).bool()).float()  # near b and predicted b
    n = torch.einsum("bahw,bchw->bac", annotated, claimed)  # n[b, a, c]: pixels of a that pred gives to c
    grew = (n > n.transpose(1, 2)).float()
    toward = torch.einsum("bahw,bac->bchw", annotated, grew) > 0  # the classes the pixel's own class grew into
    return (toward & near).any(1)
