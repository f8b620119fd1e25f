"""``nlkd convert-checkpoint OLD NEW``: rewrite a checkpoint of an older nlkd with plain values only.

nlkd reads checkpoints with ``torch.load(weights_only=True)``: tensors and plain values only, so a file
carrying other pickled objects is refused instead of run. Checkpoints written before that (numpy RNG state
inside) are refused too; this command converts one. It reads OLD with weights_only=True as well, allowing
numpy's arrays and numbers besides: any other pickled object is refused, its code never runs. NEW trains,
resumes and evaluates exactly as OLD.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-checkpoint",
        help="convert a checkpoint of an older nlkd to plain values",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("old", metavar="OLD", help="checkpoint written by an older nlkd")
    p.add_argument("new", metavar="NEW", help="where to write the converted checkpoint (must not exist)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nlkd.checkpoint import convert_checkpoint

    convert_checkpoint(args.old, args.new)
    print(f"converted {args.old} -> {args.new} (it loads with weights_only=True; {args.old} can go)")
    return 0
