"""Image/mask transforms: resizing, ImageNet normalisation, and the paired training augmentation.

Arrays are numpy ``uint8``. Decoding and the one-off resize work on PIL's (H, W, 3) layout
(:func:`resize_image`, :func:`resize_mask`); everything done per item on the hot path works on
channel-first (3, H, W) images, because flipping, cropping and the float conversion are several times
faster on contiguous planes (:func:`augment`, :func:`to_tensor`). Masks are (H, W) class indices.

Geometry is always applied identically to an image and its mask; masks are only ever resampled with
nearest neighbour, so they keep exactly their original values (plus the fill value of a crop).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "augment",
    "denormalize",
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
    lo, hi = scale
    if not 0 < lo <= hi:
        raise ValueError(f"scale must be (lo, hi) with 0 < lo <= hi, got {scale!r}")
    h, w = mask.shape
    s = float(rng.uniform(lo, hi))
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    (sy, dy, ch), (sx, dx, cw) = _window(nh, h, rng), _window(nw, w, rng)
    out_img = np.empty((3, h, w), dtype=np.uint8)
    out_img[:] = _MEAN_RGB_U8[:, None, None]
    out_mask = np.full((h, w), fill, dtype=np.uint8)
    planes = [*image, mask]  # cv2 resizes contiguous 2-D planes fastest
    interps = [cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR] * 3 + [cv2.INTER_NEAREST]
    for plane, interp, out in zip(planes, interps, [*out_img, out_mask]):
        if (nh, nw) != (h, w):
            plane = cv2.resize(plane, (nw, nh), interpolation=interp)
        out[dy : dy + ch, dx : dx + cw] = plane[sy : sy + ch, sx : sx + cw]
    return out_img, out_mask


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
    """
    if scale is not None:
        image, mask = random_scale_crop(image, mask, scale, rng, fill)
    if flip and rng.random() < 0.5:
        image, mask = hflip(image, mask)
    return image, mask
