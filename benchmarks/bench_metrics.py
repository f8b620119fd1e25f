"""Speed of nlkd's batched BF + IoU against two per-image approaches, all measured in one run.

    python benchmarks/bench_metrics.py [--repeats 5]

* ``nlkd``: ``nlkd.metrics.bf_and_iou`` on the whole batch (what training and evaluation call).
* ``exact reference``: scipy's exact Euclidean distance transform, one image and one class at a time
  (``tests/reference_metrics.py``, the tests' ground truth).
* ``paper code``: the approach of the paper's reference code: OpenCV contour points per class and
  image, pairwise distances between the two point sets, a point matches below the threshold.

Inputs: a batch of label maps from smooth random class fields (target) and a perturbed copy
(prediction: boundaries moved, small spurious regions), like a half-trained network's output.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.spatial.distance import cdist

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nlkd.metrics import bf_and_iou
from reference_metrics import reference_batch


def make_batch(b: int, h: int, w: int, c: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random scenes (target) and a perturbed prediction, both (B, H, W) int64."""
    g = torch.Generator().manual_seed(seed)
    up = torch.nn.functional.interpolate
    coarse = up(torch.randn(b, c, max(h // 32, 2), max(w // 32, 2), generator=g), size=(h, w), mode="bicubic")
    noise = up(torch.randn(b, c, max(h // 8, 2), max(w // 8, 2), generator=g), size=(h, w), mode="bicubic")
    return (coarse + 0.15 * noise).argmax(1), coarse.argmax(1)


def paper_code_bf_iou(pred: np.ndarray, target: np.ndarray, num_classes: int, tolerance: float):
    """Per-image BF (contour points + pairwise distances) and IoU, one image and class at a time."""
    bfs, ious = [], []
    for p, t in zip(pred, target):
        f1s, iou = [], []
        for c in range(num_classes):
            mp, mt = (p == c).astype(np.uint8), (t == c).astype(np.uint8)
            union = int((mp | mt).sum())
            if union:
                iou.append(int((mp & mt).sum()) / union)
            cp, _ = cv2.findContours(mp, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            ct, _ = cv2.findContours(mt, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            if not cp and not ct:
                continue
            if not cp or not ct:
                f1s.append(0.0)
                continue
            pp = np.concatenate(cp).reshape(-1, 2)
            pt = np.concatenate(ct).reshape(-1, 2)
            d = cdist(pp, pt)
            precision = float((d.min(1) < tolerance).mean())
            recall = float((d.min(0) < tolerance).mean())
            f1s.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
        bfs.append(np.mean(f1s) if f1s else 1.0)
        ious.append(np.mean(iou))
    return np.array(bfs), np.array(ious)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    print(
        f"# bench_metrics — {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats}"
    )
    print(
        "| batch | classes | θ (px) | nlkd (ms) | exact reference (ms) | paper code (ms) "
        "| vs reference | vs paper code | max abs diff vs reference |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (b, h, w), c, tol in [
        ((32, 256, 256), 12, 2.0),
        ((32, 256, 256), 12, 3.5),
        ((32, 256, 256), 12, 5.0),
        ((32, 360, 480), 12, 2.0),
    ]:
        pred, target = make_batch(b, h, w, c)
        pn, tn = pred.numpy(), target.numpy()
        ours = timed(lambda: bf_and_iou(pred, target, c, tol), args.repeats)
        reps = max(1, args.repeats // 3)
        ref = timed(lambda: reference_batch(pn, tn, c, tol), reps)
        paper = timed(lambda: paper_code_bf_iou(pn, tn, c, tol), reps)
        bf, iou = bf_and_iou(pred, target, c, tol)
        rbf, riou = reference_batch(pn, tn, c, tol)
        diff = max(np.abs(bf.numpy() - rbf).max(), np.abs(iou.numpy() - riou).max())
        print(
            f"| {b}×{h}×{w} | {c} | {tol:g} | {ours * 1e3:.1f} | {ref * 1e3:.0f} | {paper * 1e3:.0f} "
            f"| {ref / ours:.1f}× | {paper / ours:.1f}× | {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
