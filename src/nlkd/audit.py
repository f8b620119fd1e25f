"""Annotation audit: rank every annotation of a split by how well a teacher's prediction agrees with it.

    nlkd audit --checkpoint runs/teacher/last.pt --data data/camvid --split train --labels train_coarse \\
        --out runs/audit

One streamed pass, batch by batch, keeps per image only numbers: quality = BFmIoU (the paper's Eq. 5,
low = likely a bad annotation), BF, IoU, the share of valid pixels where prediction and annotation
differ, and per class the boundary disagreement 1 − BF_c (NaN where the class has a boundary in
neither map). Those numbers go to ``progress.csv`` (dataset order, full precision, keyed by teacher,
label files, size and tolerance), rewritten atomically every ``save_every`` batches and kept when done:
``--resume`` skips the images in it (resuming a finished audit only redraws the report).

Images whose annotation is known to be bad (a ``nlkd corrupt`` manifest or a list of ids) turn the
ranking into a detector, scored with :func:`auroc` and :func:`average_precision` (plain numpy: ties
are averaged, as ranks and as thresholds). :func:`run_audit` writes ``scores.csv``,
``teacher_scores.csv`` (``nlkd score`` format), ``audit.json`` and, via :mod:`nlkd.report`, the
gallery, the figures and ``report.html``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Subset
from tqdm import tqdm

from nlkd.data.folder import FolderDataset, make_loader
from nlkd.errors import DataError
from nlkd.io import atomic_write_text

# ``metrics`` exposes per-image BF only; the per-class counts come from its private counter so that
# 1 − BF_c uses exactly the matching behind the ``bf`` column (tests check mean_c BF_c == bf).
from nlkd.metrics import segmentation_stats
from nlkd.teacher import ScoreTable, cache_key

__all__ = [
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
    "run_audit",
]

PROGRESS_NAME = "progress.csv"
_FIXED = ("id", "quality", "bf", "iou", "worst_classes", "pixel_disagreement", "labelled", "image", "mask")
_CLASS_PREFIX = "boundary_disagreement:"


# ----------------------------------------------------------------------------- per-batch numbers


@dataclass
class BatchScores:
    """Per-image audit numbers of a batch: ``bf``, ``iou``, ``pixel_disagreement``, ``labelled`` (B,) and
    ``class_disagreement`` (B, C), float64 numpy; NaN where undefined."""

    bf: np.ndarray
    iou: np.ndarray
    pixel_disagreement: np.ndarray
    class_disagreement: np.ndarray
    labelled: np.ndarray


@torch.no_grad()
def audit_batch(
    pred: Tensor, target: Tensor, num_classes: int, tolerance: float = 2.0, ignore_index: int | None = None
) -> BatchScores:
    """Audit numbers of a batch of predictions against annotations.

    Args:
        pred: (B, H, W) integer predicted labels.
        target: (B, H, W) integer annotation; ``ignore_index`` pixels count nowhere.
        num_classes: C.
        tolerance: BF match distance in pixels (strictly below).

    Returns:
        :class:`BatchScores`; ``class_disagreement[b, c] = 1 − BF_c`` (NaN when class c has a boundary
        in neither map), ``pixel_disagreement`` = share of valid pixels with ``pred != target``.

    >>> t = torch.tensor([[[0, 0, 1, 1]] * 4])
    >>> s = audit_batch(torch.zeros_like(t), t, num_classes=2)
    >>> s.pixel_disagreement.tolist(), s.class_disagreement.tolist()
    ([0.5], [[1.0, 1.0]])
    """
    stats = segmentation_stats(pred, target, num_classes, tolerance, ignore_index)
    cm = stats.confusion.double()  # (B, C, C)
    total = cm.sum((1, 2))
    agree = cm.diagonal(dim1=1, dim2=2).sum(1)
    pixel = torch.where(total > 0, 1 - agree / total.clamp(min=1), torch.full_like(total, float("nan")))
    labelled = total / max(target[0].numel(), 1)
    bf, iou, class_bf = stats.bf, stats.iou, stats.class_bf
    numpy = (t.cpu().numpy() for t in (bf, iou, pixel, 1 - class_bf, labelled))
    return BatchScores(*numpy)


# ----------------------------------------------------------------------------- the per-image table


@dataclass
class AuditTable:
    """Per-image audit numbers in dataset order: ``bf``, ``iou``, ``pixel_disagreement``, ``labelled`` (N,),
    ``class_disagreement`` (N, C). NaN for images not scored yet; all but ``labelled`` (then 0) are NaN
    for images without valid pixels too."""

    ids: list[str]
    image_paths: list[str]
    mask_paths: list[str]
    class_names: list[str]
    bf: np.ndarray
    iou: np.ndarray
    pixel_disagreement: np.ndarray
    class_disagreement: np.ndarray
    labelled: np.ndarray

    @classmethod
    def empty(cls, ids: list[str], image_paths: list[str], mask_paths: list[str], class_names: list[str]) -> AuditTable:
        """A table of NaNs (nothing scored yet) over the given images and classes."""
        n, c = len(ids), len(class_names)
        nan = np.full((n,), np.nan)
        return cls(
            ids, image_paths, mask_paths, class_names, nan, nan.copy(), nan.copy(), np.full((n, c), np.nan), nan.copy()
        )

    @classmethod
    def for_dataset(cls, dataset: FolderDataset) -> AuditTable:
        """An empty table over ``dataset``'s images."""
        s = dataset.samples
        return cls.empty(
            [x.id for x in s],
            [str(x.image_path) for x in s],
            [str(x.mask_path) for x in s],
            list(dataset.info.class_names),
        )

    @property
    def quality(self) -> np.ndarray:
        """(N,) BFmIoU = (BF + IoU) / 2; low = the annotation disagrees with the teacher."""
        return (self.bf + self.iou) / 2

    def order(self) -> list[int]:
        """Indices worst first: ascending quality, ties by id, images without a score last."""
        q = self.quality
        return sorted(range(len(self.ids)), key=lambda i: (math.isnan(q[i]), q[i], self.ids[i]))

    def worst_classes(self, i: int, n: int = 3) -> list[str]:
        """Names of image ``i``'s ``n`` classes with the largest boundary disagreement (> 0)."""
        d = self.class_disagreement[i]
        ranked = sorted((c for c in range(len(d)) if d[c] > 0), key=lambda c: (-d[c], c))
        return [self.class_names[c] for c in ranked[:n]]

    def header(self) -> list[str]:
        return [*_FIXED, *(_CLASS_PREFIX + name for name in self.class_names)]

    def to_csv(self, rows: Sequence[int] | None = None, key: str | None = None, exact: bool = False) -> str:
        """CSV of ``rows`` (default: all, worst first), numbers to 6 decimals or, when ``exact``, to full
        precision (they read back bit for bit); a ``# key=`` line first when ``key`` is given."""
        buf = io.StringIO()
        if key is not None:
            buf.write(f"# key={key}\n")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.header())
        num = repr if exact else "{:.6f}".format
        q = self.quality
        for i in self.order() if rows is None else rows:
            w.writerow(
                [
                    self.ids[i],
                    *(num(float(v)) for v in (q[i], self.bf[i], self.iou[i])),
                    ";".join(self.worst_classes(i)),
                    num(float(self.pixel_disagreement[i])),
                    num(float(self.labelled[i])),
                    self.image_paths[i],
                    self.mask_paths[i],
                    *(num(float(v)) for v in self.class_disagreement[i]),
                ]
            )
        return buf.getvalue()

    def load_rows(self, path: Path, key: str | None) -> np.ndarray:
        """Fill in the rows of a CSV written by :meth:`to_csv` (ids not in the table are skipped);
        returns the (N,) bool mask of rows filled. A different ``key`` or header is a DataError."""
        lines = path.read_text(encoding="utf-8").splitlines()
        found = lines[0][len("# key=") :] if lines and lines[0].startswith("# key=") else None
        if key is not None and found != key:
            raise DataError(
                f"{path} was written for another teacher, label files, size or tolerance; "
                "drop --resume to start over, or choose another --out"
            )
        rows = list(csv.reader(ln for ln in lines if not ln.startswith("#")))
        if not rows or rows[0] != self.header():
            raise DataError(f"{path}: unexpected columns (another data set or nlkd version?); drop --resume")
        where = {id_: i for i, id_ in enumerate(self.ids)}
        done = np.zeros(len(self.ids), dtype=bool)
        n_fixed = len(_FIXED)
        try:
            for r in rows[1:]:
                i = where.get(r[0])
                if i is not None:
                    self.bf[i], self.iou[i] = float(r[2]), float(r[3])
                    self.pixel_disagreement[i], self.labelled[i] = float(r[5]), float(r[6])
                    self.class_disagreement[i] = [float(v) for v in r[n_fixed:]]
                    done[i] = True
        except (ValueError, IndexError) as e:
            raise DataError(f"{path}: malformed row ({e}); drop --resume to start over") from None
        return done

    def score_table(self) -> ScoreTable:
        """The ``nlkd score`` view (dataset order), e.g. for ``nlkd train --teacher-scores``."""
        return ScoreTable(list(self.ids), self.bf, self.iou, self.quality)


# ----------------------------------------------------------------------------- detection metrics


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
        AUROC from average ranks (Mann–Whitney U); NaN without both positives and negatives.

    >>> auroc(np.array([0.9, 0.8, 0.8, 0.1]), np.array([True, True, False, False]))
    0.875
    """
    s, y = _check_scores(scores, positive)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of each tie group's last member
    ranks = (ends - (counts - 1) / 2)[inverse]  # tied scores share their average rank
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _threshold_counts(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives at each distinct threshold, highest first: two (T,) arrays."""
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each tie group
    tp = np.cumsum(y)[last]
    return tp, (last + 1) - tp


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Average precision: the mean over positives of the precision at the positive's rank.

    Tied scores form one threshold: each positive in a tie group gets the precision of the whole
    group (sklearn's convention); without ties this is the plain sum over ranks.

    Args:
        scores: (N,) finite, higher = more likely positive.
        positive: (N,) bool.

    Returns:
        AP in [0, 1]; NaN without positives.

    >>> average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, False, True, False]))
    0.8333333333333333
    """
    s, y = _check_scores(scores, positive)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    tp, fp = _threshold_counts(s, y)
    new_pos = np.diff(np.r_[0, tp])
    return float((new_pos * tp / (tp + fp)).sum() / n_pos)


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr)``, each (T + 1,), from (0, 0) through every distinct threshold."""
    s, y = _check_scores(scores, positive)
    tp, fp = _threshold_counts(s, y)
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def precision_recall_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision-recall points ``(precision, recall)``, each (T,), one per distinct threshold."""
    s, y = _check_scores(scores, positive)
    tp, fp = _threshold_counts(s, y)
    return tp / (tp + fp), tp / max(int(y.sum()), 1)


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
    ``by="labelled"`` −(share of labelled pixels), the teacher-free sign of a coarse annotation."""
    if by not in ("quality", "labelled"):
        raise ValueError(f"by must be 'quality' or 'labelled', got {by!r}")
    q = table.quality if by == "quality" else table.labelled
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


def known_bad_ids(label_dir: Path, known_bad: str | None) -> tuple[set[str], str] | None:
    """Ids of known-bad annotations and where they came from: ``known_bad`` (one id per line, ``#``
    comments), else ``label_dir/manifest.json`` of ``nlkd corrupt``, else None."""
    if known_bad is not None:
        path = Path(known_bad)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise DataError(f"{path}: cannot read the list of known-bad ids ({e.strerror})") from None
        ids = {ln.split("#", 1)[0].strip() for ln in text.splitlines()}
        return ids - {""}, str(path)
    from nlkd.noise import load_manifest

    manifest = load_manifest(label_dir)
    return None if manifest is None else (set(manifest["corrupted"]), str(label_dir / "manifest.json"))


# ----------------------------------------------------------------------------- teachers, streaming


class Teachers:
    """The network(s) judging the annotations: one checkpoint, or one per fold, each image then being
    predicted by the teacher of its fold (``fold_of[id]``), i.e. the one that never trained on it."""

    def __init__(
        self,
        models: Sequence[nn.Module],
        sources: Sequence[Path],
        fold_of: Mapping[str, int] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if len(models) != len(sources) or not models or (fold_of is None and len(models) != 1):
            raise ValueError(
                f"need one source per model and one model without folds, got "
                f"{len(models)} models, {len(sources)} sources, fold_of={fold_of is not None}"
            )
        self.models, self.sources = [m.to(device).eval() for m in models], [Path(s) for s in sources]
        self.fold_of, self.device = fold_of, torch.device(device)

    @torch.no_grad()
    def __call__(self, images: Tensor, ids: Sequence[str]) -> Tensor:
        """(B, 3, H, W) normalised images and their ids -> (B, C, H, W) logits on ``self.device``."""
        images = images.to(self.device)
        if self.fold_of is None:
            return self.models[0](images)
        folds = torch.tensor([self.fold_of[i] for i in ids])
        out: Tensor | None = None
        for f in folds.unique().tolist():
            sel = (folds == f).nonzero().squeeze(1).to(self.device)
            logits = self.models[f](images.index_select(0, sel))
            if out is None:
                out = logits.new_empty((len(ids), *logits.shape[1:]))
            out[sel] = logits
        return out  # type: ignore[return-value]

    def key(self, dataset: FolderDataset, tolerance: float) -> str:
        """What the scores depend on: teacher files, label files, size and tolerance."""
        parts = [cache_key(s, dataset, "audit", tolerance) for s in self.sources]
        return hashlib.sha256(";".join(parts).encode()).hexdigest()[:20]


def audit_dataset(
    teachers: Callable[[Tensor, Sequence[str]], Tensor],
    dataset: FolderDataset,
    *,
    tolerance: float = 2.0,
    batch_size: int = 8,
    partial: Path | None = None,
    key: str | None = None,
    resume: bool = False,
    save_every: int = 10,
) -> AuditTable:
    """Audit every image of ``dataset`` (no augmentation), batch by batch, keeping only numbers.

    ``teachers(images (B, 3, H, W), ids) -> logits (B, C, H, W)``. With ``partial`` the rows scored so
    far are written there atomically every ``save_every`` batches and at the end; with ``resume`` the
    rows already in it (written under the same ``key``) are kept and their images skipped.
    """
    info = dataset.info
    table = AuditTable.for_dataset(dataset)
    done = np.zeros(len(table.ids), dtype=bool)
    if resume and partial is not None and partial.is_file():
        done = table.load_rows(partial, key)
    todo = np.flatnonzero(~done).tolist()
    loader = make_loader(Subset(dataset, todo), batch_size=batch_size, shuffle=False, seed=0)
    bar = tqdm(loader, desc="auditing", unit="batch", leave=False, disable=not todo)
    for step, batch in enumerate(bar, start=1):
        logits = teachers(batch["image"], batch["id"])
        s = audit_batch(
            logits.argmax(1), batch["mask"].to(logits.device), info.num_classes, tolerance, info.ignore_index
        )
        idx = batch["index"].numpy()
        table.bf[idx], table.iou[idx], table.pixel_disagreement[idx] = s.bf, s.iou, s.pixel_disagreement
        table.labelled[idx] = s.labelled
        table.class_disagreement[idx] = s.class_disagreement
        done[idx] = True
        if partial is not None and (step % save_every == 0 or step == len(loader)):
            atomic_write_text(partial, table.to_csv(np.flatnonzero(done).tolist(), key=key, exact=True))
    return table


def run_audit(
    teachers: Teachers,
    dataset: FolderDataset,
    out_dir: Path,
    *,
    tolerance: float = 2.0,
    batch_size: int = 8,
    resume: bool = False,
    save_every: int = 10,
    top: int = 8,
    known_bad: tuple[set[str], str] | None = None,
    meta: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[AuditTable, Detection | None]:
    """Audit ``dataset`` and write ``out_dir``: ``progress.csv``, ``scores.csv`` (worst first),
    ``teacher_scores.csv``, ``audit.json``, ``gallery/``, ``figures/`` and ``report.html``; returns the
    table and, when ``known_bad = (ids, source)`` is given, the detection scores."""
    from nlkd.report import write_report  # local: matplotlib is only needed once the numbers exist

    out_dir = Path(out_dir)
    key = teachers.key(dataset, tolerance)
    progress = out_dir / PROGRESS_NAME
    if not resume and progress.is_file():
        log(f"starting over: {progress} is replaced (pass --resume to keep its rows)")
        progress.unlink()
    table = audit_dataset(
        teachers,
        dataset,
        tolerance=tolerance,
        batch_size=batch_size,
        partial=progress,
        key=key,
        resume=resume,
        save_every=save_every,
    )
    found = by_labelled = None
    if known_bad is not None:
        found = detection(table, *known_bad)
        by_labelled = detection(table, *known_bad, by="labelled")
    atomic_write_text(out_dir / "scores.csv", table.to_csv())
    atomic_write_text(out_dir / "teacher_scores.csv", table.score_table().to_csv("bfmiou"))
    write_report(
        out_dir, table, dataset, teachers, top=top, found=found, found_by_labelled=by_labelled, meta=meta or {}
    )
    record = {
        "key": key,
        **(meta or {}),
        "n_images": len(table.ids),
        "mean_quality": float(np.nanmean(table.quality)) if np.isfinite(table.quality).any() else None,
    }
    if found is not None:
        record["detection"] = {
            "source": found.source,
            "n": found.n,
            "n_bad": found.n_bad,
            "auroc": _json_float(found.auroc),
            "average_precision": _json_float(found.average_precision),
        }
    if by_labelled is not None:
        record["detection_by_labelled"] = {
            "auroc": _json_float(by_labelled.auroc),
            "average_precision": _json_float(by_labelled.average_precision),
        }
    atomic_write_text(out_dir / "audit.json", json.dumps(record, indent=2) + "\n")
    return table, found


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else x
