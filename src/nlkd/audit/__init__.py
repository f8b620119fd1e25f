"""Annotation audit: rank every annotation of a split by how well a teacher's prediction agrees with it.

    nlkd audit --checkpoint runs/teacher/last.pt --data data/camvid --split train --labels train_coarse \\
        --out runs/audit

One streamed pass, batch by batch (:mod:`~nlkd.audit.scoring`), keeps per image only numbers: quality
= BFmIoU (the paper's Eq. 5, low = likely a bad annotation), BF, IoU, the share of valid pixels where
prediction and annotation differ, the share of labelled pixels, and per class the boundary
disagreement 1 − BF_c (NaN where the class has a boundary in neither map). Those numbers form the
:class:`~nlkd.audit.table.AuditTable`; ``progress.csv`` (dataset order, full precision, keyed by
teacher, label files, size and tolerance) is rewritten atomically every ``save_every`` batches and kept
when done: ``--resume`` skips the images in it.

Images whose annotation is known to be bad (:mod:`~nlkd.audit.known_bad`: a ``nlkd corrupt`` manifest
or a list of ids) turn the ranking into a detector (:mod:`~nlkd.audit.detection`: AUROC, average
precision, ROC and precision-recall curves). The judges are :class:`~nlkd.audit.teachers.Teachers`
(one checkpoint or out-of-fold teachers). :mod:`~nlkd.audit.report` draws the gallery
(:mod:`~nlkd.audit.gallery`), the figures (:mod:`~nlkd.audit.figures`) and ``report.html``; the
command (``nlkd.commands.audit``) ties them together.
"""

from __future__ import annotations

from nlkd.audit.detection import Detection, auroc, average_precision, detection, precision_recall_curve, roc_curve
from nlkd.audit.known_bad import known_bad_ids
from nlkd.audit.scoring import BatchScores, audit_batch, audit_dataset, strict_bf_iou
from nlkd.audit.table import PROGRESS_NAME, AuditTable
from nlkd.audit.teachers import Teachers

__all__ = [
    "PROGRESS_NAME",
    "AuditTable",
    "BatchScores",
    "Detection",
    "Teachers",
    "audit_batch",
    "audit_dataset",
    "auroc",
    "average_precision",
    "detection",
    "known_bad_ids",
    "precision_recall_curve",
    "roc_curve",
    "strict_bf_iou",
]
