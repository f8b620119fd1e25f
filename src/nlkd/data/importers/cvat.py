"""CVAT's "Segmentation mask 1.1" export (a zip or its folder) -> an nlkd data set.

The class table is the export's ``labelmap.txt`` (:mod:`nlkd.data.cvat`; class k = its k-th label line,
CVAT's ``background`` first), the masks are the colour PNGs ``SegmentationClass/<name>.png`` decoded like
``nlkd import palette``'s (a colour not in ``labelmap.txt`` is an error naming the mask), the images are
the export's ``JPEGImages/`` (exports "with images") or ``--images DIR``. The names come from
``ImageSets/Segmentation/*.txt`` when present, else from the masks.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from nlkd.data.cvat import CVAT_LABELMAP, read_cvat_labelmap
from nlkd.data.importers.common import SOURCE_IMAGE_EXTENSIONS, ImportItem, ImportPlan, flat_id
from nlkd.data.importers.palette import ColourTable, colour_mask_file_to_index
from nlkd.errors import DataError

__all__ = ["cvat_export_folder", "plan_cvat"]


@contextmanager
def cvat_export_folder(export: str | os.PathLike[str]) -> Iterator[Path]:
    """The folder holding ``labelmap.txt`` of an export: the folder itself (or its only sub-folder), or a
    zip unpacked into a temporary folder removed on exit."""
    export = Path(export)
    if export.is_dir():
        yield _labelmap_folder(export, export)
        return
    if not export.is_file():
        raise DataError(f"{export}: not found (expected a CVAT 'Segmentation mask 1.1' zip or folder)")
    with tempfile.TemporaryDirectory(prefix="nlkd-cvat-") as tmp:
        try:
            with zipfile.ZipFile(export) as archive:
                archive.extractall(tmp)  # extractall drops absolute paths and '..' from member names
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"{export}: not a readable zip file ({e})") from None
        yield _labelmap_folder(Path(tmp), export)


def _labelmap_folder(folder: Path, export: Path) -> Path:
    if (folder / CVAT_LABELMAP).is_file():
        return folder
    subs = [p for p in folder.iterdir() if p.is_dir()]
    if len(subs) == 1 and (subs[0] / CVAT_LABELMAP).is_file():
        return subs[0]
    raise DataError(f"{export}: no {CVAT_LABELMAP} (expected a CVAT 'Segmentation mask 1.1' export)")


def _names(folder: Path) -> list[str]:
    lists = sorted((folder / "ImageSets" / "Segmentation").glob("*.txt"))
    names = [line.strip() for f in lists for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lists:
        mask_dir = folder / "SegmentationClass"
        names = sorted(p.relative_to(mask_dir).with_suffix("").as_posix() for p in mask_dir.rglob("*.png"))
    return list(dict.fromkeys(names))


def _image_file(name: str, folders: list[Path]) -> Path | None:
    for folder in folders:
        for ext in SOURCE_IMAGE_EXTENSIONS:
            for candidate in (folder / f"{name}{ext}", folder / f"{name}{ext.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def plan_cvat(folder: Path, images: str | os.PathLike[str] | None, *, export: str | os.PathLike[str]) -> ImportPlan:
    """The import of an unpacked export ``folder`` (:func:`cvat_export_folder`); ``export`` is the path the user
    gave (named in messages), ``images`` the image folder when the export has none."""
    label_path = folder / CVAT_LABELMAP
    labels = read_cvat_labelmap(label_path)
    table = ColourTable([n for n, _ in labels], [c for _, c in labels], [], f"{export}: {CVAT_LABELMAP}")
    image_dirs = [Path(images)] if images is not None else [folder / "JPEGImages"]
    if images is None and not image_dirs[0].is_dir():
        raise DataError(f"{export}: the export has no JPEGImages/ (exported without images); give --images DIR")
    items = []
    for name in _names(folder):
        image = _image_file(name, image_dirs)
        if image is None:
            raise DataError(f"{image_dirs[0] / name}.*: image not found for {name!r} of {export}")
        mask = folder / "SegmentationClass" / f"{name}.png"
        if not mask.is_file():
            raise DataError(f"{image}: no mask SegmentationClass/{name}.png in {export}")
        shown = Path(export) / "SegmentationClass" / f"{name}.png"  # in messages: the zip's name, not a temp folder
        items.append(ImportItem(flat_id(name), image, shown, partial(colour_mask_file_to_index, mask, table, shown)))
    notes = [f"written by nlkd import cvat from {Path(export).name}: classes and colours of its {CVAT_LABELMAP}"]
    return ImportPlan(table.info(), items, {"format": "cvat"}, notes)
