"""CVAT's "Segmentation mask 1.1" export (a zip or its folder) -> an nlkd data set.

The class table is the export's ``labelmap.txt`` (:mod:`nlkd.data.cvat`; class k = its k-th label line,
CVAT's ``background`` first), the masks are the colour PNGs ``SegmentationClass/<name>.png`` decoded like
``nlkd import palette``'s (a colour not in ``labelmap.txt`` is an error naming the mask), the images are
the export's ``JPEGImages/`` (exports "with images") or ``--images DIR``. The names come from
``ImageSets/Segmentation/*.txt`` when present, else from the masks.

With ``classes_from`` (an existing data set: ``nlkd import cvat --classes-from ROOT``, or the ``--out`` data
set itself) the labels are matched **by name** to that data set's class indices instead, and its
``dataset.yaml`` is kept as it is: what ``nlkd audit --export cvat`` wrote comes back with the indices it
had, whatever CVAT's ``background`` line shifted. A label the data set lacks is an error; CVAT's
``background`` (no label) becomes the data set's ignore index unless the data set has a class of that name.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from nlkd.data.cvat import CVAT_LABELMAP, read_cvat_labelmap
from nlkd.data.importers.common import IGNORE_INDEX, SOURCE_IMAGE_EXTENSIONS, ImportItem, ImportPlan, flat_id
from nlkd.data.importers.palette import RGB, ColourTable, colour_mask_file_to_index
from nlkd.data.info import DatasetInfo, load_dataset_info
from nlkd.errors import DataError, did_you_mean

__all__ = ["cvat_export_folder", "plan_cvat", "read_classes_from"]


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


def read_classes_from(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any], DatasetInfo]:
    """``(yaml_path, its mapping, its DatasetInfo)`` of the data set ``path`` (a folder or its ``dataset.yaml``);
    :class:`DataError` naming the path when there is none."""
    path = Path(path)
    yaml_path = path / "dataset.yaml" if path.is_dir() else path
    if yaml_path.name != "dataset.yaml" or not yaml_path.is_file():
        raise DataError(f"{path}: not a data set (expected a folder with a dataset.yaml, or that file)")
    info = load_dataset_info(yaml_path.parent)  # checks every key
    return yaml_path, yaml.safe_load(yaml_path.read_text(encoding="utf-8")), info


def _table_by_name(labels: list[tuple[str, RGB]], info: DatasetInfo, yaml_path: Path, where: str) -> ColourTable:
    """The labelmap's colours with ``info``'s class index of each label's name (CVAT's ``background``: the
    ignore index, unless a class has that name); :class:`DataError` for a name ``info`` lacks."""
    index = {name: k for k, name in enumerate(info.class_names)}
    twice = sorted({n for n in info.class_names if info.class_names.count(n) > 1})
    matched: list[tuple[str, RGB, int]] = []
    ignore: list[RGB] = []
    for name, colour in labels:
        if name in twice:
            raise DataError(f"{where}: label {name!r} names two classes of {yaml_path}; cannot match by name")
        if name in index:
            matched.append((name, colour, index[name]))
        elif name == "background":
            ignore.append(colour)  # CVAT's "no label"
        else:
            known = ", ".join(info.class_names[:12]) + (", ..." if info.num_classes > 12 else "")
            hint = did_you_mean(name, info.class_names)
            raise DataError(f"{where}: label {name!r} is not a class of {yaml_path}{hint} (its classes: {known})")
    if ignore and info.ignore_index is None:  # no value for unlabelled pixels: a background pixel is an error
        where, ignore = f"{where} as {yaml_path} has no ignore_index for CVAT's background", []
    ignore_value = IGNORE_INDEX if info.ignore_index is None else info.ignore_index
    names, colours, values = [m[0] for m in matched], [m[1] for m in matched], [m[2] for m in matched]
    return ColourTable(names, colours, ignore, where, values, ignore_value)


def plan_cvat(
    folder: Path,
    images: str | os.PathLike[str] | None,
    *,
    export: str | os.PathLike[str],
    classes_from: str | os.PathLike[str] | None = None,
) -> ImportPlan:
    """The import of an unpacked export ``folder`` (:func:`cvat_export_folder`); ``export`` is the path the user
    gave (named in messages), ``images`` the image folder when the export has none, ``classes_from`` a data set
    whose class indices the labels are matched to by name (module docstring)."""
    label_path = folder / CVAT_LABELMAP
    labels = read_cvat_labelmap(label_path)
    where = f"{export}: {CVAT_LABELMAP}"
    if classes_from is None:
        table = ColourTable([n for n, _ in labels], [c for _, c in labels], [], where)
        info, existing = table.info(), None
        notes = [f"written by nlkd import cvat from {Path(export).name}: classes and colours of its {CVAT_LABELMAP}"]
    else:
        yaml_path, existing, info = read_classes_from(classes_from)
        table = _table_by_name(labels, info, yaml_path, where)
        notes = [f"classes of {yaml_path}; nlkd import cvat matched the labels of {Path(export).name} to them by name"]
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
    return ImportPlan(info, items, {"format": "cvat"}, notes, existing)
