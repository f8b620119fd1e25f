"""``nlkd score``: per-image quality (BFmIoU by default), BF and IoU of every annotation, judged by a checkpoint.

With ``--folds K`` the judges are K out-of-fold teachers (see :mod:`nlkd.folds`): each image is scored
by a teacher trained on the other folds, so its own annotation never shaped its score. The CSV has the
same columns either way (``id, quality, bf, iou``, as ``nlkd audit``'s scores.csv begins) and feeds
``nlkd train --strategy nlkd --teacher-scores CSV``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nlkd.commands._common import DEVICE_HELP, add_data_args, size_arg
from nlkd.weighting import METRICS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score every annotation of a split with a trained model", description=__doc__)
    p.add_argument("--checkpoint", default=None, metavar="CKPT", help="the teacher (with --folds: its config)")
    add_data_args(p)
    p.add_argument("--size", type=size_arg, default=None, metavar="HxW", help="default: the checkpoint's")
    p.add_argument(
        "--metric",
        default="bfmiou",
        choices=METRICS,
        help="what the 'quality' column holds (default: bfmiou)",
    )
    p.add_argument("--tolerance", type=float, default=2.0, help="BF tolerance in pixels")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--out", required=True, metavar="CSV", help="the scores file to write, a new one (one row per image)"
    )
    from nlkd.commands.audit import add_fold_args

    add_fold_args(p, "<CSV without suffix>_folds")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    import numpy as np
    import torch

    from nlkd.commands.eval import open_split
    from nlkd.data.info import check_data_root
    from nlkd.errors import ConfigError
    from nlkd.io import atomic_write_text
    from nlkd.teacher import score_dataset, weak_teacher_warning

    check_data_root(args.data)
    if Path(args.out).exists():  # like train's run folder: never replaced by accident
        raise ConfigError(f"{args.out}: already exists; choose another --out, or delete it first")
    if args.folds:
        from nlkd.commands.audit import fold_config
        from nlkd.folds import out_of_fold_scores

        out = Path(args.out)
        folds_dir = Path(args.folds_dir) if args.folds_dir else out.with_name(out.stem + "_folds")
        table = out_of_fold_scores(fold_config(args), args.folds, folds_dir, tolerance=args.tolerance)
    elif args.checkpoint is None:
        raise ConfigError("pass --checkpoint CKPT (the teacher), or --folds K to train out-of-fold teachers")
    else:
        model, dataset, device = open_split(args)
        table = score_dataset(model, dataset, args.tolerance, device)
    atomic_write_text(args.out, table.to_csv(args.metric))
    quality = torch.from_numpy(np.asarray(table.metric(args.metric), dtype=np.float64))
    warning = weak_teacher_warning(quality, "quality", f"images of split {args.split}")
    if warning:
        print(warning, file=sys.stderr)
    mean = float(quality.nanmean()) if quality.isfinite().any() else float("nan")
    print(f"scored {len(table.ids)} images -> {args.out} (mean quality {100 * mean:.1f} %, {args.metric})")
    return 0
