"""Image/mask transforms: resizing, ImageNet normalisation, and the paired training augmentation.

Arrays are numpy ``uint8``. Decoding and the one-off resize work on PIL's (H, W, 3) layout
(:func:`resize_image`, :func:`resize_mask`); everything done per item on the hot path works on
channel-first (3, H, W) images, because flipping, cropping and the float conversion are several times
faster on contiguous planes (:func:`augment`, :func:`to_tensor`). Masks are (H, W) class indices.

Geometry is always applied identically to an image, its mask and any other per-pixel map of the item
(:func:`draw_geometry` once, :func:`apply_geometry` per map); masks and other label maps are only ever
resampled with nearest neighbour, so they keep exactly their original values (plus the fill value of a
crop); probability maps are resampled bilinearly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch
from PIL import Image

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Geometry",
    "MapKind",
    "apply_geometry",
    "augment",
    "augment_with_maps",
    "denormalize",
    "draw_geometry",
    "hflip",
    "random_scale_crop",
    "resize_image",
    "resize_mask",
    "to_tensor",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_MEAN_255 = torch.tensor(IMAGENET_MEAN).mul(255.0).view(3, 1, 1)
_INV_STD_255 = torch.tensor(IMAGENET_STD).mul(255.0).reciprocal().view(3, 1, 1)
# The padding colour of random_scale_crop: normalises to (almost exactly) zero.
_MEAN_RGB_U8 = np.array([round(255 * m) for m in IMAGENET_MEAN], dtype=np.uint8)
#: How a map is resampled when zoomed: an image, a label map (nearest) or a probability map (bilinear).
MapKind = Literal["image", "label", "prob"]


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if len(size) != 2 or any(isinstance(s, bool) or int(s) != s or s < 1 for s in size):
        raise ValueError(f"size must be (H, W) with positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (H, W, 3) uint8 image to ``size=(H', W')``, antialiased when shrinking."""
    h, w = _check_size(size)
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) uint8 mask to ``size=(H', W')``; no new values appear."""
    h, w = _check_size(size)
    if mask.shape[:2] == (h, w):
        return mask
    return np.asarray(Image.fromarray(mask).resize((w, h), Image.Resampling.NEAREST))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(3, H, W) uint8 RGB -> (3, H, W) float32 normalised with the ImageNet mean and std."""
    if image.ndim != 3 or image.shape[0] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be a (3, H, W) uint8 array, got {image.shape} {image.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(image)).to(torch.float32)
    return x.sub_(_MEAN_255).mul_(_INV_STD_255)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_tensor` for (3, H, W) or (B, 3, H, W) float tensors -> uint8, same shape."""
    if x.ndim not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"x must have shape (3, H, W) or (B, 3, H, W), got {tuple(x.shape)}")
    mean, inv_std = _MEAN_255.to(x.device), _INV_STD_255.to(x.device)
    return (x / inv_std + mean).round_().clamp_(0, 255).to(torch.uint8)


def hflip(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror a (3, H, W) image and its (H, W) mask left-right (contiguous copies)."""
    return np.ascontiguousarray(image[:, :, ::-1]), np.ascontiguousarray(mask[:, ::-1])


@dataclass(frozen=True)
class Geometry:
    """One draw of the training augmentation, to apply identically to an image and all its maps.

    ``zoom`` is the scale factor (None: no scale-crop); ``rows``/``cols`` are (source start,
    destination start, length) of the crop window along each axis; ``flip`` mirrors left-right last.
    """

    zoom: float | None = None
    rows: tuple[int, int, int] = (0, 0, 0)
    cols: tuple[int, int, int] = (0, 0, 0)
    flip: bool = False


def draw_geometry(
    shape: tuple[int, int], rng: np.random.Generator, *, flip: bool = True, scale: tuple[float, float] | None = None
) -> Geometry:
    """Draw the augmentation of an (H, W) item: zoom in ``scale=(lo, hi)`` and window, then a flip (p=0.5)."""
    zoom, rows, cols = None, (0, 0, 0), (0, 0, 0)
    if scale is not None:
        lo, hi = scale
        if not 0 < lo <= hi:
            raise ValueError(f"scale must be (lo, hi) with 0 < lo <= hi, got {scale!r}")
        h, w = shape
        zoom = float(rng.uniform(lo, hi))
        rows, cols = _window(max(1, round(h * zoom)), h, rng), _window(max(1, round(w * zoom)), w, rng)
    return Geometry(zoom, rows, cols, bool(flip and rng.random() < 0.5))


def apply_geometry(planes: np.ndarray, geo: Geometry, kind: MapKind, fill: float | np.ndarray = 0) -> np.ndarray:
    """Apply ``geo`` to (..., H, W) ``planes`` (same shape out, input untouched).

    ``kind`` picks the resampling of the zoom: ``"image"`` (area when shrinking, else bilinear),
    ``"label"`` (nearest: no new values) or ``"prob"`` (bilinear: probabilities stay distributions).
    Pixels the zoomed-out item does not cover get ``fill`` (a number, or one value per plane of the
    flattened leading dimensions, e.g. the image's mean colour).
    """
    if geo.zoom is not None:
        planes = _scale_crop(planes, geo, kind, fill)
    if geo.flip:
        planes = planes[..., ::-1]
    return np.ascontiguousarray(planes)


def _scale_crop(planes: np.ndarray, geo: Geometry, kind: MapKind, fill: float | np.ndarray) -> np.ndarray:
    h, w = planes.shape[-2:]
    (sy, dy, ch), (sx, dx, cw) = geo.rows, geo.cols
    nh, nw = max(1, round(h * geo.zoom)), max(1, round(w * geo.zoom))  # type: ignore[operator]
    if kind == "image":
        interp = cv2.INTER_AREA if geo.zoom < 1 else cv2.INTER_LINEAR  # type: ignore[operator]
    else:
        interp = cv2.INTER_NEAREST if kind == "label" else cv2.INTER_LINEAR
    flat = planes.reshape(-1, h, w)
    out = np.empty_like(flat)
    fills = np.broadcast_to(np.asarray(fill), (len(flat),))
    for plane, dst, value in zip(flat, out, fills):  # cv2 resizes contiguous 2-D planes fastest
        dst[:] = value
        if (nh, nw) != (h, w):
            plane = cv2.resize(plane, (nw, nh), interpolation=interp)
        dst[dy : dy + ch, dx : dx + cw] = plane[sy : sy + ch, sx : sx + cw]
    return out.reshape(planes.shape)


def random_scale_crop(
    image: np.ndarray,
    mask: np.ndarray,
    scale: tuple[float, float],
    rng: np.random.Generator,
    fill: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Zoom by a factor drawn uniformly from ``scale=(lo, hi)``, then take a random (H, W) window.

    The output has the input's size. Where the zoomed-out image does not cover the window, the
    image is padded with the ImageNet mean colour (zero after normalisation) and the mask with
    ``fill`` (use the ignore index so padding counts for nothing).

    Args:
        image: (3, H, W) uint8.
        mask: (H, W) uint8.
        scale: ``(lo, hi)`` with ``0 < lo <= hi``.
        rng: source of the scale factor and window position.
        fill: mask value in 0..255 for padded pixels.
    """
    geo = draw_geometry(mask.shape, rng, flip=False, scale=scale)
    return _apply_pair(image, mask, geo, fill)


def _apply_pair(image: np.ndarray, mask: np.ndarray, geo: Geometry, fill: int) -> tuple[np.ndarray, np.ndarray]:
    return apply_geometry(image, geo, "image", _MEAN_RGB_U8), apply_geometry(mask, geo, "label", fill)


def _window(src: int, dst: int, rng: np.random.Generator) -> tuple[int, int, int]:
    """Along one axis: (source start, destination start, length) of a random placement."""
    offset = int(rng.integers(0, abs(src - dst) + 1))
    return (offset, 0, dst) if src >= dst else (0, offset, src)


def augment(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    flip: bool = True,
    scale: tuple[float, float] | None = None,
    fill: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The training augmentation: optional random scale-crop, then a random horizontal flip (p=0.5).

    Image (3, H, W) and mask (H, W) uint8 in, same shapes out; the inputs are never modified.
    Other maps of the item follow with :func:`draw_geometry` + :func:`apply_geometry` (same draws).
    """
    return _apply_pair(image, mask, draw_geometry(mask.shape, rng, flip=flip, scale=scale), fill)


def augment_with_maps(
    image: np.ndarray,
    mask: np.ndarray,
    maps: dict[str, tuple[np.ndarray, MapKind, float]],
    rng: np.random.Generator,
    *,
    flip: bool = True,
    scale: tuple[float, float] | None = None,
    fill: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """:func:`augment` that also moves other maps of the item the same way.

    Args:
        maps: name -> ((..., H, W) array, kind, padding value); kinds as in :func:`apply_geometry`.

    Returns:
        image, mask (as :func:`augment`, from the same draws) and the maps, same shapes as given.
    """
    geo = draw_geometry(mask.shape, rng, flip=flip, scale=scale)
    image, mask = _apply_pair(image, mask, geo, fill)
    return image, mask, {name: apply_geometry(a, geo, kind, value) for name, (a, kind, value) in maps.items()}
