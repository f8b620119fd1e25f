"""Helpers shared by the sub-commands (argument types, device and dataset options)."""

from __future__ import annotations

import argparse

from nlkd.config import parse_size
from nlkd.data.folder import FORMATS

__all__ = ["DEVICE_HELP", "add_data_args", "size_arg"]

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
