"""The audit's page: ``report.html`` beside the gallery and the figures it draws.

Everything lands under the audit folder: ``gallery/worst_NN.png`` and ``gallery/best_NN.png`` (photo,
annotation, teacher prediction, disagreement map), ``figures/*.png`` (score histogram, per-class
boundary disagreement, ROC and precision-recall when bad annotations are known) and ``report.html``,
one self-contained page that refers to those files by relative paths (no network, no scripts).
Only the 2 × ``top`` gallery images are decoded and predicted again; nothing else is kept in memory.
A figure the page does not show (``detection.png`` of an earlier run with known-bad ids) is removed.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nlkd.audit.classes import ClassSummary
from nlkd.audit.detection import Detection
from nlkd.audit.figures import class_bars, detection_curves
from nlkd.audit.gallery import GalleryItem, render_gallery
from nlkd.audit.table import AuditTable
from nlkd.data.folder import FolderDataset
from nlkd.io import atomic_write_text
from nlkd.plots import weight_histogram

__all__ = ["write_report"]

_CSS = """body{font-family:sans-serif;margin:2em;max-width:1250px;color:#222}
img{max-width:100%;border:1px solid #ccc}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}figure{margin:1em 0}
.muted{color:#777}"""
_e = html.escape


def write_report(
    out_dir: Path,
    table: AuditTable,
    dataset: FolderDataset,
    teachers: Callable[[Tensor, Sequence[str]], Tensor],
    *,
    top: int = 8,
    found: Detection | None = None,
    found_by_labelled: Detection | None = None,
    found_by_strict: Detection | None = None,
    meta: Mapping[str, Any] | None = None,
    classes: ClassSummary | None = None,
) -> Path:
    """Write the gallery, the figures and ``out_dir/report.html``; returns the page's path.
    ``found_by_strict`` and ``found_by_labelled`` (the same ids ranked by strict quality and by labelled
    share) are shown when some pixels are unlabelled; ``classes``, the per-class table."""
    out_dir = Path(out_dir)
    with torch.no_grad():
        items = render_gallery(table, dataset, teachers, out_dir, top)
    _draw_figures(out_dir / "figures", table, found)
    parts = [_summary_html(table, meta or {})]
    if found is not None:
        parts.append(_detection_html(table, found, found_by_strict, found_by_labelled))
    parts.append(
        '<h2>Scores</h2><figure><img src="figures/quality_histogram.png" alt="quality histogram">'
        '</figure><figure><img src="figures/class_disagreement.png" alt="per-class disagreement">'
        "</figure>"
    )
    if classes is not None:
        parts.append(classes.to_html())
    parts.append(_gallery_html(table, items))
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


def _draw_figures(figures: Path, table: AuditTable, found: Detection | None) -> None:
    """``quality_histogram.png`` (known bad vs others when known), ``class_disagreement.png`` and, with
    ``found``, ``detection.png``; without it an old ``detection.png`` is removed."""
    q = table.quality
    groups = {"all images": q}
    if found is not None:
        bad = np.array([i in found.bad_ids for i in table.ids])
        groups = {"known bad": q[bad], "others": q[~bad]}
    title = "Annotation quality (BFmIoU against the teacher)"
    weight_histogram(groups, figures / "quality_histogram.png", title, xlabel="quality (low = suspect)")
    class_bars(table, figures / "class_disagreement.png")
    if found is not None:
        detection_curves(found, figures / "detection.png")
    else:
        (figures / "detection.png").unlink(missing_ok=True)


def _summary_html(table: AuditTable, meta: Mapping[str, Any]) -> str:
    """The title, the run's settings, the image count and mean quality, links to the CSVs."""
    q = table.quality
    rows = "".join(f"<tr><th>{_e(str(k))}</th><td>{_e(str(v))}</td></tr>" for k, v in meta.items())
    finite = np.isfinite(q)
    return (
        f"<h1>Annotation audit</h1><table>{rows}<tr><th>images</th><td>{len(q)} "
        f"({int((~finite).sum())} without valid pixels)</td></tr><tr><th>mean quality</th><td>"
        f"{100 * np.nanmean(q) if finite.any() else float('nan'):.2f} %</td></tr></table>"
        '<p>Per-image numbers, worst first: <a href="scores.csv">scores.csv</a>; weights for '
        '<code>nlkd train --teacher-scores</code>: <a href="teacher_scores.csv">teacher_scores.csv</a></p>'
    )


def _detection_html(
    table: AuditTable, found: Detection, by_strict: Detection | None, by_labelled: Detection | None
) -> str:
    """How well low quality finds the known-bad ids, and (when some pixels are unlabelled) how well the
    strict quality and the labelled share alone do."""
    extra = f" ({len(found.unknown_ids)} listed ids not in this split)" if found.unknown_ids else ""
    text = (
        f"<h2>Finding the known-bad annotations</h2><p>Ground truth: {_e(found.source)}; "
        f"{found.n_bad} of {found.n} scored images bad{_e(extra)}. Low quality = bad: "
        f"<b>AUROC {found.auroc:.3f}</b>, <b>average precision {found.average_precision:.3f}</b> "
        f"(chance {found.n_bad / max(found.n, 1):.3f}).</p>"
        '<figure><img src="figures/detection.png" alt="ROC and precision-recall"></figure>'
    )
    unlabelled = np.nanmin(table.labelled, initial=1.0) < 1
    if by_strict is not None and unlabelled:
        text += (
            "<p>Ranked instead by the strict quality (<code>strict_quality</code> in scores.csv: unlabelled "
            "pixels count as disagreement, so an unlabelled band along the boundaries no longer raises the "
            f"score): AUROC {by_strict.auroc:.3f}, average precision {by_strict.average_precision:.3f}.</p>"
        )
    if by_labelled is not None and unlabelled:
        text += (
            "<p>Ranked instead by the share of pixels the annotation leaves unlabelled (no teacher; "
            "coarse polygon labels leave bands and small objects unlabelled): "
            f"AUROC {by_labelled.auroc:.3f}, average precision {by_labelled.average_precision:.3f}.</p>"
        )
    return text


def _gallery_html(table: AuditTable, items: Sequence[GalleryItem]) -> str:
    """The worst and the best gallery pictures with their numbers."""
    q, parts = table.quality, []
    for kind, title in (("worst", "Lowest quality (most suspect)"), ("best", "Highest quality")):
        parts.append(f"<h2>{title}</h2>")
        for it in (it for it in items if it.kind == kind):
            i = it.index
            worst = ", ".join(table.worst_classes(i)) or "none"
            parts.append(
                f'<figure><img src="{_e(it.png)}" alt="{_e(table.ids[i])}"><figcaption>rank {it.rank}: '
                f"<b>{_e(table.ids[i])}</b> quality {100 * q[i]:.1f} %, BF {100 * table.bf[i]:.1f} %, "
                f"IoU {100 * table.iou[i]:.1f} %, "
                f"{100 * table.pixel_disagreement[i]:.1f} % of pixels differ; worst boundaries: "
                f"{_e(worst)}</figcaption></figure>"
            )
    return "\n".join(parts)
