"""Teacher scores: how well a trained model's prediction agrees with each annotation.

``score_dataset`` runs a model over a data set (no augmentation) and scores every image with BF, IoU
and BFmIoU. ``teacher_scores`` gives a training run its per-image teacher weights, computed once and
cached in the run folder under a key (teacher file hash, label files, size, metric, tolerance): a cache
whose key differs is reported as stale and recomputed, never silently reused.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from nlkd.data.folder import FolderDataset, make_loader
from nlkd.errors import DataError
from nlkd.io import atomic_write_text, file_digest
from nlkd.metrics import bf_and_iou
from nlkd.progress import progress as show_progress

__all__ = [
    "ScoreTable",
    "predict_batches",
    "read_scores_csv",
    "score_dataset",
    "teacher_scores",
    "weak_teacher_warning",
]

CACHE_NAME = "teacher_scores.csv"


@dataclass
class ScoreTable:
    """Per-image scores of one data set, in dataset order; each array has shape (N,)."""

    ids: list[str]
    bf: np.ndarray
    iou: np.ndarray
    bfmiou: np.ndarray

    def metric(self, name: str) -> np.ndarray:
        return {"bf": self.bf, "miou": self.iou, "bfmiou": self.bfmiou}[name]

    def to_csv(self, weight_metric: str = "bfmiou", key: str | None = None) -> str:
        """CSV with columns ``id, quality, bf, iou`` (as ``nlkd audit``'s scores.csv begins); ``quality`` is
        ``weight_metric`` (BFmIoU by default), the per-image weight a teacher gives. Values with 6 decimals."""
        buf = io.StringIO()
        if key is not None:
            buf.write(f"# key={key}\n")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["id", "quality", "bf", "iou"])
        for i, id_ in enumerate(self.ids):
            row = (self.metric(weight_metric)[i], self.bf[i], self.iou[i])
            w.writerow([id_, *(f"{v:.6f}" for v in row)])
        return buf.getvalue()


@torch.no_grad()
def predict_batches(
    model: nn.Module,
    dataset: FolderDataset,
    device: torch.device,
    batch_size: int = 16,
    progress: str | None = None,
) -> Iterator[tuple[dict, Tensor]]:
    """Yield ``(batch, pred)`` over a data set in order; ``pred`` is the (B, H, W) argmax on CPU."""
    model.eval()
    loader = make_loader(dataset, batch_size=batch_size, shuffle=False, seed=0)
    for batch in show_progress(loader, progress or "", unit="batch", show=progress is not None):
        logits = model(batch["image"].to(device))
        yield batch, logits.argmax(1).cpu()


def score_dataset(
    model: nn.Module,
    dataset: FolderDataset,
    tolerance: float = 2.0,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
) -> ScoreTable:
    """Score every annotation of ``dataset`` against ``model``'s prediction (BF, IoU, BFmIoU).

    A training set is scored without its augmentation (a shallow copy with ``train=False``)."""
    if getattr(dataset, "train", False):
        dataset = copy.copy(dataset)
        dataset.train = False
    info = dataset.info
    bfs, ious, ids = [], [], []
    for batch, pred in predict_batches(model, dataset, torch.device(device), batch_size, progress="scoring"):
        bf, iou = bf_and_iou(pred, batch["mask"], info.num_classes, tolerance, info.ignore_index)
        bfs.append(bf.numpy())
        ious.append(iou.numpy())
        ids.extend(batch["id"])
    bf_all, iou_all = np.concatenate(bfs), np.concatenate(ious)
    return ScoreTable(ids, bf_all, iou_all, (bf_all + iou_all) / 2)


#: Names the quality column had in CSVs of earlier nlkd versions (``nlkd score``: weight, then bfmiou).
_OLD_QUALITY_NAMES = ("weight", "bfmiou")


def read_scores_csv(path: str | os.PathLike[str], column: str | None = None) -> dict[str, float]:
    """Read ``id -> score`` from a scores CSV (``nlkd score`` / ``nlkd audit`` output, or any CSV with ``id``
    and a score column). ``column=None`` or ``"quality"`` takes ``quality``, else the names it had in CSVs of
    earlier versions (``weight``, then ``bfmiou``).

    A missing column, an id given twice or a value that is not a number is a one-line :class:`DataError`
    naming the file and the line; ``nan`` is a number (an image without valid pixels)."""
    path = Path(path)
    try:
        numbered = [(n, ln) for n, ln in enumerate(path.read_text().splitlines(), 1) if not ln.startswith("#")]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read scores file ({getattr(e, 'strerror', None) or e})") from None
    reader = csv.DictReader([ln for _, ln in numbered])
    header = reader.fieldnames or []
    names = ("quality", *_OLD_QUALITY_NAMES) if column in (None, "quality") else (column,)
    found = next((c for c in names if c in header), None)
    if "id" not in header or found is None:
        wanted = " or ".join(repr(c) for c in names)
        raise DataError(f"{path}: scores CSV needs columns 'id' and {wanted}, got: {', '.join(header) or 'none'}")
    column = found
    table: dict[str, float] = {}
    first_line: dict[str, int] = {}
    for row in reader:
        line = numbered[reader.line_num - 1][0]
        id_, value = row["id"], row[column]
        if id_ in table:
            raise DataError(f"{path}: line {line}: id {id_!r} given twice (first on line {first_line[id_]})")
        try:
            table[id_] = float(value)
        except (TypeError, ValueError):
            raise DataError(f"{path}: line {line}: {column} of {id_!r} is not a number: {value!r}") from None
        first_line[id_] = line
    if not table:
        raise DataError(f"{path}: scores CSV has no rows")
    return table


def cache_key(teacher: Path, dataset: FolderDataset, metric: str, tolerance: float) -> str:
    """What the cached scores depend on: teacher weights, annotation files, resolution, metric."""
    h = hashlib.sha256()
    h.update(file_digest(teacher).encode())
    for s in dataset.samples:
        st = os.stat(s.mask_path)
        h.update(f"{s.id}:{s.mask_path.resolve()}:{st.st_size}:{st.st_mtime_ns};".encode())
    h.update(f"{dataset.size}|{metric}|{tolerance}".encode())
    return h.hexdigest()[:20]


def _cached_key(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return ""  # unreadable: stale
    return first[len("# key=") :] if first.startswith("# key=") else ""  # no key line: stale


#: A teacher whose mean score on the training set is below this barely agrees with the annotations.
WEAK_TEACHER = 0.05


def weak_teacher_warning(scores: Tensor, what: str, images: str = "training images") -> str | None:
    """A warning when the mean of the (N,) ``scores`` (NaN = no valid pixel, skipped) of the N ``images``
    is below :data:`WEAK_TEACHER`: such a teacher weights every image near zero, however good its
    annotation. Printed for people, so in percent (the scores are fractions)."""
    mean = float(torch.nanmean(scores.float())) if len(scores) else math.nan
    if not mean < WEAK_TEACHER:
        return None
    return (
        f"warning: the teacher's mean {what} on these {len(scores)} {images} is {100 * mean:.1f} % (below "
        f"{100 * WEAK_TEACHER:.0f} %): its weights are near zero everywhere; is it a teacher for this data set "
        "and labels?"
    )


def teacher_scores(
    dataset: FolderDataset,
    *,
    teacher: str | None,
    scores_csv: str | None,
    metric: str,
    tolerance: float,
    cache_dir: Path,
    device: torch.device,
    log=print,
) -> Tensor:
    """Per-image teacher weights (N,) aligned with ``dataset`` (float32, NaN for images without valid
    pixels). From ``scores_csv`` if given (e.g. out-of-fold scores), else from the ``teacher`` checkpoint,
    cached in ``cache_dir``. A teacher that barely agrees with the annotations gets a warning in ``log``."""
    scores = _teacher_scores(dataset, teacher, scores_csv, metric, tolerance, cache_dir, device, log)
    warning = weak_teacher_warning(scores, "score" if scores_csv is not None else metric)
    if warning:
        log(warning)
    return scores


def _teacher_scores(
    dataset: FolderDataset,
    teacher: str | None,
    scores_csv: str | None,
    metric: str,
    tolerance: float,
    cache_dir: Path,
    device: torch.device,
    log,
) -> Tensor:
    if scores_csv is not None:
        table = read_scores_csv(scores_csv)
        missing = [i for i in dataset.ids if i not in table]
        if missing:
            raise DataError(f"{scores_csv}: no score for {len(missing)} training images, e.g. {missing[0]!r}")
        bad = next((i for i in dataset.ids if table[i] < 0 or math.isinf(table[i])), None)
        if bad is not None:
            raise DataError(f"{scores_csv}: score of {bad!r} is {table[bad]}; scores must be >= 0 and finite (or nan)")
        return torch.tensor([table[i] for i in dataset.ids], dtype=torch.float32)
    if teacher is None:
        raise DataError("this strategy needs a teacher: pass --teacher CKPT (or strategy.teacher_scores=CSV)")
    from nlkd.checkpoint import model_from_checkpoint  # local: checkpoint imports models (heavy)

    if not Path(teacher).is_file():
        raise DataError(f"{teacher}: teacher checkpoint not found")
    cache = cache_dir / CACHE_NAME
    key = cache_key(Path(teacher), dataset, metric, tolerance)
    old = _cached_key(cache)
    if old == key:
        try:
            table = read_scores_csv(cache)
        except DataError:  # damaged cache: recompute it
            table = {}
        if list(table) == dataset.ids:
            log(f"teacher scores: reusing {cache}")
            return torch.tensor([table[i] for i in dataset.ids], dtype=torch.float32)
    if old is not None:
        log(f"teacher scores: cache {cache} is stale (teacher, labels, size or metric changed); recomputing")
    model, _, _ = model_from_checkpoint(teacher, device)
    scores = score_dataset(model, dataset, tolerance, device)
    atomic_write_text(cache, scores.to_csv(metric, key=key))
    log(f"teacher scores: computed for {len(scores.ids)} images -> {cache}")
    # The values as cached (6 decimals), so a resumed or repeated run trains on exactly the same weights.
    table = read_scores_csv(cache)
    return torch.tensor([table[i] for i in dataset.ids], dtype=torch.float32)
