"""Label Studio export: ``tasks.json`` (one task per image, the masks as BrushLabels RLE), the labelling
config ``label_config.xml`` that its ``from_name``/``to_name`` refer to, and the images under ``images/``.

Each task carries two predictions: the teacher's (``model_version`` ``nlkd-teacher``, ``score`` = its mean
pixel confidence), the pre-annotation to accept or correct, and the given annotation (``model_version``
``given-annotation``, ``score`` = the audit's quality), kept as a prediction rather than an annotation so the
task still counts as unlabelled in Label Studio. ``data`` holds ``sample_id``, ``rank`` (1 = worst) and the
audit's ``quality``, ``bf`` and ``iou``, which Label Studio shows as sortable columns.

Brush RLE (Label Studio's format, read from the decoder ``label_studio_sdk.converter.brush.decode_rle``): the
mask as an RGBA image, H × W × 4 bytes in row-major order, each pixel 255 in all four channels where the class
is, 0 elsewhere, written as a bit stream (most significant bit first) of a header — the number of values (32
bits), word size − 1 (5 bits), four run-length field widths − 1 (4 bits each) — then blocks of: a flag (1 bit;
1 = one word repeated), the index of the run-length width used (2 bits), run length − 1 in that width, and the
word(s). Here every block is a repeated word: masks are long runs.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from nlkd.audit.exports.queue import RelabelItem
from nlkd.data.info import DatasetInfo
from nlkd.io import atomic_write_text

__all__ = ["DEFAULT_IMAGE_URL", "LabelStudioWriter", "brush_rle", "label_config"]

#: Label Studio's local-file URLs: ``/data/local-files/?d=`` + the path under its document root.
DEFAULT_IMAGE_URL = "/data/local-files/?d="
FROM_NAME, TO_NAME = "label", "image"
_WORD_BITS = 8
_RUN_BITS = (3, 4, 8, 16)  # the run-length field widths; 16 bits = runs of up to 65536 values


def _bits(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The bits of unsigned ``values`` (N,), each written in ``widths`` (N,) bits, most significant first:
    a flat (sum(widths),) uint8 array of 0/1."""
    field = np.repeat(np.arange(len(values)), widths)
    starts = np.cumsum(widths) - widths
    shift = widths[field] - 1 - (np.arange(len(field)) - starts[field])
    return ((values[field] >> shift) & 1).astype(np.uint8)


def brush_rle(mask: np.ndarray) -> list[int]:
    """Label Studio brush RLE of a binary mask.

    Args:
        mask: (H, W) bool (or 0/non-zero) map of one class.

    Returns:
        The RLE bytes as a list of ints in 0..255 (``value.rle`` of a ``brushlabels`` result), decoding to
        H × W × 4 values: 255 where ``mask`` is set, 0 elsewhere.

    >>> brush_rle(np.ones((1, 2), bool))  # 8 values of 255: header, then one run
    [0, 0, 0, 8, 57, 27, 252, 255, 224]
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {mask.shape}")
    flat = mask.ravel() != 0
    cuts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], cuts]).astype(np.int64) if flat.size else np.zeros(0, np.int64)
    lengths = np.diff(np.concatenate([starts, [flat.size]])) * 4  # 4 channels per pixel
    words = np.where(flat[starts], 255, 0).astype(np.int64)
    n = flat.size * 4
    longest = 1 << _RUN_BITS[-1]
    pieces = -(-lengths // longest)  # a run longer than the widest field is split
    words, lengths = np.repeat(words, pieces), _split_runs(lengths, pieces, longest)
    size_index = np.searchsorted(np.array([1 << b for b in _RUN_BITS]), lengths)
    run_bits = np.array(_RUN_BITS)[size_index]
    header_values = np.array([n, _WORD_BITS - 1, *(b - 1 for b in _RUN_BITS)], dtype=np.int64)
    header_widths = np.array([32, 5, 4, 4, 4, 4])
    blocks = np.stack([np.ones_like(words), size_index, lengths - 1, words], 1).ravel()
    block_widths = np.stack([np.ones_like(words), np.full_like(words, 2), run_bits, np.full_like(words, _WORD_BITS)], 1)
    bits = _bits(np.concatenate([header_values, blocks]), np.concatenate([header_widths, block_widths.ravel()]))
    return np.packbits(bits).tolist()


def _split_runs(lengths: np.ndarray, pieces: np.ndarray, longest: int) -> np.ndarray:
    """Run lengths cut into ``pieces`` parts of at most ``longest`` each (full parts first)."""
    out = np.full(int(pieces.sum()), longest, dtype=np.int64)
    last = np.cumsum(pieces) - 1
    out[last] = lengths - (pieces - 1) * longest
    return out


def label_config(info: DatasetInfo) -> str:
    """The labelling config (Label Studio XML): an image and one brush label per class, in the class's
    colour; the names are the ``from_name``/``to_name`` of the exported results."""
    labels = "\n".join(
        f"    <Label value={quoteattr(name)} background={quoteattr(_hex(info.palette[c]))}/>"
        for c, name in enumerate(info.class_names)
    )
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
        f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}\n  </BrushLabels>\n'
        "</View>\n"
    )


def _hex(rgb: tuple[int, ...]) -> str:
    r, g, b = rgb
    return f"#{r:02x}{g:02x}{b:02x}"


def _results(mask: np.ndarray, info: DatasetInfo, prefix: str) -> list[dict]:
    """One ``brushlabels`` result per class present in ``mask`` (ignored pixels get none)."""
    h, w = mask.shape
    present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256)[: info.num_classes])
    return [
        {
            "id": f"{prefix}{c}",
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": "brushlabels",
            "original_width": w,
            "original_height": h,
            "image_rotation": 0,
            "value": {"format": "rle", "rle": brush_rle(mask == c), "brushlabels": [info.class_names[c]]},
        }
        for c in present.tolist()
    ]


def _number(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


class LabelStudioWriter:
    """Collects the tasks in ``folder`` (images copied to ``images/``); :meth:`close` writes ``tasks.json``
    and ``label_config.xml``. ``image_url`` prefixes ``images/<file>`` in ``data.image``."""

    def __init__(self, folder: Path, info: DatasetInfo, image_url: str = DEFAULT_IMAGE_URL) -> None:
        self.folder, self.info, self.image_url = Path(folder), info, image_url
        self.tasks: list[dict] = []
        (self.folder / "images").mkdir(parents=True, exist_ok=True)

    def add(self, item: RelabelItem) -> None:
        name = f"images/{item.stem}{item.image_path.suffix.lower()}"
        shutil.copyfile(item.image_path, self.folder / name)
        teacher = {
            "model_version": "nlkd-teacher",
            "score": round(item.confidence, 6),
            "result": _results(item.prediction, self.info, "teacher_"),
        }
        given = {
            "model_version": "given-annotation",
            "score": _number(item.quality),
            "result": _results(item.annotation, self.info, "given_"),
        }
        data = {"image": self.image_url + name, "sample_id": item.id, "rank": item.rank}
        data.update({k: _number(getattr(item, k)) for k in ("quality", "bf", "iou")})
        self.tasks.append({"data": data, "predictions": [teacher, given]})

    def close(self) -> None:
        atomic_write_text(self.folder / "tasks.json", json.dumps(self.tasks, separators=(",", ":")) + "\n")
        atomic_write_text(self.folder / "label_config.xml", label_config(self.info))
