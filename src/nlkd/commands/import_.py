"""``nlkd import FORMAT``: labels from an annotation tool -> a folder data set nlkd reads.

    nlkd import coco --annotations instances.json --images DIR --out ROOT [--split train]
    nlkd import coco --annotations panoptic_val2017.json --images DIR [--masks PNG_DIR] --out ROOT --split val
    nlkd import voc --voc-root VOCdevkit/VOC2012 --out ROOT --split train [--image-set train]
    nlkd import voc --images DIR --masks DIR --out ROOT
    nlkd import palette --images DIR --masks DIR --classes classes.yaml [--mask-suffix _L] --out ROOT
    nlkd import cvat --export task.zip [--images DIR] --out ROOT
    nlkd import cvat --export relabelled.zip --out ROOT --split relabelled   # ROOT: an existing data set

Writes ROOT/images/<split>/, ROOT/labels/<split>/ (class-index PNGs) and ROOT/dataset.yaml (classes,
ignore index 255, colours, and where the classes came from). --out must be new or empty, or a data set
with the same classes that lacks --split (import val after train). A bad file stops the import with one
line naming it (exit 2) and nothing written under --out. COCO: class 0 = background (pixels no annotation
covers), then the categories by increasing id; the smaller of two overlapping annotations wins; crowd
regions are ignored (255); panoptic: void and crowd segments are ignored. CVAT: classes are the export's
labelmap.txt (CVAT's background = class 0), except into an existing data set (--out ROOT with a dataset.yaml,
or --classes-from ROOT): there the labels are matched by name to ROOT's classes, background -> its ignore index,
and its dataset.yaml stays as it is (what nlkd audit --export cvat wrote comes back with ROOT's class indices).
Then: nlkd validate --data ROOT --split SPLIT.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from nlkd.data.importers import (
    ImportPlan,
    cvat_export_folder,
    plan_coco,
    plan_cvat,
    plan_palette,
    plan_voc,
    plan_voc_root,
    write_import,
)
from nlkd.errors import ConfigError

__all__ = ["register", "run"]

_HELP = {
    "coco": "COCO instance JSON (polygons, RLE, crowd regions; decoded with pycocotools) or panoptic JSON + PNGs",
    "voc": "Pascal VOC SegmentationClass palette PNGs (21 classes, 255 = ignore)",
    "palette": "RGB colour masks (CamVid-style) with a class table YAML",
    "cvat": "CVAT 'Segmentation mask 1.1' export (zip or folder)",
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="ROOT", help="data set to write (new, empty, or adding a split)")
    p.add_argument(
        "--split", default="train", help="split to write: ROOT/images/SPLIT, ROOT/labels/SPLIT (default: train)"
    )
    p.set_defaults(func=run)


def _add_formats(sub: Any) -> None:
    coco = sub.add_parser("coco", help=_HELP["coco"], description=_HELP["coco"])
    coco.add_argument("--annotations", required=True, metavar="JSON", help="COCO instances JSON")
    coco.add_argument("--images", required=True, metavar="DIR", help="folder the JSON's file_name entries are in")
    coco.add_argument(
        "--masks", metavar="DIR", help="panoptic JSON only: its PNG folder (default: the JSON's path without .json)"
    )
    voc = sub.add_parser("voc", help=_HELP["voc"], description=_HELP["voc"])
    voc.add_argument("--voc-root", metavar="DIR", help="VOC folder with JPEGImages/, SegmentationClass/, ImageSets/")
    voc.add_argument(
        "--image-set", metavar="NAME", help="ImageSets/Segmentation/NAME.txt (default: --split if present)"
    )
    voc.add_argument("--images", metavar="DIR", help="instead of --voc-root: images, matched to --masks by name")
    voc.add_argument("--masks", metavar="DIR", help="instead of --voc-root: VOC-style index PNGs")
    palette = sub.add_parser("palette", help=_HELP["palette"], description=_HELP["palette"])
    palette.add_argument("--images", required=True, metavar="DIR", help="images, matched to masks by name")
    palette.add_argument("--masks", required=True, metavar="DIR", help="RGB colour mask PNGs")
    palette.add_argument(
        "--classes", required=True, metavar="YAML", help="class table: a list of {name, color: [R, G, B]} "
        "(an entry with ignore: true maps its colour to 255)",
    )  # fmt: skip
    palette.add_argument("--mask-suffix", default="", metavar="S", help="mask of image ID is ID<S>.png (CamVid: _L)")
    cvat = sub.add_parser("cvat", help=_HELP["cvat"], description=_HELP["cvat"])
    cvat.add_argument(
        "--export", required=True, metavar="ZIP_OR_DIR", help="the export (labelmap.txt, SegmentationClass/)"
    )
    cvat.add_argument("--images", metavar="DIR", help="images, when the export has no JPEGImages/")
    cvat.add_argument(
        "--classes-from", metavar="ROOT", help="match the labels by name to the classes of this data set "
        "(its folder or dataset.yaml; default: --out's, when --out is a data set)",
    )  # fmt: skip
    for p in (coco, voc, palette, cvat):
        _common(p)


def register(subparsers: Any) -> None:
    """Add the ``import`` sub-command (one sub-parser per format) to the ``nlkd`` parser."""
    p = subparsers.add_parser(
        "import",
        help="labels from an annotation tool (coco, voc, palette, cvat) -> a folder data set",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_formats(p.add_subparsers(dest="import_format", metavar="FORMAT", required=True))


def _voc_plan(args: argparse.Namespace) -> ImportPlan:
    folders = args.images is not None or args.masks is not None
    if (args.voc_root is not None) == folders or (folders and (args.images is None or args.masks is None)):
        raise ConfigError("nlkd import voc: give either --voc-root DIR or both --images DIR and --masks DIR")
    if args.voc_root is not None:
        return plan_voc_root(args.voc_root, args.image_set, args.split)
    if args.image_set is not None:
        raise ConfigError("--image-set: only with --voc-root")
    return plan_voc(args.images, args.masks)


def _summary(plan: ImportPlan, counts: np.ndarray) -> str:
    """``background 61.2 %, cat 20.1 %, ignore 3.1 %; no pixels: dog``."""
    total = max(int(counts.sum()), 1)
    names = plan.info.class_names
    shares = [f"{n} {100 * counts[k] / total:.1f} %" for k, n in enumerate(names) if counts[k]]
    if plan.info.ignore_index is not None and counts[plan.info.ignore_index]:
        shares.append(f"ignore {100 * counts[plan.info.ignore_index] / total:.1f} %")
    empty = [n for k, n in enumerate(names) if not counts[k]]
    return ", ".join(shares) + (f"; no pixels: {', '.join(empty)}" if empty else "")


def _write(plan: ImportPlan, args: argparse.Namespace, classes_note: str | None = None) -> None:
    counts = write_import(plan, args.out, args.split)
    info = plan.info
    ignore = "no ignore_index" if info.ignore_index is None else f"ignore_index {info.ignore_index}"
    print(
        f"imported {len(plan.items)} images into {args.out} (split {args.split}): {info.num_classes} classes, {ignore}"
    )
    if classes_note:
        print(classes_note)
    print(f"pixels: {_summary(plan, counts)}")
    print(f"next: nlkd validate --data {args.out} --split {args.split}")


def run(args: argparse.Namespace) -> int:
    """Import; 0 on success (errors are raised as NLKDError: one line, exit 2)."""
    if args.import_format == "cvat":
        classes_from = args.classes_from
        if classes_from is None and (Path(args.out) / "dataset.yaml").is_file():
            classes_from = Path(args.out) / "dataset.yaml"  # into a data set: its classes, matched by name
        with cvat_export_folder(args.export) as folder:
            plan = plan_cvat(folder, args.images, export=args.export, classes_from=classes_from)
            matched = None if classes_from is None else f"classes of {classes_from}, matched to the labels by name"
            _write(plan, args, matched)
        return 0
    if args.import_format == "coco":
        plan = plan_coco(args.annotations, args.images, args.masks)
    elif args.import_format == "voc":
        plan = _voc_plan(args)
    else:
        plan = plan_palette(args.images, args.masks, args.classes, mask_suffix=args.mask_suffix)
    _write(plan, args)
    return 0
