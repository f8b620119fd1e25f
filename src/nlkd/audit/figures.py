"""The audit's figures (``figures/*.png``): per-class boundary disagreement and the ROC and
precision-recall curves of a detection."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nlkd.audit.detection import Detection
from nlkd.audit.table import AuditTable
from nlkd.plots import new_figure, save_png

__all__ = ["class_bars", "detection_curves"]


def class_bars(table: AuditTable, path: Path) -> None:
    """Mean 1 − BF_c per class over the images where class c has a boundary, with those counts."""
    d = table.class_disagreement
    seen = np.isfinite(d).sum(0)
    mean = np.where(seen > 0, np.nansum(d, 0) / np.maximum(seen, 1), 0.0)
    fig = new_figure(max(6.0, 0.55 * len(table.class_names) + 2), 4.0)
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
    save_png(fig, path)


def detection_curves(found: Detection, path: Path) -> None:
    """ROC and precision-recall curves of ``found`` side by side, with chance lines."""
    fig = new_figure(10.0, 4.5)
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
    save_png(fig, path)
