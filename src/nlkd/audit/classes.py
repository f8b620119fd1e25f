"""Which class's annotations disagree with the teacher: per-class IoU and BF over the audited images.

The same definitions as ``nlkd eval``'s per-class table (:class:`nlkd.metrics.SegmentationMetrics`),
with the annotation as the target and the teacher's prediction as the prediction: IoU_c from the pixel
counts summed over the images (as mIoU is), BF_c as the mean over the images where class c has a
boundary in either map (as BF is the mean over images). Written as ``classes.csv`` (fractions) and as a
table of ``report.html`` (percent), each BF with its tolerance in pixels (``bf@2px``, ``BF@2px``).
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass

import numpy as np

from nlkd.audit.table import AuditTable

__all__ = ["ClassSummary", "class_summary"]


@dataclass
class ClassSummary:
    """Per class c: ``iou`` (C,), ``bf`` (C,) at ``tolerance`` px (NaN where undefined), ``n_images`` (C,):
    the images where class c is in the annotation or the prediction, ``n_boundary`` (C,): those where it
    has a boundary in either (what ``bf`` averages over)."""

    names: list[str]
    iou: np.ndarray
    bf: np.ndarray
    n_images: np.ndarray
    n_boundary: np.ndarray
    tolerance: float

    @property
    def bf_name(self) -> str:
        return f"bf@{self.tolerance:g}px"

    def order(self) -> list[int]:
        """Classes worst boundary first (lowest BF; classes without a BF last)."""
        return sorted(range(len(self.names)), key=lambda c: (np.isnan(self.bf[c]), self.bf[c], c))

    def to_csv(self) -> str:
        """``class, iou, bf@θpx, images, images_with_boundary``; fractions to 6 decimals, worst BF first."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["class", "iou", self.bf_name, "images", "images_with_boundary"])
        for c in self.order():
            w.writerow([self.names[c], f"{self.iou[c]:.6f}", f"{self.bf[c]:.6f}", self.n_images[c], self.n_boundary[c]])
        return buf.getvalue()

    def to_html(self) -> str:
        """A ``<h2>`` and a table in percent, worst boundary first."""

        def pct(x: float) -> str:
            return "n/a" if np.isnan(x) else f"{100 * x:.2f}"

        rows = "".join(
            f"<tr><td>{html.escape(self.names[c])}</td><td>{pct(self.iou[c])}</td><td>{pct(self.bf[c])}</td>"
            f"<td>{self.n_images[c]}</td></tr>"
            for c in self.order()
        )
        return (
            "<h2>Per class</h2><p>Agreement of the teacher with the annotations, per class (percent; "
            'also <a href="classes.csv">classes.csv</a>): IoU over all audited pixels, BF averaged over the '
            f"images where the class has a boundary; worst boundary first.</p><table><tr><th>class</th>"
            f"<th>IoU</th><th>BF@{self.tolerance:g}px</th><th>images</th></tr>{rows}</table>"
        )


def class_summary(table: AuditTable, tolerance: float) -> ClassSummary:
    """Per-class IoU and BF of the scored images of ``table`` (audited at ``tolerance`` px)."""
    scored = np.isfinite(table.class_union).all(1)
    inter = table.class_intersection[scored].sum(0)
    union = table.class_union[scored].sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    bf_c = 1 - table.class_disagreement[scored]  # NaN where the class has a boundary in neither map
    n_boundary = np.isfinite(bf_c).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        bf = np.where(n_boundary > 0, np.nansum(bf_c, 0) / np.maximum(n_boundary, 1), np.nan)
    n_images = (table.class_union[scored] > 0).sum(0)
    return ClassSummary(list(table.class_names), iou, bf, n_images, n_boundary, float(tolerance))
