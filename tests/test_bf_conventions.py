"""What BF means here, pinned: how it differs from the paper code's BF, and what ignored pixels do to it.

1. The paper's reference code takes OpenCV contours (which also run along the image frame, and list a
   pixel twice where a contour passes it twice) and pairwise distances. nlkd's boundary is the pixels with
   a 4-neighbour of another label *inside* the image, each counted once. So nlkd's BF is lower; without
   the frame and duplicate points the two agree to rounding. IoU agrees to rounding.
2. Ignored pixels are removed from both maps, so the pixels next to an unlabelled band are boundary
   pixels in both maps, at the same places: they match, and BF rises.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nlkd.metrics import bf_and_iou, boundary_map


@pytest.fixture(scope="module")
def bench_metrics():  # type: ignore[no-untyped-def]
    pytest.importorskip("cv2")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import bench_metrics
    finally:
        sys.path.pop(0)
    return bench_metrics


def test_paper_code_bf_is_higher_by_its_image_frame_and_duplicate_points(bench_metrics) -> None:  # type: ignore[no-untyped-def]
    """On bench_metrics' kind of input (smooth 12-class scenes and a perturbed prediction), θ = 2."""
    pred, target = bench_metrics.make_batch(6, 64, 64, 12)
    bf, iou = (v.numpy() for v in bf_and_iou(pred, target, 12, 2.0))
    pn, tn = pred.numpy(), target.numpy()
    paper_bf, paper_iou = bench_metrics.paper_code_bf_iou(pn, tn, 12, 2.0)
    np.testing.assert_allclose(iou, paper_iou, rtol=0, atol=1e-12)
    assert (bf < paper_bf - 0.01).all(), (bf, paper_bf)  # lower on every image
    same_bf, _ = bench_metrics.paper_code_bf_iou(pn, tn, 12, 2.0, image_frame=False, duplicates=False)
    np.testing.assert_allclose(bf, same_bf, rtol=0, atol=1e-12)
    frame_only, _ = bench_metrics.paper_code_bf_iou(pn, tn, 12, 2.0, duplicates=False)
    assert (frame_only > bf + 0.01).all()  # the image frame alone accounts for most of the difference


def test_image_frame_is_a_boundary_for_the_paper_code_only(bench_metrics) -> None:  # type: ignore[no-untyped-def]
    """Left half class 0, right half class 1; the prediction's edge is 2 px to the right. With θ = 2 (strictly
    closer than 2 px) no boundary pixel matches: BF = 0 by hand. The paper code's contours also run along
    the top, bottom and outer sides of each region, where the two maps agree, so its BF is well above 0."""
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, :, 4:] = 1
    pred = torch.zeros_like(target)
    pred[:, :, 6:] = 1
    bf, iou = bf_and_iou(pred, target, 2, 2.0)
    assert bf.item() == 0.0
    assert iou.item() == pytest.approx((32 / 48 + 16 / 32) / 2)  # class 0: 32 of 48, class 1: 16 of 32
    paper_bf, paper_iou = bench_metrics.paper_code_bf_iou(pred.numpy(), target.numpy(), 2, 2.0)
    assert paper_iou[0] == pytest.approx(iou.item())
    assert paper_bf[0] > 0.5


def test_pixels_next_to_an_ignored_band_are_matching_boundary_pixels() -> None:
    """Target: class 0 in columns 0-3, class 1 in 4-7; the prediction's edge is 2 px off (columns 0-5 / 6-7),
    so BF = 0 and IoU = (4/6 + 2/4) / 2 by hand. Unlabel columns 3-6 of the target (a band along the
    boundary, as polygon-coarse masks have) and both maps lose those columns: what remains agrees, and
    columns 2 and 7, next to the band, are boundary pixels of both maps at the same places. BF = IoU = 1."""
    ignore = 255
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, :, 4:] = 1
    pred = torch.zeros_like(target)
    pred[:, :, 6:] = 1
    bf, iou = bf_and_iou(pred, target, 2, 2.0, ignore)
    assert (bf.item(), iou.item()) == (0.0, pytest.approx((4 / 6 + 2 / 4) / 2))

    banded = target.clone()
    banded[:, :, 3:7] = ignore
    bf, iou = bf_and_iou(pred, banded, 2, 2.0, ignore)
    assert (bf.item(), iou.item()) == (1.0, 1.0)
    edges = boundary_map(banded, 2, ignore)[0]
    expected = torch.full((8, 8), -1, dtype=torch.long)
    expected[:, 2], expected[:, 7] = 0, 1  # the band's neighbours; the band itself is never boundary
    assert torch.equal(edges, expected)
