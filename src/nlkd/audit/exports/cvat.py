"""CVAT export: ``segmentation_mask.zip`` in CVAT's "Segmentation mask 1.1" layout, the teacher's prediction
as colour masks, ready to import as a project dataset or upload as a task's annotations.

Inside the zip: ``labelmap.txt`` (``# label:color_rgb:parts:actions``, then ``background:0,0,0::`` and
``name:r,g,b::`` per class), ``SegmentationClass/<stem>.png`` (RGB: each pixel the colour of its class),
``ImageSets/Segmentation/default.txt`` (the stems, worst first) and ``JPEGImages/<stem>.<ext>`` (the image
files as they are). ``SegmentationObject/`` (instance masks) is optional in the format and left out: semantic
classes have no instances. Black is CVAT's background (no label), so no class is drawn black: the classes
take the data set's palette when its colours are distinct and none is black, else :func:`cvat_colours`'
fixed palette. A class named ``background`` takes black itself (CVAT's convention; no extra line then).
The given annotation is not in the zip: the format holds one mask per image. ``nlkd import cvat`` reads the
zip back: into the audited data set (``--out ROOT`` or ``--classes-from ROOT``) by class name, so its class
indices come back unchanged (a plain import into a new folder makes CVAT's ``background`` line class 0).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from nlkd.audit.exports.queue import RelabelItem
from nlkd.data.cvat import CVAT_LABELMAP, format_cvat_labelmap
from nlkd.data.info import RGB, DatasetInfo, default_palette

__all__ = ["ZIP_NAME", "CvatWriter", "cvat_colours", "labelmap"]

ZIP_NAME = "segmentation_mask.zip"
_BLACK = (0, 0, 0)


def cvat_colours(info: DatasetInfo) -> list[RGB]:
    """One colour per class: the data set's palette if its first C colours are distinct and not black (black
    only for a class named ``background``), else the Pascal VOC colours 1..C (never black).

    >>> cvat_colours(DatasetInfo(2))  # the default palette starts with black: VOC colours 1, 2
    [(128, 0, 0), (0, 128, 0)]
    """
    c = info.num_classes
    own = [tuple(info.palette[i]) for i in range(c)]
    black_ok = [name.lower() == "background" for name in info.class_names]
    if len(set(own)) == c and all(col != _BLACK or ok for col, ok in zip(own, black_ok)):
        return own  # type: ignore[return-value]
    colours = default_palette(c + 1)[1:]
    return [_BLACK if ok else col for col, ok in zip(colours, black_ok)]


def labelmap(info: DatasetInfo) -> str:
    """``labelmap.txt``: CVAT's header, ``background:0,0,0::`` (unless a class is named background), then
    ``name:r,g,b::`` per class in class order."""
    colours = cvat_colours(info)
    background = [] if _BLACK in colours else [("background", _BLACK)]
    return format_cvat_labelmap([*background, *zip(info.class_names, colours)])


def colour_mask(mask: np.ndarray, colours: list[RGB]) -> np.ndarray:
    """(H, W) class indices in [0, len(colours)) -> (H, W, 3) uint8 colours."""
    table = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    if mask.size and int(mask.max()) >= len(table):
        raise ValueError(f"mask holds class {int(mask.max())}, but only {len(table)} colours are given")
    return table[mask]


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


class CvatWriter:
    """Writes ``folder/segmentation_mask.zip`` item by item; :meth:`close` adds the label map and the list."""

    def __init__(self, folder: Path, info: DatasetInfo) -> None:
        self.info, self.colours = info, cvat_colours(info)
        self.stems: list[str] = []
        self.zip = zipfile.ZipFile(Path(folder) / ZIP_NAME, "w", compression=zipfile.ZIP_DEFLATED)

    def add(self, item: RelabelItem) -> None:
        self.zip.writestr(f"SegmentationClass/{item.stem}.png", _png(colour_mask(item.prediction, self.colours)))
        self.zip.write(item.image_path, f"JPEGImages/{item.stem}{item.image_path.suffix.lower()}")
        self.stems.append(item.stem)

    def close(self) -> None:
        self.zip.writestr(CVAT_LABELMAP, labelmap(self.info))
        self.zip.writestr("ImageSets/Segmentation/default.txt", "".join(f"{s}\n" for s in self.stems))
        self.zip.close()
