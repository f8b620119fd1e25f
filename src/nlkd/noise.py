"""Coarse annotations on demand: boundary noise (dilate/erode), Cityscapes-coarse-like polygons,
Markov boundary noise (:mod:`nlkd.noise_markov`), and :func:`corrupt_dataset`, which writes a
corrupted copy of a label folder plus ``manifest.json``.

Masks are integer class-index maps of shape (H, W); ``ignore_index`` (int or None) marks pixels that
belong to no class. Randomness comes only from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal, get_args

import cv2
import numpy as np
from scipy import ndimage

from nlkd.errors import ConfigError, DataError
from nlkd.io import atomic_write_bytes, atomic_write_text, read_mask, write_mask
from nlkd.noise_markov import check_mask, markov_noise
from nlkd.progress import progress

__all__ = [
    "MODES",
    "MODE_PARAMS",
    "corrupt_dataset",
    "dilate_erode",
    "fine_label_dir",
    "load_manifest",
    "polygon_coarse",
]

Mode = Literal["dilate_erode", "polygon", "markov"]
MODES: tuple[str, ...] = get_args(Mode)
#: Keyword parameters each mode accepts through ``corrupt_dataset(**params)``.
MODE_PARAMS: dict[str, tuple[str, ...]] = {
    "dilate_erode": ("radius",),
    "polygon": ("tolerance_px", "band_px"),
    "markov": ("steps", "expand_prob", "flip_prob", "pixel_flip_prob", "blur_sigma"),
}
MANIFEST_NAME = "manifest.json"


def _default_radius(shape: tuple[int, ...]) -> tuple[float, float]:
    scale = min(shape) / 321.0
    return max(1.0, 6.0 * scale), max(1.0, 10.0 * scale)


def dilate_erode(
    mask: np.ndarray,
    rng: np.random.Generator,
    radius: tuple[float, float] | float | None = None,
    ignore_index: int | None = None,
) -> np.ndarray:
    """Move class boundaries by random grow/shrink steps, as annotators of coarse labels do.

    The NLKD paper (§3.2, "Supervisely Manual Coarse") only says that dilation and erosion are
    performed at random on the fine annotations. Our default follows the setting the issue asks
    for: 6–10 iterations of a 3×3 kernel at 321×321, i.e. a Euclidean disk of radius 6–10 px,
    scaled to the image: ``radius = (6, 10) * min(H, W) / 321`` (each at least 1 px).

    Classes are visited in random order; each draws a radius uniformly from ``radius`` and either
    grows or shrinks (probability 1/2). On the boundary between two classes, the class visited
    first moves it: growing claims the neighbour's pixels within its radius, shrinking gives its
    own pixels within its radius to the nearest other class (Euclidean distance transform). A
    boundary is moved once, so no pixel farther than ``radius[1]`` from a boundary changes, no
    pixel becomes unlabelled, and ignored pixels neither change nor spread.

    Args:
        mask: (H, W) integer class map.
        rng: source of all randomness.
        radius: ``(lo, hi)`` in pixels, ``0 <= lo <= hi`` (a single number means ``(r, r)``);
            None for the scaled default above.
        ignore_index: label of unlabelled pixels, or None.

    Returns:
        (H, W) class map, same dtype as ``mask``.

    Example:
        >>> m = np.zeros((40, 40), np.uint8); m[10:30, 10:30] = 1
        >>> out = dilate_erode(m, np.random.default_rng(0), radius=(3, 3))
        >>> out.shape, sorted(np.unique(out).tolist())
        ((40, 40), [0, 1])
    """
    mask = check_mask(mask, ignore_index)
    if radius is None:
        lo, hi = _default_radius(mask.shape)
    elif isinstance(radius, (int, float)):
        lo = hi = float(radius)
    else:
        lo, hi = (float(r) for r in radius)
    if not 0 <= lo <= hi:
        raise ValueError(f"radius must be (lo, hi) with 0 <= lo <= hi, got {radius!r}")
    valid = np.ones(mask.shape, bool) if ignore_index is None else mask != ignore_index
    classes = np.unique(mask[valid])
    out = mask.copy()
    if classes.size < 2:
        return out
    n = int(classes.max()) + 1
    rank = np.zeros(n, np.int64)
    rank[rng.permutation(classes)] = np.arange(classes.size)
    rad = np.zeros(n)
    rad[classes] = rng.uniform(lo, hi, size=classes.size)
    grows = np.zeros(n, bool)
    grows[classes] = rng.random(classes.size) < 0.5
    pad = int(np.ceil(hi)) + 1
    for a in classes:
        region = mask == a
        rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
        win = (
            slice(max(rows[0] - pad, 0), rows[-1] + pad + 1),
            slice(max(cols[0] - pad, 0), cols[-1] + pad + 1),
        )
        sub, own = mask[win], region[win]
        other = valid[win] & ~own
        if not other.any():
            continue
        # Distance from each pixel to the nearest pixel of another class, and that pixel's index.
        dist, (iy, ix) = ndimage.distance_transform_edt(~other, return_indices=True)
        near = own & (dist <= hi)
        d, b = dist[near], sub[iy[near], ix[near]].astype(np.int64)
        a_first = rank[a] < rank[b]
        moved = np.where(a_first, ~grows[a] & (d <= rad[a]), grows[b] & (d <= rad[b]))
        out_win = out[win]
        ys, xs = np.nonzero(near)
        out_win[ys[moved], xs[moved]] = b[moved]
    return out


def _disk(radius: float) -> np.ndarray:
    r = int(np.floor(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy**2 + xx**2 <= radius**2).astype(np.uint8)


def polygon_coarse(
    mask: np.ndarray,
    rng: np.random.Generator,
    tolerance_px: float | None = None,
    band_px: float | None = None,
    ignore_index: int = 255,
) -> np.ndarray:
    """Cityscapes-coarse-like labels: simplified, jittered polygons separated by an unlabelled band.

    Every connected region (8-connected) of every class is traced (``cv2.findContours``),
    simplified with ``cv2.approxPolyDP(tolerance_px)``, its vertices jittered uniformly by up to
    ``tolerance_px / 2``, and filled; larger regions are drawn first so that enclosed regions stay
    on top. Pixels within about ``band_px / 2`` of a boundary between two classes become
    ``ignore_index`` (a band ``band_px`` wide), as do gaps between polygons. Regions that simplify
    to fewer than 3 vertices or are narrower than the band (thin poles, small blobs) vanish into
    the ignore label, much as in Cityscapes' coarse annotations. Pixels that were ``ignore_index``
    stay ignored.

    Defaults scale with the image: ``tolerance_px = max(1, 0.015 * min(H, W))`` and
    ``band_px = max(2, 0.02 * min(H, W))`` (about 15 px and 20 px at 1024×2048).

    Args:
        mask: (H, W) integer class map.
        rng: source of the vertex jitter.
        tolerance_px: polygon simplification tolerance in pixels (> 0).
        band_px: width of the unlabelled band along class boundaries (>= 0; 0 for none).
        ignore_index: label written for unlabelled pixels; must fit the mask's dtype.

    Returns:
        (H, W) class map, same dtype as ``mask``.
    """
    mask = check_mask(mask, ignore_index)
    info = np.iinfo(mask.dtype)
    if ignore_index is None or not info.min <= ignore_index <= info.max:
        raise ValueError(f"ignore_index must be an int that fits {mask.dtype}, got {ignore_index!r}")
    side = min(mask.shape)
    tol = max(1.0, 0.015 * side) if tolerance_px is None else float(tolerance_px)
    band = max(2.0, 0.02 * side) if band_px is None else float(band_px)
    if tol <= 0 or band < 0:
        raise ValueError(f"need tolerance_px > 0 and band_px >= 0, got {tolerance_px!r}, {band_px!r}")
    h, w = mask.shape
    valid = mask != ignore_index
    polygons: list[tuple[float, int, np.ndarray]] = []
    for c in np.unique(mask[valid]):
        binary = (mask == c).astype(np.uint8)
        contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
        for contour, (_, _, _, parent) in zip(contours, hierarchy[0]):
            if parent != -1:  # a hole; what fills it is another region
                continue
            approx = cv2.approxPolyDP(contour, tol, True).reshape(-1, 2)
            jittered = approx + rng.uniform(-tol / 2, tol / 2, size=approx.shape)
            on_edge = (approx == 0) | (approx == (w - 1, h - 1))  # keep image-border vertices there
            approx = np.where(on_edge, approx, jittered)
            if len(approx) >= 3:
                polygons.append((cv2.contourArea(contour), int(c), np.round(approx).astype(np.int32)))
    canvas = np.full(mask.shape, -1, np.int32)
    for _, c, pts in sorted(polygons, key=lambda p: -p[0]):
        cv2.fillPoly(canvas, [pts], c)
    if band > 0:
        kernel = _disk(max(1.0, band / 2))
        labelled = canvas >= 0
        top = cv2.dilate(np.where(labelled, canvas, -1).astype(np.float32), kernel)
        bottom = cv2.erode(np.where(labelled, canvas, 2**24).astype(np.float32), kernel)
        canvas[(top >= 0) & (top != bottom)] = -1
    canvas[~valid] = -1
    return np.where(canvas >= 0, canvas, ignore_index).astype(mask.dtype)


def _image_rng(seed: int, image_id: str) -> np.random.Generator:
    """A generator that depends only on (seed, image id), not on file order."""
    words = np.frombuffer(hashlib.sha256(image_id.encode("utf-8")).digest()[:16], dtype="<u4")
    return np.random.default_rng(np.random.SeedSequence([seed, *words.tolist()]))


def _check_options(ratio: float, mode: str, seed: int, params: dict[str, Any]) -> None:
    if mode not in MODES:
        raise ConfigError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if not (isinstance(ratio, (int, float)) and 0.0 <= ratio <= 1.0):
        raise ConfigError(f"ratio: expected a number in [0, 1], got {ratio!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    unknown = sorted(set(params) - set(MODE_PARAMS[mode]))
    if unknown:
        allowed = ", ".join(MODE_PARAMS[mode])
        raise ConfigError(f"{', '.join(unknown)}: not a parameter of mode {mode!r} (allowed: {allowed})")


def _check_folders(src: Path, dst: Path) -> None:
    if not src.is_dir():
        raise DataError(f"{src}: source label folder not found")
    s, d = src.resolve(), dst.resolve()
    if d == s or s in d.parents:
        raise DataError(f"{dst}: destination must not be the source folder {src} or lie inside it")
    if d.exists() and not d.is_dir():
        raise DataError(f"{dst}: destination exists and is not a folder")
    if d.is_dir() and any(d.iterdir()) and not (d / MANIFEST_NAME).is_file():
        raise DataError(f"{dst}: destination is not empty and has no {MANIFEST_NAME}; choose a new folder or delete it")


def corrupt_dataset(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    ratio: float,
    mode: Mode,
    seed: int,
    ignore_index: int | None = None,
    show_progress: bool = True,
    **params: Any,
) -> dict[str, Any]:
    """Write a copy of label folder ``src`` to ``dst`` with a random ``ratio`` of masks corrupted.

    ``round(ratio * N)`` of the N ``src/*.png`` masks, chosen by ``seed`` among the sorted ids, are
    corrupted with :func:`dilate_erode` (``mode="dilate_erode"``, params: ``radius``) or
    :func:`polygon_coarse` (``mode="polygon"``, params: ``tolerance_px``, ``band_px``; the ignore
    label is ``ignore_index``, 255 if None) or :func:`nlkd.noise_markov.markov_noise` (``mode="markov"``,
    params: ``steps``, ``expand_prob``, ``flip_prob``, ``pixel_flip_prob``, ``blur_sigma``); the others
    are copied byte for byte. Each image's randomness depends only on ``(seed, id)``, so the same call
    writes the same bytes. ``src`` is never written. ``dst`` may be new, empty, or an earlier output
    (it has a manifest); stale ``*.png`` in an earlier output are removed. ``dst/manifest.json`` is written last.
    Progress goes to stderr (:mod:`nlkd.progress`) unless ``show_progress`` is False.

    Returns:
        The manifest: mode, ratio, seed, ignore_index (the one used), params, corrupted (sorted ids of
        the masks chosen for corruption), unchanged (those of them the corruption left as they were, e.g.
        one class only or every boundary behind an unlabelled band wider than the radius; copied byte for
        byte), n_images, source (absolute path of ``src``), source_relative (``src`` relative to ``dst``).

    Raises:
        DataError: missing/empty source, dst equal to or inside src, non-empty foreign dst,
            unreadable mask. ConfigError: bad ratio, mode, seed or params.
    """
    src, dst = Path(src), Path(dst)
    _check_options(ratio, mode, seed, params)
    _check_folders(src, dst)
    ids = sorted(p.stem for p in src.glob("*.png"))
    if not ids:
        raise DataError(f"{src}: no *.png masks found")
    n_bad = round(ratio * len(ids))
    picked = np.random.default_rng(seed).permutation(len(ids))[:n_bad]
    corrupted = sorted(ids[i] for i in picked)
    chosen = set(corrupted)
    used_ignore = 255 if (mode == "polygon" and ignore_index is None) else ignore_index
    dst.mkdir(parents=True, exist_ok=True)
    (dst / MANIFEST_NAME).unlink(missing_ok=True)  # a half-rewritten folder must not look finished
    for stale in dst.glob("*.png"):
        if stale.stem not in ids:
            stale.unlink()
    unchanged = []
    for image_id in progress(ids, f"corrupt ({mode})", unit="mask", show=show_progress):
        path = src / f"{image_id}.png"
        if image_id not in chosen:
            atomic_write_bytes(dst / path.name, path.read_bytes())
        elif not _write_corrupted(path, dst, mode, _image_rng(int(seed), image_id), used_ignore, params):
            unchanged.append(image_id)
    manifest = {
        "mode": mode,
        "ratio": float(ratio),
        "seed": int(seed),
        "ignore_index": used_ignore,
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(params.items())},
        "corrupted": corrupted,
        "unchanged": unchanged,
        "n_images": len(ids),
        "source": str(src.resolve()),
        **_relative_source(src, dst),
    }
    atomic_write_text(dst / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _write_corrupted(
    path: Path, dst: Path, mode: Mode, rng: np.random.Generator, ignore_index: int | None, params: dict[str, Any]
) -> bool:
    """Write the mask at ``path`` corrupted by ``mode`` to ``dst``; False (and a byte copy written) when the
    corruption left it unchanged, e.g. every boundary behind an unlabelled band wider than the radius."""
    mask = read_mask(path)
    corrupt = {"dilate_erode": dilate_erode, "polygon": polygon_coarse, "markov": markov_noise}[mode]
    try:
        noisy = corrupt(mask, rng, ignore_index=ignore_index, **params)
    except ValueError as e:
        raise ConfigError(f"{mode} parameters {params} (on {path}): {e}") from None
    if np.array_equal(noisy, mask):
        atomic_write_bytes(dst / path.name, path.read_bytes())
        return False
    try:
        write_mask(dst / path.name, noisy)
    except ValueError as e:
        raise DataError(f"{path}: cannot write corrupted mask ({e})") from None
    return True


def _relative_source(src: Path, dst: Path) -> dict[str, str]:
    """``source_relative``: the fine masks' folder relative to ``dst`` (survives moving the data root)."""
    try:
        return {"source_relative": Path(os.path.relpath(src.resolve(), dst.resolve())).as_posix()}
    except ValueError:  # e.g. another drive on Windows: only the absolute path
        return {}


def fine_label_dir(label_dir: str | os.PathLike[str]) -> Path:
    """The folder of fine (uncorrupted) masks a corrupted label folder was made from: its manifest's
    ``source_relative`` (from ``label_dir``) if that exists, else its absolute ``source``.

    Raises:
        DataError: no manifest, or neither folder exists (one line naming the manifest and the path).
    """
    label_dir = Path(label_dir)
    manifest = load_manifest(label_dir)
    if manifest is None:
        raise DataError(f"{label_dir}: no {MANIFEST_NAME}, so no fine masks are known (make it with `nlkd corrupt`)")
    candidates = [label_dir / manifest["source_relative"]] if manifest.get("source_relative") else []
    candidates += [Path(manifest["source"])] if manifest.get("source") else []
    for folder in candidates:
        if folder.is_dir():
            return folder
    where = ", ".join(str(c) for c in candidates) or "no source recorded"
    raise DataError(f"{label_dir / MANIFEST_NAME}: the fine masks are missing ({where}); restore that folder")


def load_manifest(label_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Read ``label_dir/manifest.json`` written by :func:`corrupt_dataset`; None if there is none.

    Raises:
        DataError: the manifest exists but is not valid JSON or lacks a ``corrupted`` id list.
    """
    path = Path(label_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("corrupted"), list):
        raise DataError(f"{path}: manifest must be a JSON object with a 'corrupted' list of ids")
    return manifest
