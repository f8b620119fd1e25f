"""Helpers shared by the sub-commands (argument types, device and dataset options)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from nlkd.config import parse_size
from nlkd.data.folder import FORMATS

if TYPE_CHECKING:
    from nlkd.data.info import DatasetInfo

__all__ = ["DEVICE_HELP", "add_data_args", "checked_data_info", "size_arg"]

DEVICE_HELP = "auto | cpu | cuda | cuda:N (default: auto: CUDA when present)"


def size_arg(text: str) -> list[int]:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_data_args(p: argparse.ArgumentParser, split_default: str | None = "train") -> None:
    p.add_argument("--data", required=True, metavar="ROOT", help="data set root (images/<split>, labels/<split>)")
    p.add_argument("--split", default=split_default, help=f"split to use (default: {split_default})")
    p.add_argument("--labels", default=None, metavar="NAME", help="label folder under labels/ (default: the split)")
    p.add_argument(
        "--format",
        default="folder",
        choices=FORMATS,
        help="data set layout (default: folder)",
    )
    p.add_argument(
        "--num-classes", type=int, default=None, metavar="N", help="number of classes (default: from ROOT/dataset.yaml)"
    )
    p.add_argument(
        "--ignore-index",
        type=int,
        default=None,
        metavar="I",
        help="mask value of unlabelled pixels (default: from ROOT/dataset.yaml, else none)",
    )


def checked_data_info(
    args: argparse.Namespace, ckpt_info: DatasetInfo, checkpoint: str, *, ignore_index: bool = True
) -> DatasetInfo:
    """The classes of the data set ``args.data`` (its format's, its ``dataset.yaml`` or ``--num-classes``;
    when it says nothing, the checkpoint's, which every mask is then checked against), refusing a
    ``checkpoint`` whose classes or (when ``ignore_index``) ignore index differ from the data's. The data
    set's warnings (:func:`nlkd.data.notes.data_warnings`) go to stderr."""
    from nlkd.checkpoint import check_matches_data
    from nlkd.data.folder import format_info
    from nlkd.data.info import load_dataset_info
    from nlkd.data.notes import data_warnings, print_warnings

    info = format_info(args.format)
    if info is None and (args.num_classes is not None or (Path(args.data) / "dataset.yaml").is_file()):
        info = load_dataset_info(args.data, args.num_classes, args.ignore_index)
    elif info is None:
        ignore = args.ignore_index if args.ignore_index is not None else ckpt_info.ignore_index
        info = load_dataset_info(args.data, ckpt_info.num_classes, ignore)
    check_matches_data(ckpt_info, info, checkpoint, ignore_index=ignore_index)
    command = getattr(args, "command", None) or "data"
    print_warnings(command, data_warnings(info, args.data, [(args.split, args.labels)], args.format))
    return info
