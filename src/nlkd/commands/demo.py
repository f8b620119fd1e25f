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
    p.add_argument(
        "--epochs", type=int, default=None, help="epochs of each of the four runs (default 12; 1 with --quick)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of every run (default 0)")
    p.add_argument(
        "--quick", action="store_true", help="16 training images at 32x48, 1 epoch: checks the pipeline in a minute"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nlkd.demo import run_demo
    from nlkd.errors import ConfigError

    epochs = args.epochs if args.epochs is not None else (1 if args.quick else 12)
    if epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {epochs}")
    run_demo(Path(args.out), epochs=epochs, seed=args.seed, quick=args.quick)
    return 0
