"""Write an :class:`~nlkd.data.importers.common.ImportPlan` as an nlkd folder data set, all or nothing.

``ROOT/images/<split>/<id>.<ext>`` (JPEG and PNG copied byte for byte, other formats written as PNG),
``ROOT/labels/<split>/<id>.png`` (8-bit class indices) and ``ROOT/dataset.yaml``. Everything is written
into a hidden folder next to ``ROOT`` and renamed into place at the end, so an error (a bad file, a full
disk, Ctrl-C) leaves nothing under ``ROOT``. ``ROOT`` must be new or empty, or an nlkd data set with the
same classes that lacks the split (a second import adds ``val`` beside ``train``).
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from PIL import Image

from nlkd.data.importers.common import ImportPlan
from nlkd.errors import ConfigError, DataError
from nlkd.io import read_image
from nlkd.progress import progress

__all__ = ["check_target", "write_import"]

_COPIED = (".jpg", ".jpeg", ".png")  # copied as they are; other formats become PNG (lossless, every tool reads it)


def _read_existing_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read ({str(e).splitlines()[0]})") from None


def check_target(out: Path, split: str, dataset_yaml: dict[str, Any]) -> Literal["new", "add"]:
    """``"new"`` when ``out`` is absent or empty, ``"add"`` when it is a data set with the same
    ``dataset.yaml`` that lacks ``split``; anything else raises :class:`DataError` naming the path."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; give a new folder as --out")
    if not out.exists() or not any(out.iterdir()):
        return "new"
    yaml_path = out / "dataset.yaml"
    if not yaml_path.is_file():
        raise DataError(f"{out}: exists and is not empty; give a new or empty folder as --out")
    existing = _read_existing_yaml(yaml_path)
    if existing != dataset_yaml:
        keys = [k for k in dataset_yaml if not isinstance(existing, dict) or existing.get(k) != dataset_yaml[k]]
        raise DataError(f"{yaml_path}: {', '.join(keys) or 'keys'} differ from this import's; import into a new --out")
    for kind in ("images", "labels"):
        if (out / kind / split).exists():
            raise DataError(f"{out / kind / split}: split {split!r} exists already; choose another --split")
    return "add"


def _write_items(plan: ImportPlan, tmp: Path, split: str, show: bool) -> np.ndarray:
    """Write every item under ``tmp``; return the pixel count of each mask value, (256,) int64."""
    images_dir, labels_dir = tmp / "images" / split, tmp / "labels" / split
    images_dir.mkdir(parents=True)
    labels_dir.mkdir(parents=True)
    counts = np.zeros(256, dtype=np.int64)
    seen: dict[str, Path] = {}
    # a bar on a terminal only; the command prints its own closing line
    bar = progress(plan.items, f"import {split}", unit="image", show=show, summary=False)
    for item in bar:
        if item.id in seen:
            raise DataError(f"{item.image_path}: id {item.id!r} given twice (also {seen[item.id]})")
        seen[item.id] = item.image_path
        image = read_image(item.image_path)
        mask = np.asarray(item.read_mask())
        plan.info.check_mask(mask, item.label_path, image.shape, item.image_path)
        suffix = item.image_path.suffix.lower()
        if suffix in _COPIED:
            shutil.copyfile(item.image_path, images_dir / f"{item.id}{suffix}")
        else:
            Image.fromarray(image).save(images_dir / f"{item.id}.png")
        mask = mask.astype(np.uint8)
        Image.fromarray(mask, mode="L").save(labels_dir / f"{item.id}.png")
        counts += np.bincount(mask.ravel(), minlength=256)
    return counts


def _yaml_text(plan: ImportPlan) -> str:
    header = "".join(f"# {line}\n" for line in plan.notes)
    return header + yaml.safe_dump(plan.dataset_yaml(), sort_keys=False, default_flow_style=None, allow_unicode=True)


def _move_split_in(tmp: Path, out: Path, split: str) -> None:
    """Move ``tmp/{images,labels}/<split>`` into ``out``; if the second move fails, undo the first."""
    moved: list[tuple[Path, Path]] = []
    try:
        for kind in ("images", "labels"):
            (out / kind).mkdir(exist_ok=True)
            os.rename(tmp / kind / split, out / kind / split)
            moved.append((out / kind / split, tmp / kind / split))
    except BaseException:
        for src, dst in moved:
            os.rename(src, dst)
        raise


def write_import(
    plan: ImportPlan, out: str | os.PathLike[str], split: str, *, show_progress: bool = True
) -> np.ndarray:
    """Write ``plan`` as split ``split`` of the data set ``out``; return the pixel count per mask value (256,).

    ``show_progress``: a bar on a terminal (never off one, :mod:`nlkd.progress`); False: never.
    Raises :class:`DataError` naming the file for a bad item, with nothing left under ``out``.
    """
    out = Path(out)
    if not plan.items:
        raise DataError(f"{out}: nothing to import (no images found)")
    mode = check_target(out, split, plan.dataset_yaml())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.import-{secrets.token_hex(4)}"
    tmp.mkdir()  # permissions as any new folder (mkdtemp's 0700 would stay on ROOT after the rename)
    try:
        counts = _write_items(plan, tmp, split, show_progress)
        if mode == "add":
            _move_split_in(tmp, out, split)
        else:
            (tmp / "dataset.yaml").write_text(_yaml_text(plan), encoding="utf-8")
            os.rename(tmp, out)  # onto an empty folder too (POSIX)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts
