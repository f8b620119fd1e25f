"""How well the ranking finds known-bad annotations: AUROC, average precision, ROC and
precision-recall curves (scikit-learn's, with ties averaged as ranks and as thresholds)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn import metrics
from sklearn.exceptions import UndefinedMetricWarning

from nlkd.audit.table import AuditTable

__all__ = ["Detection", "auroc", "average_precision", "detection", "precision_recall_curve", "roc_curve"]


def _check_scores(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s, y = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(positive).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores and positive must have the same length, got {s.shape} and {y.shape}")
    if y.dtype != bool:
        raise ValueError(f"positive must be a bool array, got dtype {y.dtype}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite; drop images without a score first")
    return s, y


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting 1/2.

    Args:
        scores: (N,) finite, higher = more likely positive (for the audit: ``-quality``).
        positive: (N,) bool.

    Returns:
        AUROC (``sklearn.metrics.roc_auc_score``); NaN without both positives and negatives.

    >>> auroc(np.array([0.9, 0.8, 0.8, 0.1]), np.array([True, True, False, False]))
    0.875
    """
    s, y = _check_scores(scores, positive)
    if y.all() or not y.any():
        return float("nan")
    return float(metrics.roc_auc_score(y, s))


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Average precision: the mean over positives of the precision at the positive's rank.

    Tied scores form one threshold: each positive in a tie group gets the precision of the whole
    group; without ties this is the plain sum over ranks (``sklearn.metrics.average_precision_score``).

    Args:
        scores: (N,) finite, higher = more likely positive.
        positive: (N,) bool.

    Returns:
        AP in [0, 1]; NaN without positives.

    >>> average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, False, True, False]))
    0.8333333333333333
    """
    s, y = _check_scores(scores, positive)
    if not y.any():
        return float("nan")
    return float(metrics.average_precision_score(y, s))


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr)``, each (T + 1,), from (0, 0) through every distinct threshold (highest
    first); a rate whose class has no member is NaN."""
    s, y = _check_scores(scores, positive)
    with warnings.catch_warnings():  # one class only: sklearn warns, the other rate is NaN
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        fpr, tpr, _ = metrics.roc_curve(y, s, drop_intermediate=False)
    return fpr, tpr


def precision_recall_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision-recall points ``(precision, recall)``, each (T,), one per distinct threshold, highest
    threshold first (recall rising; recall 1 without positives, as in scikit-learn)."""
    s, y = _check_scores(scores, positive)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        precision, recall, _ = metrics.precision_recall_curve(y, s, drop_intermediate=False)
    return precision[:-1][::-1].copy(), recall[:-1][::-1].copy()  # sklearn: lowest threshold first, then (1, 0)


@dataclass
class Detection:
    """How well low quality finds the known-bad annotations (images without a score left out)."""

    source: str
    n: int
    n_bad: int
    auroc: float
    average_precision: float
    fpr: np.ndarray
    tpr: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    bad_ids: set[str]
    unknown_ids: list[str]


def detection(table: AuditTable, bad: set[str], source: str, by: str = "quality") -> Detection:
    """Score a ranking of ``table`` as a detector of the ``bad`` ids: suspicion = −quality, or with
    ``by="strict_quality"`` −(BFmIoU with unlabelled pixels as disagreement), or with ``by="labelled"``
    −(share of labelled pixels), the teacher-free sign of a coarse annotation."""
    scores = {"quality": table.quality, "strict_quality": table.strict_quality, "labelled": table.labelled}
    if by not in scores:
        raise ValueError(f"by must be one of {', '.join(scores)}, got {by!r}")
    q = scores[by]
    keep = np.isfinite(q)
    y = np.array([i in bad for i in table.ids])[keep]
    s = -q[keep]
    unknown = sorted(bad - set(table.ids))
    return Detection(
        source,
        int(keep.sum()),
        int(y.sum()),
        auroc(s, y),
        average_precision(s, y),
        *roc_curve(s, y),
        *precision_recall_curve(s, y),
        bad & set(table.ids),
        unknown,
    )
