"""The audit's gallery (the paper's Fig. 3): for the worst and best scored images, photo, annotation,
teacher prediction and a disagreement map, one PNG each under ``gallery/``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from nlkd.audit.table import AuditTable
from nlkd.data.folder import FolderDataset, collate
from nlkd.plots import new_figure, overlay, save_png

__all__ = ["GalleryItem", "disagreement_map", "render_gallery"]

_DIM = 0.35  # brightness of the photo under the disagreement map
_RED = np.array([230, 20, 20], dtype=np.float32)


def disagreement_map(image: np.ndarray, pred: np.ndarray, target: np.ndarray, ignore_index: int | None) -> np.ndarray:
    """Red where prediction and annotation differ, on a dimmed grey photo; ignored pixels stay dimmed.

    Args:
        image: (H, W, 3) uint8 photo.
        pred, target: (H, W) integer label maps.

    Returns:
        (H, W, 3) uint8.

    >>> m = disagreement_map(np.full((1, 2, 3), 200, np.uint8), np.array([[0, 1]]), np.array([[0, 0]]), None)
    >>> m.tolist()
    [[[70, 70, 70], [230, 20, 20]]]
    """
    image, pred, target = np.asarray(image), np.asarray(pred), np.asarray(target)
    if image.ndim != 3 or image.shape[2] != 3 or pred.shape != image.shape[:2] or target.shape != pred.shape:
        raise ValueError(
            f"need image (H, W, 3) and pred, target (H, W); got {image.shape}, {pred.shape}, {target.shape}"
        )
    grey = image.astype(np.float32).mean(2, keepdims=True) * _DIM
    out = np.repeat(grey, 3, axis=2)
    differ = pred != target
    if ignore_index is not None:
        differ &= target != ignore_index
    out[differ] = _RED
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass
class GalleryItem:
    """One gallery picture: which image, its rank (1 = worst) and the PNG's path relative to the report."""

    kind: str
    rank: int
    index: int
    png: str


def render_gallery(
    table: AuditTable,
    dataset: FolderDataset,
    teachers: Callable[[Tensor, Sequence[str]], Tensor],
    out_dir: Path,
    top: int,
) -> list[GalleryItem]:
    """Draw the ``top`` worst and best scored images into ``out_dir/gallery`` (old pictures removed)."""
    gallery = Path(out_dir) / "gallery"
    gallery.mkdir(parents=True, exist_ok=True)
    for old in [*gallery.glob("worst_*.png"), *gallery.glob("best_*.png")]:
        old.unlink()
    order = [i for i in table.order() if np.isfinite(table.quality[i])]
    n = len(order)
    picks = [("worst", r + 1, order[r]) for r in range(min(top, n))]
    picks += [("best", n - r, order[n - 1 - r]) for r in range(min(top, n))]
    info, q = dataset.info, table.quality
    items = []
    for start in range(0, len(picks), 8):  # predict a few at a time: bounded memory
        chunk = picks[start : start + 8]
        batch = collate([dataset[i] for _, _, i in chunk])
        preds = teachers(batch["image"], batch["id"]).argmax(1).cpu().numpy()
        for (kind, rank, i), pred in zip(chunk, preds):
            image, target = np.asarray(dataset.get_image(i)), np.asarray(dataset.get_mask(i))
            panels = [
                ("photo", image),
                ("annotation", overlay(image, target, info.palette, info.ignore_index)),
                ("teacher prediction", overlay(image, pred, info.palette, info.ignore_index)),
                ("disagreement (red)", disagreement_map(image, pred, target, info.ignore_index)),
            ]
            h, w = image.shape[:2]
            fig = new_figure(12.0, 3.0 * h / max(w, 1) + 0.6)
            for ax, (title, picture) in zip(fig.subplots(1, 4), panels):
                ax.imshow(picture, interpolation="nearest")
                ax.set_title(title, fontsize=9)
                ax.set_xticks([])
                ax.set_yticks([])
            fig.suptitle(
                f"{table.ids[i]} — quality {100 * q[i]:.1f} % (BF {100 * table.bf[i]:.1f} %, "
                f"IoU {100 * table.iou[i]:.1f} %), rank {rank}/{n}",
                fontsize=10,
            )
            name = f"{kind}_{len([it for it in items if it.kind == kind]) + 1:02d}.png"
            save_png(fig, gallery / name, dpi=80)
            items.append(GalleryItem(kind, rank, i, f"gallery/{name}"))
    return items
