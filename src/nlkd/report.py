"""The audit's pictures and page: gallery PNGs (the paper's Fig. 3), figures and ``report.html``.

Everything lands under the audit folder: ``gallery/worst_NN.png`` and ``gallery/best_NN.png`` (photo,
annotation, teacher prediction, disagreement map), ``figures/*.png`` (score histogram, per-class
boundary disagreement, ROC and precision-recall when bad annotations are known) and ``report.html``,
one self-contained page that refers to those files by relative paths (no network, no scripts).
Only the 2 × ``top`` gallery images are decoded and predicted again; nothing else is kept in memory.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from nlkd.audit import AuditTable, Detection
from nlkd.data.folder import FolderDataset, collate
from nlkd.io import atomic_write_bytes, atomic_write_text
from nlkd.plots import overlay, weight_histogram

__all__ = ["GalleryItem", "disagreement_map", "render_gallery", "write_report"]

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


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path, dpi: int = 100) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())


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
            fig = _figure(12.0, 3.0 * h / max(w, 1) + 0.6)
            for ax, (title, picture) in zip(fig.subplots(1, 4), panels):
                ax.imshow(picture, interpolation="nearest")
                ax.set_title(title, fontsize=9)
                ax.set_xticks([])
                ax.set_yticks([])
            fig.suptitle(
                f"{table.ids[i]} — quality {q[i]:.3f} (BF {table.bf[i]:.3f}, IoU {table.iou[i]:.3f}), rank {rank}/{n}",
                fontsize=10,
            )
            name = f"{kind}_{len([it for it in items if it.kind == kind]) + 1:02d}.png"
            _save(fig, gallery / name, dpi=80)
            items.append(GalleryItem(kind, rank, i, f"gallery/{name}"))
    return items


def _class_bars(table: AuditTable, path: Path) -> None:
    d = table.class_disagreement
    seen = np.isfinite(d).sum(0)
    mean = np.where(seen > 0, np.nansum(d, 0) / np.maximum(seen, 1), 0.0)
    fig = _figure(max(6.0, 0.55 * len(table.class_names) + 2), 4.0)
    ax = fig.subplots()
    x = np.arange(len(table.class_names))
    bars = ax.bar(x, mean, color="C3")
    for bar, count in zip(bars, seen):
        ax.annotate(
            f"n={count}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(x, table.class_names, rotation=45, ha="right")
    ax.set_ylabel("mean 1 − BF_c over images")
    ax.set_ylim(0, 1.1)
    ax.set_title("Boundary disagreement per class")
    ax.set_xlabel("n = images where the class has a boundary in annotation or prediction", fontsize=8)
    _save(fig, path)


def _curves(found: Detection, path: Path) -> None:
    fig = _figure(10.0, 4.5)
    roc, pr = fig.subplots(1, 2)
    roc.plot(found.fpr, found.tpr, color="C0", label=f"BFmIoU (AUROC {found.auroc:.3f})")
    roc.plot([0, 1], [0, 1], "--", color="0.6", label="chance")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC: low quality = bad")
    prev = found.n_bad / max(found.n, 1)
    # AP = sum of (R_n - R_n-1) * P_n: precision P_n holds over the recall step (R_n-1, R_n].
    recall, precision = np.r_[0.0, found.recall], np.r_[found.precision[:1], found.precision]
    pr.step(recall, precision, where="pre", color="C0", label=f"BFmIoU (AP {found.average_precision:.3f})")
    pr.axhline(prev, linestyle="--", color="0.6", label=f"chance ({prev:.2f})")
    pr.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.05))
    for ax in (roc, pr):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if ax is roc else "lower left")
    _save(fig, path)


_CSS = """body{font-family:sans-serif;margin:2em;max-width:1250px;color:#222}
img{max-width:100%;border:1px solid #ccc}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}figure{margin:1em 0}
.muted{color:#777}"""


def write_report(
    out_dir: Path,
    table: AuditTable,
    dataset: FolderDataset,
    teachers: Callable[[Tensor, Sequence[str]], Tensor],
    *,
    top: int = 8,
    found: Detection | None = None,
    found_by_labelled: Detection | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write the gallery, the figures and ``out_dir/report.html``; returns the page's path.
    ``found_by_labelled`` (the same ids ranked by labelled share) is shown when some pixels are unlabelled."""
    out_dir = Path(out_dir)
    with torch.no_grad():
        items = render_gallery(table, dataset, teachers, out_dir, top)
    q = table.quality
    groups = {"all images": q}
    if found is not None:
        bad = np.array([i in found.bad_ids for i in table.ids])
        groups = {"known bad": q[bad], "others": q[~bad]}
    weight_histogram(
        groups,
        out_dir / "figures" / "quality_histogram.png",
        "Annotation quality (BFmIoU against the teacher)",
        xlabel="quality (low = suspect)",
    )
    _class_bars(table, out_dir / "figures" / "class_disagreement.png")
    e = html.escape
    rows = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in (meta or {}).items())
    finite = np.isfinite(q)
    parts = [
        f"<h1>Annotation audit</h1><table>{rows}<tr><th>images</th><td>{len(q)} "
        f"({int((~finite).sum())} without valid pixels)</td></tr><tr><th>mean quality</th><td>"
        f"{np.nanmean(q) if finite.any() else float('nan'):.4f}</td></tr></table>"
        '<p>Per-image numbers, worst first: <a href="scores.csv">scores.csv</a>; weights for '
        '<code>nlkd train --teacher-scores</code>: <a href="teacher_scores.csv">teacher_scores.csv</a></p>'
    ]
    if found is not None:
        _curves(found, out_dir / "figures" / "detection.png")
        extra = f" ({len(found.unknown_ids)} listed ids not in this split)" if found.unknown_ids else ""
        parts.append(
            f"<h2>Finding the known-bad annotations</h2><p>Ground truth: {e(found.source)}; "
            f"{found.n_bad} of {found.n} scored images bad{e(extra)}. Low quality = bad: "
            f"<b>AUROC {found.auroc:.3f}</b>, <b>average precision {found.average_precision:.3f}</b> "
            f"(chance {found.n_bad / max(found.n, 1):.3f}).</p>"
            '<figure><img src="figures/detection.png" alt="ROC and precision-recall"></figure>'
        )
        share = found_by_labelled
        if share is not None and np.nanmin(table.labelled, initial=1.0) < 1:  # some pixels are unlabelled
            parts.append(
                "<p>Ranked instead by the share of pixels the annotation leaves unlabelled (no teacher; "
                "coarse polygon labels leave bands and small objects unlabelled): "
                f"AUROC {share.auroc:.3f}, average precision {share.average_precision:.3f}.</p>"
            )
    parts.append(
        '<h2>Scores</h2><figure><img src="figures/quality_histogram.png" alt="quality histogram">'
        '</figure><figure><img src="figures/class_disagreement.png" alt="per-class disagreement">'
        "</figure>"
    )
    for kind, title in (("worst", "Lowest quality (most suspect)"), ("best", "Highest quality")):
        parts.append(f"<h2>{title}</h2>")
        for it in (it for it in items if it.kind == kind):
            i = it.index
            worst = ", ".join(table.worst_classes(i)) or "none"
            parts.append(
                f'<figure><img src="{e(it.png)}" alt="{e(table.ids[i])}"><figcaption>rank {it.rank}: '
                f"<b>{e(table.ids[i])}</b> quality {q[i]:.3f}, BF {table.bf[i]:.3f}, IoU {table.iou[i]:.3f}, "
                f"{100 * table.pixel_disagreement[i]:.1f} % of pixels differ; worst boundaries: "
                f"{e(worst)}</figcaption></figure>"
            )
    body = "\n".join(parts)
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>nlkd audit</title>'
        f"<style>{_CSS}</style></head><body>\n{body}\n"
        '<p class="muted">Written by nlkd audit. Disagreement maps: red = prediction differs from the '
        "annotation; ignored pixels are not marked.</p></body></html>\n"
    )
    path = out_dir / "report.html"
    atomic_write_text(path, page)
    return path
