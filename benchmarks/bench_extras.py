"""What delivering the fine mask with every item costs the data path (``fine_mask`` extra, issue 13).

    python benchmarks/bench_extras.py --data ROOT --labels train_de50 [--size 120x160] \
        [--num-classes 11 --ignore-index 11]
    python benchmarks/bench_extras.py --quick      # 16 synthetic images at 32x48, one round

``ROOT/labels/<labels>`` must be written by ``nlkd corrupt`` (its manifest names the fine masks). Passes
over the training set (scale-crop 0.75-1.25 + flip, as ``nlkd train`` augments) alternate between the
plain dataset and the same dataset with the fine mask attached; best pass of each, ratio in one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from nlkd.config import parse_size
from nlkd.data.extras import label_maps
from nlkd.data.folder import FolderDataset
from nlkd.data.info import load_dataset_info
from nlkd.data.synth import make_synthetic
from nlkd.noise import fine_label_dir


def one_pass(ds: FolderDataset) -> float:
    t = time.perf_counter()
    for i in range(len(ds)):
        ds[(i, i)]
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="data root (not with --quick)")
    p.add_argument("--labels", default="train_coarse")
    p.add_argument("--quick", action="store_true", help="a tiny synthetic data set, one round (for CI)")
    p.add_argument("--size", default="120x160")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--num-classes", type=int)
    p.add_argument("--ignore-index", type=int)
    args = p.parse_args()
    if args.quick:
        args.data, args.labels, args.size, args.rounds = tempfile.mkdtemp(), "train_coarse", "32x48", 1
        make_synthetic(args.data, n_train=16, n_val=1, n_test=1, size=(32, 48))
    elif not args.data:
        p.error("--data is required without --quick")
    torch.set_num_threads(1)
    info = load_dataset_info(args.data, args.num_classes, args.ignore_index)
    size = tuple(parse_size(args.size))
    ds = FolderDataset(args.data, "train", args.labels, info=info, size=size, train=True, scale=(0.75, 1.25))
    fine = label_maps(ds, fine_label_dir(Path(args.data) / "labels" / args.labels))
    plain, with_fine = [], []
    for _ in range(args.rounds):
        ds.extras.clear()
        plain.append(one_pass(ds))
        ds.add_extra("fine_mask", fine)
        with_fine.append(one_pass(ds))
    a, b = min(plain) / len(ds), min(with_fine) / len(ds)
    print(f"{len(ds)} items at {args.size}: plain {a * 1e3:.3f} ms/item, with fine_mask {b * 1e3:.3f} ms/item, "
          f"ratio {b / a:.2f}, {(b - a) * 1e3:+.3f} ms/item")  # fmt: skip


if __name__ == "__main__":
    main()
