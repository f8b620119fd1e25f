"""Speed of nlkd's batched BF + IoU against two per-image approaches, all measured in one run.

    python benchmarks/bench_metrics.py [--repeats 5] [--threads 2] [--clock wall|cpu] [--quick]

On a loaded machine use ``--threads 1 --clock cpu``: each contender's process CPU time, so the ratios
measure work done rather than the share of the cores this run got. The contenders run interleaved
(one of each per round), and each figure is the median over the rounds.

* ``nlkd``: ``nlkd.metrics.bf_and_iou`` on the whole batch (what training and evaluation call).
* ``exact reference``: scipy's exact Euclidean distance transform, one image and one class at a time
  (``tests/reference_metrics.py``, the tests' ground truth).
* ``paper code``: the approach of the paper's reference code: OpenCV contour points per class and
  image, pairwise distances between the two point sets, a point matches below the threshold.

Inputs: a batch of label maps from smooth random class fields (target) and a perturbed copy
(prediction: boundaries moved, small spurious regions), like a half-trained network's output.

A second table compares the values: IoU agrees with the paper code to rounding, BF does not. OpenCV's
contours also run along the image frame (outside the image counts as background), and a contour that
passes a pixel twice lists it twice; nlkd's boundary excludes the image frame (a pixel is a boundary
pixel only if a 4-neighbour *inside* the image has another label) and counts each pixel once. The
table's last column removes both from the paper code's point sets, and then the two agree to rounding.

``--quick`` runs one small batch once (seconds; for the tests, not for the figures).
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
from nlkd.metrics import bf_and_iou, boundary_map
from reference_metrics import reference_batch


def make_batch(b: int, h: int, w: int, c: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random scenes (target) and a perturbed prediction, both (B, H, W) int64."""
    g = torch.Generator().manual_seed(seed)
    up = torch.nn.functional.interpolate
    coarse = up(torch.randn(b, c, max(h // 32, 2), max(w // 32, 2), generator=g), size=(h, w), mode="bicubic")
    noise = up(torch.randn(b, c, max(h // 8, 2), max(w // 8, 2), generator=g), size=(h, w), mode="bicubic")
    return (coarse + 0.15 * noise).argmax(1), coarse.argmax(1)


def _inside_boundary(points: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, 2) contour points (x, y) -> (N,) bool: the pixel has a 4-neighbour inside the image not in ``mask``."""
    h, w = mask.shape
    x, y = points[:, 0], points[:, 1]
    keep = np.zeros(len(points), dtype=bool)
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        yy, xx = y + dy, x + dx
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        keep |= inside & (mask[yy.clip(0, h - 1), xx.clip(0, w - 1)] == 0)
    return keep


def _contour_points(mask: np.ndarray, image_frame: bool, duplicates: bool) -> np.ndarray:
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    points = np.concatenate(contours).reshape(-1, 2) if contours else np.zeros((0, 2), dtype=np.int64)
    if not duplicates and len(points):
        points = np.unique(points, axis=0)
    if not image_frame and len(points):
        points = points[_inside_boundary(points, mask)]
    return points


def paper_code_bf_iou(
    pred: np.ndarray,
    target: np.ndarray,
    num_classes: int,
    tolerance: float,
    *,
    image_frame: bool = True,
    duplicates: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image BF (contour points + pairwise distances) and IoU, one image and class at a time.

    ``image_frame=False`` drops contour points that are boundary only because of the image frame;
    ``duplicates=False`` counts a point a contour passes twice once. Both True: the paper code's BF."""
    bfs, ious = [], []
    for p, t in zip(pred, target):
        f1s, iou = [], []
        for c in range(num_classes):
            mp, mt = (p == c).astype(np.uint8), (t == c).astype(np.uint8)
            union = int((mp | mt).sum())
            if union:
                iou.append(int((mp & mt).sum()) / union)
            pp = _contour_points(mp, image_frame, duplicates)
            pt = _contour_points(mt, image_frame, duplicates)
            if not len(pp) and not len(pt):
                continue
            if not len(pp) or not len(pt):
                f1s.append(0.0)
                continue
            d = cdist(pp, pt)
            precision = float((d.min(1) < tolerance).mean())
            recall = float((d.min(0) < tolerance).mean())
            f1s.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
        bfs.append(np.mean(f1s) if f1s else 1.0)
        ious.append(np.mean(iou))
    return np.array(bfs), np.array(ious)


def interleaved(contenders: dict, rounds: dict, clock) -> dict[str, float]:
    """Median time of each contender, run one after the other in each round (after one warm-up each)."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():
        fn()
    for i in range(max(rounds.values())):
        for name, fn in contenders.items():
            if i < rounds[name]:
                t0 = clock()
                fn()
                times[name].append(clock() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


CONFIGS = [((32, 256, 256), 12, 2.0), ((32, 256, 256), 12, 3.5), ((32, 256, 256), 12, 5.0), ((32, 360, 480), 12, 2.0)]
QUICK_CONFIGS = [((4, 64, 64), 12, 2.0)]


def agreement_row(pred: torch.Tensor, target: torch.Tensor, c: int, tol: float) -> str:
    """One row of the value table: the inputs, then nlkd's BF and IoU against the paper code's."""
    b, h, w = pred.shape
    bf, iou = (v.numpy() for v in bf_and_iou(pred, target, c, tol))
    pn, tn = pred.numpy(), target.numpy()
    pbf, piou = paper_code_bf_iou(pn, tn, c, tol)
    sbf, _ = paper_code_bf_iou(pn, tn, c, tol, image_frame=False, duplicates=False)
    share = float((boundary_map(target, c) >= 0).double().mean())
    d = bf - pbf
    return (
        f"| {b}×{h}×{w} | {tol:g} | {100 * share:.1f} % | {iou.mean():.3f} | {bf.mean():.3f} | {pbf.mean():.3f} "
        f"| {d.min():+.3f} … {d.max():+.3f} | {np.abs(iou - piou).max():.1e} | {np.abs(bf - sbf).max():.1e} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds for nlkd (the per-image ones get a third)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall time or process CPU time")
    parser.add_argument("--quick", action="store_true", help="one small batch, once (seconds)")
    args = parser.parse_args(argv)
    configs = QUICK_CONFIGS if args.quick else CONFIGS
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    repeats = 1 if args.quick else args.repeats
    print(
        f"# bench_metrics — {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {args.threads} threads, {args.clock} clock, median of {repeats} "
        f"(nlkd) / {max(1, repeats // 3)} (per-image) interleaved rounds, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "| batch | classes | θ (px) | nlkd (ms) | exact reference (ms) | paper code (ms) "
        "| vs reference | vs paper code | max abs diff vs reference |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (b, h, w), c, tol in configs:
        pred, target = make_batch(b, h, w, c)
        pn, tn = pred.numpy(), target.numpy()
        contenders = {
            "ours": lambda: bf_and_iou(pred, target, c, tol),
            "ref": lambda: reference_batch(pn, tn, c, tol),
            "paper": lambda: paper_code_bf_iou(pn, tn, c, tol),
        }
        slow = max(1, repeats // 3)
        t = interleaved(contenders, {"ours": repeats, "ref": slow, "paper": slow}, clock)
        bf, iou = bf_and_iou(pred, target, c, tol)
        rbf, riou = reference_batch(pn, tn, c, tol)
        diff = max(np.abs(bf.numpy() - rbf).max(), np.abs(iou.numpy() - riou).max())
        print(
            f"| {b}×{h}×{w} | {c} | {tol:g} | {t['ours'] * 1e3:.1f} | {t['ref'] * 1e3:.0f} | {t['paper'] * 1e3:.0f} "
            f"| {t['ref'] / t['ours']:.1f}× | {t['paper'] / t['ours']:.1f}× | {diff:.1e} |",
            flush=True,
        )
    print("\nValues against the paper code (means over the batch; per-image differences nlkd − paper code)\n")
    print(
        "| batch | θ (px) | target boundary pixels | IoU | BF nlkd | BF paper code | BF difference per image "
        "| IoU max abs diff | BF max abs diff, paper code without image-frame and duplicate points |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (b, h, w), c, tol in configs:
        print(agreement_row(*make_batch(b, h, w, c), c, tol))


if __name__ == "__main__":
    main()
