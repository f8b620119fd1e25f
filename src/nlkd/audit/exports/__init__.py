"""The relabel queue out of the audit (``nlkd audit ... --export FORMAT --top K``): the K worst annotations,
worst first, with the teacher's prediction as a pre-annotation a person can accept or correct.

``OUT/label-studio/`` (:mod:`~nlkd.audit.exports.label_studio`: tasks JSON with BrushLabels RLE, the
labelling config, the images), ``OUT/cvat/segmentation_mask.zip`` (:mod:`~nlkd.audit.exports.cvat`: CVAT
"Segmentation mask 1.1") and ``OUT/fiftyone/`` (:mod:`~nlkd.audit.exports.fiftyone`: an
``ImageSegmentationDirectory`` plus the scores). The items (:mod:`~nlkd.audit.exports.queue`) are predicted
once each and handed to every requested writer; each format's folder appears whole or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Literal, Protocol, get_args

from torch import Tensor

from nlkd.audit.exports.cvat import CvatWriter
from nlkd.audit.exports.fiftyone import FiftyOneWriter
from nlkd.audit.exports.label_studio import DEFAULT_IMAGE_URL, LabelStudioWriter
from nlkd.audit.exports.queue import RelabelItem, worst_items
from nlkd.audit.table import AuditTable
from nlkd.data.folder import FolderDataset
from nlkd.io import atomic_folder

__all__ = ["DEFAULT_TOP", "EXPORT_FORMATS", "ExportFormat", "export_relabel_queue"]

ExportFormat = Literal["label-studio", "cvat", "fiftyone"]
#: The formats of ``--export``; each writes the folder ``OUT/<format>``.
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
#: Annotations exported when ``--top`` is not given (fewer if the split is smaller).
DEFAULT_TOP = 50


class _Writer(Protocol):
    def add(self, item: RelabelItem) -> None: ...
    def close(self) -> None: ...


def _writer(fmt: str, folder: Path, dataset: FolderDataset, image_url: str) -> _Writer:
    if fmt == "label-studio":
        return LabelStudioWriter(folder, dataset.info, image_url)
    if fmt == "cvat":
        return CvatWriter(folder, dataset.info)
    if fmt == "fiftyone":
        return FiftyOneWriter(folder, dataset.info)
    raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {fmt!r}")


def export_relabel_queue(
    formats: Sequence[str],
    table: AuditTable,
    dataset: FolderDataset,
    teachers: Callable[[Tensor, Sequence[str]], Tensor],
    out_dir: Path,
    top: int,
    *,
    image_url: str = DEFAULT_IMAGE_URL,
) -> list[Path]:
    """Write the ``top`` worst annotations of ``table`` in each of ``formats`` under ``out_dir/<format>``
    (replacing an earlier export); returns the folders written."""
    formats = list(dict.fromkeys(formats))
    bad = [f for f in formats if f not in EXPORT_FORMATS]
    if bad:
        raise ValueError(f"formats must be among {EXPORT_FORMATS}, got {bad}")
    folders = [Path(out_dir) / f for f in formats]
    with ExitStack() as stack:
        temps = [stack.enter_context(atomic_folder(folder)) for folder in folders]
        writers = [_writer(f, tmp, dataset, image_url) for f, tmp in zip(formats, temps)]
        for item in worst_items(table, dataset, teachers, top):
            for w in writers:
                w.add(item)
        for w in writers:
            w.close()
    return folders
