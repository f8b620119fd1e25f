"""``nlkd eval``: dataset mIoU, mean per-image BF, pixel accuracy and per-class IoU and BF of a checkpoint
(printed in percent with the BF tolerance in pixels, e.g. ``BF@2px``; ``--json`` gives fractions)."""

from __future__ import annotations

import argparse
import json

from nlkd.commands._common import DEVICE_HELP, add_data_args, checked_data_info, size_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on a split", description=__doc__)
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="trained model, e.g. runs/nlkd/best.pt")
    add_data_args(p, split_default="val")
    p.add_argument("--size", type=size_arg, default=None, metavar="HxW", help="default: the checkpoint's")
    p.add_argument("--full-resolution", action="store_true", help="score at the labels' own resolution")
    p.add_argument("--tolerance", type=float, default=2.0, help="BF tolerance in pixels (default 2)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def open_split(args: argparse.Namespace):
    """Model of ``args.checkpoint`` and the data set ``args.data/args.split`` at the checkpoint's size."""
    from nlkd.checkpoint import checkpoint_info, load_checkpoint, model_from_checkpoint
    from nlkd.data.folder import FolderDataset
    from nlkd.data.info import check_data_root
    from nlkd.data.validate import check_split
    from nlkd.runtime import resolve_device

    check_data_root(args.data)
    device = resolve_device(args.device)
    ckpt = load_checkpoint(args.checkpoint)
    info = checked_data_info(args, checkpoint_info(ckpt), args.checkpoint)
    if args.format == "folder":
        check_split(args.data, args.split, info.num_classes, info.ignore_index, args.labels)
    model, cfg, _ = model_from_checkpoint(ckpt, device)
    size = args.size or cfg.data.size
    dataset = FolderDataset(
        args.data, args.split, args.labels, info=info, size=tuple(size) if size else None, format=args.format
    )
    return model, dataset, device


def run(args: argparse.Namespace) -> int:
    from nlkd.evaluate import evaluate, format_report

    model, dataset, device = open_split(args)
    result = evaluate(model, dataset, device, args.tolerance, full_resolution=args.full_resolution)
    if args.json:  # fractions; undefined values (a class in no image) as null
        print(json.dumps(_nan_to_none(result)))
    else:
        print(format_report(result, f"{args.checkpoint} on {args.data} [{args.split}]"))
    return 0


def _nan_to_none(value: object) -> object:
    """``value`` with every float NaN (not valid JSON) replaced by None, in lists and dicts too."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return value
