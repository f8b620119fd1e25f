"""The embedded default data set: small street-like scenes with thin structures, written to disk.

Six classes: sky, ground, building (rectangles with a window grid), tree (ellipses with blotchy
foliage), pole (vertical bars 2–4 px wide) and wire (sagging lines 1–2 px wide). Each class has a
characteristic colour and texture, varied per image (brightness, colour cast) and per pixel
(noise), and the image changes exactly at every label boundary, so boundaries are learnable.

``train_coarse`` is a copy of the train labels in which ``coarse_ratio`` of the masks went
through :func:`nlkd.noise.dilate_erode` with :data:`COARSE_RADIUS` (scaled to the image size), a
strong setting chosen so that the per-image mean IoU between coarse and clean labels is about
0.6: coarse labels clearly hurt a model trained with plain cross-entropy.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image

from nlkd.errors import DataError
from nlkd.io import atomic_write_bytes, atomic_write_text, write_mask
from nlkd.noise import corrupt_dataset

__all__ = ["CLASS_NAMES", "COARSE_RADIUS", "PALETTE", "make_synthetic", "render_scene"]

CLASS_NAMES: tuple[str, ...] = ("sky", "ground", "building", "tree", "pole", "wire")
#: Display colours (labels only; the rendered appearance is in ``_BASE_COLOUR``).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (70, 130, 180),
    (128, 64, 128),
    (70, 70, 70),
    (107, 142, 35),
    (220, 220, 0),
    (255, 0, 0),
)
#: dilate/erode radius range (px) for the coarse copy at 96 px image height; scaled by min(H, W) / 96.
COARSE_RADIUS: tuple[float, float] = (1.5, 3.5)
_BASE_COLOUR = np.array(
    [(150, 190, 235), (115, 105, 95), (165, 95, 75), (60, 120, 45), (215, 200, 140), (35, 30, 40)],
    dtype=np.float32,
)
_SPLITS = ("train", "val", "test")
_MARKER = "synth.json"


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1], shape (H, W): a coarse random grid, resized."""
    h, w = shape
    grid = rng.uniform(-1, 1, size=(h // cell + 2, w // cell + 2)).astype(np.float32)
    big = cv2.resize(grid, ((w // cell + 2) * cell, (h // cell + 2) * cell), interpolation=cv2.INTER_CUBIC)
    return big[:h, :w]


def _draw_labels(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Scene layout as an (H, W) uint8 class map; later objects are drawn over earlier ones."""
    lab = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    horizon = rng.uniform(0.4, 0.62) * h
    slope = rng.uniform(-0.12, 0.12)
    ground_y = horizon + slope * (xx - w / 2)
    lab[yy >= ground_y] = 1
    s = min(h, w) / 96.0  # sizes below are for 96 px images
    for _ in range(rng.integers(1, 5)):
        bw, bh = rng.uniform(10, 40) * s, rng.uniform(12, 42) * s
        x0 = rng.uniform(-bw / 2, w - bw / 2)
        base = horizon + rng.uniform(-2, 6) * s
        cv2.rectangle(lab, (int(x0), int(base - bh)), (int(x0 + bw), int(base)), 2, -1)
    for _ in range(rng.integers(1, 4)):
        centre = (int(rng.uniform(0, w)), int(horizon + rng.uniform(-18, 14) * s))
        axes = (int(rng.uniform(6, 20) * s), int(rng.uniform(5, 15) * s))
        cv2.ellipse(lab, centre, axes, float(rng.uniform(0, 180)), 0, 360, 3, -1)
    tops = []
    for _ in range(rng.integers(1, 4)):
        pw = int(rng.integers(2, 5))
        x0 = int(rng.uniform(2, w - pw - 2))
        top = int(rng.uniform(0.05, 0.3) * h)
        bottom = int(min(h - 1, horizon + rng.uniform(6, 30) * s))
        lab[top:bottom, x0 : x0 + pw] = 4
        tops.append((x0 + pw // 2, top + 2))
    for _ in range(rng.integers(1, 3)):
        y1, y2 = rng.uniform(0.08, 0.35, size=2) * h
        sag = rng.uniform(2, 10) * s
        xs = np.linspace(0, w - 1, 33)
        t = xs / (w - 1)
        ys = y1 + (y2 - y1) * t + sag * 4 * t * (1 - t)
        pts = np.round(np.stack([xs, ys], 1)).astype(np.int32)
        cv2.polylines(lab, [pts], False, 5, thickness=int(rng.integers(1, 3)))
    return lab


def _textures(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Per-class appearance for one image, shape (C, H, W, 3) float32 in about [0, 255]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    colour = _BASE_COLOUR + rng.normal(0, 12, size=_BASE_COLOUR.shape).astype(np.float32)
    tex = np.broadcast_to(colour[:, None, None, :], (len(CLASS_NAMES), h, w, 3)).copy()
    tex[0] += (25 * yy / h)[..., None] + 8 * _smooth_noise(rng, (h, w), 24)[..., None]  # sky gradient
    tex[1] += rng.normal(0, 16, size=(h, w, 1)).astype(np.float32)  # ground grain
    px, py = rng.integers(5, 9, size=2)
    ox, oy = rng.integers(0, 8, size=2)
    windows = (((xx + ox) % px) < px / 2) & (((yy + oy) % py) < py / 2)
    tex[2] -= (55 * windows)[..., None]  # building: dark window grid
    tex[3] += 30 * _smooth_noise(rng, (h, w), 4)[..., None] * np.array([0.6, 1.0, 0.5], np.float32)
    tex[4] += (20 * np.sin(yy / 3.0))[..., None]  # pole: banded
    return tex


def render_scene(rng: np.random.Generator, size: tuple[int, int] = (96, 128)) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic scene.

    Args:
        rng: source of all randomness.
        size: (H, W) in pixels.

    Returns:
        ``(image, labels)``: uint8 RGB (H, W, 3) and uint8 class map (H, W) with values in
        ``0..len(CLASS_NAMES) - 1``.
    """
    h, w = size
    labels = _draw_labels(rng, h, w)
    tex = _textures(rng, h, w)
    image = np.take_along_axis(tex, labels[None, :, :, None].astype(np.intp), axis=0)[0]
    image = image * rng.uniform(0.75, 1.25) + rng.normal(0, 6, size=image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), labels


def _png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def _prepare_root(root: Path) -> None:
    """Make ``root`` ready: new, empty, or an earlier synthetic data set (which is cleared)."""
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not (root / _MARKER).is_file():
            raise DataError(f"{root}: folder is not empty and was not made by `nlkd synth`; choose a new folder")
        for name in ("images", "labels"):
            shutil.rmtree(root / name, ignore_errors=True)
        (root / "dataset.yaml").unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)


def make_synthetic(
    root: str | os.PathLike[str],
    seed: int = 0,
    n_train: int = 160,
    n_val: int = 40,
    n_test: int = 40,
    size: tuple[int, int] = (96, 128),
    coarse_ratio: float = 0.5,
) -> Path:
    """Write the synthetic data set to ``root`` and return ``root`` as a Path.

    Layout: ``images/<split>/<id>.png`` (RGB), ``labels/<split>/<id>.png`` (8-bit class index)
    for splits train/val/test with ids ``<split>_0000``…, ``labels/train_coarse/`` (see the module
    docstring; with ``manifest.json``), ``dataset.yaml`` (num_classes, ignore_index: null,
    class_names, palette) and ``synth.json`` (the arguments). The same arguments give the same
    files. ``root`` must be new, empty, or an earlier output of this function.

    Raises:
        DataError: ``root`` is a file or a non-empty folder not made by this function.
        ValueError: a negative count or seed, a size below 16 px, a ratio outside [0, 1].
    """
    counts = {"train": n_train, "val": n_val, "test": n_test}
    if seed < 0 or min(counts.values()) < 0:
        raise ValueError(f"seed and split sizes must be >= 0, got seed={seed}, sizes={counts}")
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f"size must be (H, W) with both >= 16, got {size!r}")
    if not 0.0 <= coarse_ratio <= 1.0:
        raise ValueError(f"coarse_ratio must lie in [0, 1], got {coarse_ratio!r}")
    root = Path(root)
    _prepare_root(root)
    h, w = int(size[0]), int(size[1])
    args = {"seed": seed, **{f"n_{k}": v for k, v in counts.items()}, "size": [h, w]}
    atomic_write_text(root / _MARKER, json.dumps({**args, "coarse_ratio": coarse_ratio}, indent=2) + "\n")
    for code, split in enumerate(_SPLITS):
        for i in range(counts[split]):
            rng = np.random.default_rng(np.random.SeedSequence([seed, code, i]))
            image, labels = render_scene(rng, (h, w))
            image_id = f"{split}_{i:04d}"
            atomic_write_bytes(root / "images" / split / f"{image_id}.png", _png_bytes(image))
            write_mask(root / "labels" / split / f"{image_id}.png", labels)
    (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
    scale = min(h, w) / 96.0
    radius = (COARSE_RADIUS[0] * scale, COARSE_RADIUS[1] * scale)
    if n_train > 0:
        corrupt_dataset(
            root / "labels" / "train",
            root / "labels" / "train_coarse",
            ratio=coarse_ratio,
            mode="dilate_erode",
            seed=seed,
            show_progress=False,
            radius=radius,
        )
    info = {
        "num_classes": len(CLASS_NAMES),
        "ignore_index": None,
        "class_names": list(CLASS_NAMES),
        "palette": [list(c) for c in PALETTE],
    }
    atomic_write_text(root / "dataset.yaml", yaml.safe_dump(info, sort_keys=False))
    return root
