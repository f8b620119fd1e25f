"""``nlkd validate``: check every image/mask pair of a split before training on it.

    nlkd validate --data data/camvid --split train --num-classes 11 --ignore-index 11
    nlkd validate --data data/camvid --split train --labels train_coarse   # dataset.yaml gives classes

Prints the num_classes and ignore_index it checked against and where they came from, then
``ok: N pairs`` (exit 0), or every problem on stderr, one line per bad file (exit 2). An ignore_index
that is also a class index (e.g. 3 with 6 classes) is allowed but warned about, as are files in the split's
folders that are not read (images: .jpg .jpeg .png .tif .tiff .bmp .webp; masks: .png).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nlkd.data.info import DatasetInfo, check_data_root, load_dataset_info
from nlkd.data.notes import data_warnings, print_warnings
from nlkd.data.validate import validate_report

__all__ = ["register", "run"]


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def register(subparsers: Any) -> None:
    """Add the ``validate`` sub-command to the ``nlkd`` parser."""
    p = subparsers.add_parser(
        "validate",
        help="check every image/mask pair of a split (one line per bad file)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, metavar="ROOT", help="data set root (ROOT/images, ROOT/labels)")
    p.add_argument("--split", required=True, help="split folder name, e.g. train")
    p.add_argument(
        "--num-classes",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="number of classes (default: from ROOT/dataset.yaml)",
    )
    p.add_argument(
        "--ignore-index",
        type=_non_negative_int,
        default=None,
        metavar="I",
        help="mask value to ignore, e.g. 255 or CamVid's 11 (default: from ROOT/dataset.yaml, else none)",
    )
    p.add_argument(
        "--labels",
        default=None,
        metavar="NAME",
        help="label folder ROOT/labels/NAME (default: the split name)",
    )
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace, info: DatasetInfo) -> str:
    """``num_classes 6 (--num-classes), ignore_index 255 (ROOT/dataset.yaml)``: what was used, from where."""
    yaml_path = Path(args.data) / "dataset.yaml"
    yaml_source = str(yaml_path) if yaml_path.is_file() else None
    classes = "--num-classes" if args.num_classes is not None else yaml_source
    if args.ignore_index is not None:
        ignore = f"ignore_index {info.ignore_index} (--ignore-index)"
    elif info.ignore_index is not None:
        ignore = f"ignore_index {info.ignore_index} ({yaml_source})"
    else:
        ignore = f"no ignore_index ({yaml_source or 'no dataset.yaml'})"
    return f"num_classes {info.num_classes} ({classes}), {ignore}"


def run(args: argparse.Namespace) -> int:
    """Validate the split; 0 when every pair is fine, 2 otherwise."""
    check_data_root(args.data)
    info = load_dataset_info(args.data, args.num_classes, args.ignore_index)
    labels = f", labels {args.labels}" if args.labels else ""
    print(f"checking split {args.split}{labels} with {_settings(args, info)}")
    print_warnings("validate", data_warnings(info, args.data, [(args.split, args.labels)]))
    report = validate_report(args.data, args.split, info.num_classes, info.ignore_index, args.labels)
    if report.problems:
        for line in report.problems:
            print(line, file=sys.stderr)
        n = len(report.problems)
        print(
            f"nlkd validate: {n} problem{'s' if n != 1 else ''} ({report.num_pairs} good pairs)",
            file=sys.stderr,
        )
        return 2
    print(f"ok: {report.num_pairs} pairs")
    return 0
