"""``nlkd score``: per-image BF, IoU, BFmIoU and weight of every annotation, judged by a checkpoint."""

from __future__ import annotations

import argparse

from nlkd.commands._common import add_data_args, size_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score", help="score every annotation of a split with a trained model", description=__doc__
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT")
    add_data_args(p)
    p.add_argument("--size", type=size_arg, default=None, metavar="HxW", help="default: the checkpoint's")
    p.add_argument("--metric", default="bfmiou", choices=["bfmiou", "bf", "miou"], help="the 'weight' column")
    p.add_argument("--tolerance", type=float, default=2.0, help="BF tolerance in pixels")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, metavar="CSV")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nlkd.commands.eval import open_split
    from nlkd.io import atomic_write_text
    from nlkd.teacher import score_dataset

    model, dataset, device = open_split(args)
    table = score_dataset(model, dataset, args.tolerance, device)
    atomic_write_text(args.out, table.to_csv(args.metric))
    print(
        f"scored {len(table.ids)} images -> {args.out} (mean {args.metric} {table.metric(args.metric).mean():.4f})"
    )
    return 0
