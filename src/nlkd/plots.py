"""Figures: coloured masks, training curves, prediction grids and weight histograms.

Drawing uses matplotlib's object API with the Agg canvas (no pyplot, so no global backend switch and
no figure registry); every PNG is rendered in memory and written with :func:`nlkd.io.atomic_write_bytes`.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nlkd.errors import DataError
from nlkd.io import atomic_write_bytes

__all__ = ["colorize", "new_figure", "overlay", "plot_curves", "prediction_grid", "save_png", "weight_histogram"]

RGB = tuple[int, int, int]

_DPI = 100
# (panel title, y label, ((metrics.jsonl key, legend label), ...))
_CURVE_PANELS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("Loss", "loss", (("train_loss", "train loss"), ("val_loss", "val loss"))),
    ("Validation", "score", (("val_miou", "mIoU"), ("val_bf", "boundary F1"))),
    (
        "Weighting",
        "value",
        (("lambda", "λ"), ("w_student", "mean student weight"), ("w_teacher", "mean teacher weight")),
    ),
)


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure on its own Agg canvas (no pyplot), constrained layout."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, out_png: Path, dpi: int = _DPI) -> None:
    """Write ``fig`` to ``out_png`` atomically (temp file + rename)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(out_png, buf.getvalue())


def _palette_array(palette: Sequence[RGB]) -> np.ndarray:
    lut = np.asarray(palette)
    if lut.ndim != 2 or lut.shape[1] != 3 or len(lut) == 0:
        raise ValueError(f"palette must be a non-empty sequence of (r, g, b) triples, got shape {lut.shape}")
    if lut.min() < 0 or lut.max() > 255:
        raise ValueError(f"palette values must lie in 0..255, got {lut.min()}..{lut.max()}")
    return lut.astype(np.uint8)


def _valid_pixels(mask: np.ndarray, ignore_index: int | None) -> np.ndarray:
    return np.ones(mask.shape, dtype=bool) if ignore_index is None else mask != ignore_index


def colorize(mask: np.ndarray, palette: Sequence[RGB], ignore_index: int | None) -> np.ndarray:
    """Paint a class-index mask with the palette's colours; ``ignore_index`` pixels become black.

    Args:
        mask: integer class indices, shape (H, W).
        palette: one (r, g, b) colour per class, values 0..255.
        ignore_index: label of pixels to leave black, or None.

    Returns:
        RGB image, shape (H, W, 3), dtype uint8.

    Raises:
        ValueError: ``mask`` is not an (H, W) integer array, or holds a class without a colour.

    >>> colorize(np.array([[0, 1], [255, 1]]), [(0, 0, 0), (200, 10, 10)], ignore_index=255)[..., 0]
    array([[  0, 200],
           [  0, 200]], dtype=uint8)
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == bool):
        raise ValueError(f"mask must be an (H, W) integer array, got shape {mask.shape} dtype {mask.dtype}")
    lut = _palette_array(palette)
    valid = _valid_pixels(mask, ignore_index)
    labels = mask[valid].astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(lut)):
        raise ValueError(
            f"mask holds classes {labels.min()}..{labels.max()} but the palette has {len(lut)} colours "
            f"(ignore_index={ignore_index})"
        )
    out = np.zeros((*mask.shape, 3), dtype=np.uint8)
    out[valid] = lut[labels]
    return out


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    palette: Sequence[RGB],
    ignore_index: int | None,
    alpha: float = 0.5,
) -> np.ndarray:
    """Blend a coloured mask over a photo: ``(1 - alpha) * image + alpha * colour``.

    Args:
        image: RGB photo, shape (H, W, 3), dtype uint8.
        mask: integer class indices, shape (H, W).
        palette: one (r, g, b) colour per class.
        ignore_index: pixels with this label keep the photo unchanged; None for no ignore label.
        alpha: opacity of the mask colour in [0, 1].

    Returns:
        RGB image, shape (H, W, 3), dtype uint8.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 array, got shape {image.shape} dtype {image.dtype}")
    if np.shape(mask) != image.shape[:2]:
        raise ValueError(f"mask shape {np.shape(mask)} does not match image shape {image.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    colour = colorize(mask, palette, ignore_index).astype(np.float32)
    out = image.astype(np.float32)
    valid = _valid_pixels(np.asarray(mask), ignore_index)
    out[valid] = (1.0 - alpha) * out[valid] + alpha * colour[valid]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """Read ``metrics.jsonl``; an unterminated last line (a write cut short) is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: metrics file not found") from None
    lines = text.split("\n")
    records = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if lineno == len(lines):  # no newline after it: a partial final write
                break
            raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.5")


def plot_curves(metrics_jsonl: Path, out_png: Path) -> None:
    """Draw a run's curves from its ``metrics.jsonl``: loss; val mIoU and BF; λ and mean weights.

    Each line of the file is one epoch's JSON object with any of ``epoch``, ``train_loss``,
    ``val_loss``, ``val_miou``, ``val_bf``, ``lambda``, ``w_student``, ``w_teacher``. Missing, null or
    non-finite values are skipped (the line joins the points that exist); without ``epoch`` the
    1-based line number is used.

    Raises:
        DataError: the file is missing or a line (other than an unfinished last one) is not a JSON object.
    """
    records = _read_metrics(Path(metrics_jsonl))
    fig = new_figure(15.0, 4.0)
    axes = fig.subplots(1, len(_CURVE_PANELS), squeeze=False)[0]
    for ax, (title, ylabel, series) in zip(axes, _CURVE_PANELS):
        drawn = False
        for key, label in series:
            points = []
            for i, rec in enumerate(records, start=1):
                y = _number(rec.get(key))
                x = _number(rec.get("epoch"))
                if y is not None:
                    points.append((i if x is None else x, y))
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", markersize=3, label=label)
                drawn = True
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend()
        else:
            _no_data(ax)
    save_png(fig, Path(out_png))


def prediction_grid(
    rows: list[dict[str, Any]],
    out_png: Path,
    palette: Sequence[RGB],
    ignore_index: int | None,
    title: str | None = None,
) -> None:
    """Compare methods on images: one row per image; columns photo, ground truth, one per method.

    Args:
        rows: each a dict with ``image`` (H, W, 3) uint8, ``target`` (H, W) int and ``preds``, a
            dict from method name to an (H, W) int prediction; an optional ``label`` (str) is written
            left of the row. Methods are the union of all rows' names in order of first appearance; a
            row without some method leaves that cell empty.
        out_png: where to write the PNG.
        palette: one (r, g, b) colour per class.
        ignore_index: label drawn as the bare photo, or None.
        title: figure title.
    """
    if not rows:
        raise ValueError("rows must hold at least one image, got an empty list")
    for r, row in enumerate(rows):
        missing = {"image", "target", "preds"} - set(row)
        if missing:
            raise ValueError(f"rows[{r}] lacks keys {sorted(missing)}")
    methods: list[str] = list(dict.fromkeys(name for row in rows for name in row["preds"]))
    columns = ["image", "ground truth", *methods]
    h, w = np.shape(rows[0]["image"])[:2]
    cell = 2.8
    fig = new_figure(cell * len(columns), cell * h / max(w, 1) * len(rows) + (0.5 if title else 0.3))
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    for r, row in enumerate(rows):
        image = row["image"]
        cells = [image, overlay(image, row["target"], palette, ignore_index)]
        for name in methods:
            pred = row["preds"].get(name)
            cells.append(None if pred is None else overlay(image, pred, palette, ignore_index))
        for c, (ax, picture) in enumerate(zip(axes[r], cells)):
            ax.set_xticks([])
            ax.set_yticks([])
            if picture is None:
                _no_data(ax)
            else:
                ax.imshow(picture, interpolation="nearest")
            if r == 0:
                ax.set_title(columns[c], fontsize=10)
        if row.get("label") is not None:
            axes[r][0].set_ylabel(str(row["label"]), fontsize=9)
    if title:
        fig.suptitle(title)
    save_png(fig, Path(out_png))


def weight_histogram(
    scores_by_group: dict[str, np.ndarray],
    out_png: Path,
    title: str,
    xlabel: str = "per-image weight",
) -> None:
    """Overlaid histograms of per-image scores, one per group, on shared bins, with dashed medians.

    Args:
        scores_by_group: group name -> scores of any shape (flattened), e.g. ``{"corrupted": (N1,),
            "clean": (N2,)}`` teacher weights. Non-finite values are dropped; empty groups are listed
            in the legend with n=0.
        out_png: where to write the PNG.
        title: figure title.
        xlabel: x-axis label.
    """
    if not scores_by_group:
        raise ValueError("scores_by_group must name at least one group, got an empty dict")
    groups = {}
    for name, scores in scores_by_group.items():
        values = np.asarray(scores, dtype=np.float64).ravel()
        groups[name] = values[np.isfinite(values)]
    everything = np.concatenate(list(groups.values()))
    fig = new_figure(7.0, 4.5)
    ax = fig.subplots()
    if everything.size:
        lo, hi = float(everything.min()), float(everything.max())
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, 31)
        for i, (name, values) in enumerate(groups.items()):
            colour = f"C{i % 10}"
            if values.size:
                median = float(np.median(values))
                label = f"{name} (n={values.size}, median {median:.3g})"
                ax.hist(values, bins=bins, alpha=0.5, color=colour, label=label)
                ax.axvline(median, color=colour, linestyle="--", linewidth=1.5)
            else:
                ax.plot([], [], color=colour, label=f"{name} (n=0)")
        ax.legend()
    else:
        _no_data(ax)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    ax.grid(alpha=0.3)
    save_png(fig, Path(out_png))
