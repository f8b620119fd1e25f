"""``nlkd synth``: write the embedded synthetic data set (the default for ``make demo``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nlkd.data.synth import CLASS_NAMES, make_synthetic
from nlkd.errors import ConfigError
from nlkd.noise import load_manifest

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``synth`` parser to the ``nlkd`` sub-commands."""
    p = subparsers.add_parser(
        "synth",
        help="write the synthetic data set (images, clean and coarse labels, dataset.yaml)",
        description="Write ROOT/images/<split>, ROOT/labels/<split>, ROOT/labels/train_coarse (a fraction "
        "of masks dilated/eroded, listed in its manifest.json) and ROOT/dataset.yaml. ROOT must be new, "
        "empty, or an earlier output of `nlkd synth`.",
    )
    p.add_argument("root", metavar="ROOT", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--n-train", type=int, default=160, help="training images (default 160)")
    p.add_argument("--n-val", type=int, default=40, help="validation images (default 40)")
    p.add_argument("--n-test", type=int, default=40, help="test images (default 40)")
    p.add_argument("--height", type=int, default=96, help="image height in px (default 96)")
    p.add_argument("--width", type=int, default=128, help="image width in px (default 128)")
    p.add_argument("--coarse-ratio", type=float, default=0.5, help="fraction of train_coarse masks corrupted (0.5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the data set and print where it went; user errors raise NLKDError."""
    for name in ("seed", "n_train", "n_val", "n_test"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')}: expected >= 0, got {getattr(args, name)}")
    if min(args.height, args.width) < 16:
        raise ConfigError(f"--height/--width: expected >= 16 px, got {args.height}x{args.width}")
    if not 0.0 <= args.coarse_ratio <= 1.0:
        raise ConfigError(f"--coarse-ratio: expected a number in [0, 1], got {args.coarse_ratio}")
    root = make_synthetic(
        args.root,
        seed=args.seed,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        size=(args.height, args.width),
        coarse_ratio=args.coarse_ratio,
    )
    manifest = load_manifest(Path(root) / "labels" / "train_coarse") or {"corrupted": [], "unchanged": []}
    unchanged = len(manifest["unchanged"])
    note = f"; {unchanged} more chosen came out unchanged at this size" if unchanged else ""
    print(
        f"wrote synthetic data set to {root} ({args.n_train} train / {args.n_val} val / {args.n_test} test, "
        f"{args.height}x{args.width}, {len(CLASS_NAMES)} classes; labels/train_coarse has "
        f"{len(manifest['corrupted']) - unchanged} of {args.n_train} masks corrupted{note})"
    )
    return 0
