"""``nlkd demo``: does NLKD help on the embedded default? Synthesises data with 50 % coarse labels,
trains clean / baseline (= teacher) / reweight / nlkd, evaluates on clean test labels, prints a table."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="the end-to-end demo on synthetic data (about 10 minutes on 2 CPU cores)", description=__doc__
    )
    p.add_argument("--out", default="runs/demo", help="where data, runs and pictures go (default runs/demo)")
    p.add_argument("--epochs", type=int, default=12, help="epochs of each of the four runs (default 12)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of every run (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nlkd.demo import run_demo

    run_demo(Path(args.out), epochs=args.epochs, seed=args.seed)
    return 0
