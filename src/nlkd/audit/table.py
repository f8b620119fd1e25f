"""The per-image audit table: numbers in dataset order, the ranking (worst first) and its CSV form
(``scores.csv``, and ``progress.csv`` that ``--resume`` reads back bit for bit)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlkd.data.folder import FolderDataset
from nlkd.errors import DataError
from nlkd.teacher import ScoreTable

__all__ = ["PROGRESS_NAME", "AuditTable"]

PROGRESS_NAME = "progress.csv"
_FIXED = (
    "id",
    "quality",
    "bf",
    "iou",
    "worst_classes",
    "pixel_disagreement",
    "labelled",
    "strict_quality",
    "image",
    "mask",
)
_CLASS_PREFIX = "boundary_disagreement:"
_COUNT_PREFIXES = ("intersection:", "union:")  # progress.csv only: per-class pixel counts (dataset IoU_c)


@dataclass
class AuditTable:
    """Per-image audit numbers in dataset order: ``bf``, ``iou``, ``pixel_disagreement``, ``labelled``,
    ``strict_quality`` (BFmIoU with unlabelled pixels as disagreement) (N,),
    ``class_disagreement`` (N, C), and ``class_intersection``, ``class_union`` (N, C): pixels of class c
    in both / either of annotation and prediction (whole numbers; the data set's IoU_c is their sums'
    ratio). NaN for images not scored yet; all but ``labelled`` (then 0) and the counts are NaN for
    images without valid pixels too."""

    ids: list[str]
    image_paths: list[str]
    mask_paths: list[str]
    class_names: list[str]
    bf: np.ndarray
    iou: np.ndarray
    pixel_disagreement: np.ndarray
    class_disagreement: np.ndarray
    labelled: np.ndarray
    strict_quality: np.ndarray
    class_intersection: np.ndarray
    class_union: np.ndarray

    @classmethod
    def empty(cls, ids: list[str], image_paths: list[str], mask_paths: list[str], class_names: list[str]) -> AuditTable:
        """A table of NaNs (nothing scored yet) over the given images and classes."""
        n, c = len(ids), len(class_names)

        def nan() -> np.ndarray:
            return np.full((n,), np.nan)

        return cls(
            ids,
            image_paths,
            mask_paths,
            class_names,
            bf=nan(),
            iou=nan(),
            pixel_disagreement=nan(),
            class_disagreement=np.full((n, c), np.nan),
            labelled=nan(),
            strict_quality=nan(),
            class_intersection=np.full((n, c), np.nan),
            class_union=np.full((n, c), np.nan),
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

    def header(self, progress: bool = False) -> list[str]:
        """Columns of scores.csv; with ``progress`` also the per-class pixel counts of progress.csv."""
        counts = [p + name for p in _COUNT_PREFIXES for name in self.class_names] if progress else []
        return [*_FIXED, *(_CLASS_PREFIX + name for name in self.class_names), *counts]

    def to_csv(
        self, rows: Sequence[int] | None = None, key: str | None = None, exact: bool = False, progress: bool = False
    ) -> str:
        """CSV of ``rows`` (default: all, worst first), numbers to 6 decimals or, when ``exact``, to full
        precision (they read back bit for bit); a ``# key=`` line first when ``key`` is given. ``progress``
        (implies ``exact``): the progress.csv form, with the per-class pixel counts."""
        buf = io.StringIO()
        if key is not None:
            buf.write(f"# key={key}\n")
        csv.writer(buf, lineterminator="\n").writerow(self.header(progress))
        buf.write(self.csv_rows(self.order() if rows is None else rows, exact, progress))
        return buf.getvalue()

    def csv_rows(self, rows: Sequence[int], exact: bool = False, progress: bool = False) -> str:
        """The lines of :meth:`to_csv` for ``rows``, without header (what the streamed progress file appends)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        num = repr if exact or progress else "{:.6f}".format
        q = self.quality
        for i in rows:
            counts = [*self.class_intersection[i], *self.class_union[i]] if progress else []
            w.writerow(
                [
                    self.ids[i],
                    *(num(float(v)) for v in (q[i], self.bf[i], self.iou[i])),
                    ";".join(self.worst_classes(i)),
                    num(float(self.pixel_disagreement[i])),
                    num(float(self.labelled[i])),
                    num(float(self.strict_quality[i])),
                    self.image_paths[i],
                    self.mask_paths[i],
                    *(num(float(v)) for v in self.class_disagreement[i]),
                    *(num(float(v)) for v in counts),
                ]
            )
        return buf.getvalue()

    def load_rows(self, path: Path, key: str | None) -> np.ndarray:
        """Fill in the rows of a CSV written by :meth:`to_csv` (ids not in the table are skipped);
        returns the (N,) bool mask of rows filled. A different ``key`` or header is a DataError. A last
        line without its newline (a run killed while appending it) is left out: its image is scored again."""
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        if lines and not text.endswith("\n"):
            lines.pop()
        found = lines[0][len("# key=") :] if lines and lines[0].startswith("# key=") else None
        if key is not None and found != key:
            raise DataError(
                f"{path} was written for another teacher, label files, size or tolerance; "
                "drop --resume to start over, or choose another --out"
            )
        rows = list(csv.reader(ln for ln in lines if not ln.startswith("#")))
        if not rows or rows[0] != self.header(progress=True):
            raise DataError(f"{path}: unexpected columns (another data set or nlkd version?); drop --resume")
        where = {id_: i for i, id_ in enumerate(self.ids)}
        done = np.zeros(len(self.ids), dtype=bool)
        n_fixed, c = len(_FIXED), len(self.class_names)
        try:
            for r in rows[1:]:
                i = where.get(r[0])
                if i is not None:
                    self.bf[i], self.iou[i] = float(r[2]), float(r[3])
                    self.pixel_disagreement[i], self.labelled[i] = float(r[5]), float(r[6])
                    self.strict_quality[i] = float(r[7])
                    self.class_disagreement[i] = [float(v) for v in r[n_fixed : n_fixed + c]]
                    self.class_intersection[i] = [float(v) for v in r[n_fixed + c : n_fixed + 2 * c]]
                    self.class_union[i] = [float(v) for v in r[n_fixed + 2 * c : n_fixed + 3 * c]]
                    done[i] = True
        except (ValueError, IndexError) as e:
            raise DataError(f"{path}: malformed row ({e}); drop --resume to start over") from None
        return done

    def score_table(self) -> ScoreTable:
        """The ``nlkd score`` view (dataset order), e.g. for ``nlkd train --teacher-scores``."""
        return ScoreTable(list(self.ids), self.bf, self.iou, self.quality)
