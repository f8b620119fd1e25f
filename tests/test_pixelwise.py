"""nlkd.pixelwise: relaxed label sets and loss, boundary distance, reliability, softening, agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from nlkd import (
    agreement_map,
    boundary_distance,
    boundary_pixels,
    relaxed_label_loss,
    relaxed_label_set,
    reliability_weight,
    soften_probabilities,
)

IGN = 255


def _scene(b: int = 3, h: int = 13, w: int = 17, c: int = 4, seed: int = 0) -> torch.Tensor:
    """Blocky random label maps with a few ignore pixels."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, c, (b, 1, (h + 3) // 4, (w + 3) // 4), generator=g).float()
    t = F.interpolate(coarse, scale_factor=4, mode="nearest")[:, 0, :h, :w].long()
    t[torch.rand(t.shape, generator=g) < 0.05] = IGN
    return t


def test_relaxed_set_radius_zero_is_one_hot_and_loss_is_ce():
    t = _scene()
    logits = torch.randn(3, 4, 13, 17, requires_grad=True)
    sets = relaxed_label_set(t, 4, radius=0, ignore_index=IGN)
    assert torch.equal(sets.sum(1), (t != IGN).long())
    loss = relaxed_label_loss(logits, sets)
    ce = F.cross_entropy(logits, t, ignore_index=IGN, reduction="none")
    torch.testing.assert_close(loss, ce, rtol=1e-5, atol=1e-6)


def test_relaxed_set_matches_window_loop_and_ignore_is_never_a_class():
    t = _scene(b=2, h=9, w=11)
    r = 2
    sets = relaxed_label_set(t, 4, radius=r, ignore_index=IGN)
    for i in range(2):
        for y in range(9):
            for x in range(11):
                window = t[i, max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
                expected = {int(v) for v in window.flatten() if v != IGN}
                got = {c for c in range(4) if sets[i, c, y, x]}
                assert got == expected, (i, y, x)


def test_relaxed_loss_is_union_likelihood_per_image_and_stable():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 1, 1) * 3
    sets = torch.tensor([[True, True, False], [False, False, True]]).view(2, 3, 1, 1)
    p = logits.softmax(1)
    expected = torch.stack([-(p[0, 0] + p[0, 1]).log(), -p[1, 2].log()]).view(2, 1, 1)
    torch.testing.assert_close(relaxed_label_loss(logits, sets), expected)
    # a hopeless pixel (set class far below the others) stays finite: no log(0)
    z = torch.tensor([0.0, 200.0]).view(1, 2, 1, 1).requires_grad_()
    loss = relaxed_label_loss(z, torch.tensor([True, False]).view(1, 2, 1, 1))
    assert loss.item() == pytest.approx(200.0)
    loss.sum().backward()
    assert torch.isfinite(z.grad).all()
    # an empty set is loss 0 with a finite (zero) gradient
    z2 = torch.randn(1, 2, 1, 1, requires_grad=True)
    out = relaxed_label_loss(z2, torch.zeros(1, 2, 1, 1, dtype=torch.bool))
    out.sum().backward()
    assert out.item() == 0.0 and torch.equal(z2.grad, torch.zeros_like(z2))


def test_boundary_pixels_four_neighbour_and_ignore():
    t = torch.tensor([[[0, 0, 1], [0, 0, 1], [IGN, 0, 0]]])
    b = boundary_pixels(t, ignore_index=IGN)
    assert b.int().tolist() == [[[0, 1, 1], [1, 1, 1], [0, 1, 1]]]
    assert not b[t == IGN].any()


@pytest.mark.parametrize("cap", [1.5, 3.0, 8.0, None])
def test_boundary_distance_equals_scipy_edt(cap):
    t = _scene(b=3, h=21, w=26, seed=1)
    t[2] = 1  # no boundary at all
    d = boundary_distance(t, ignore_index=IGN, max_distance=cap)
    edge = boundary_pixels(t, ignore_index=IGN).numpy()
    for i in range(2):
        ref = ndimage.distance_transform_edt(~edge[i])
        if cap is not None:
            ref = np.minimum(ref, cap)
        np.testing.assert_allclose(d[i].numpy(), ref, rtol=1e-6, atol=1e-5)
    assert bool((d[2] == (math.inf if cap is None else cap)).all())


def test_reliability_weight_values():
    d = torch.tensor([0.0, 1.0, 3.0, math.inf]).view(1, 1, 4)
    w = reliability_weight(d, sigma=1.0)
    torch.testing.assert_close(w, torch.tensor([0.0, 1 - math.exp(-1), 1 - math.exp(-3), 1.0]).view(1, 1, 4))
    assert reliability_weight(torch.tensor([[[2.0]]]), sigma=2.0).item() == pytest.approx(1 - math.exp(-1))
    with pytest.raises(ValueError, match="sigma"):
        reliability_weight(d, sigma=0.0)


def test_soften_probabilities_keeps_one_hot_and_zero_rows():
    p = torch.tensor([[0.7, 0.2, 0.1], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).T.reshape(1, 3, 3, 1)
    q = soften_probabilities(p, temperature=2.0)
    expected = torch.tensor([0.7, 0.2, 0.1]).sqrt()
    torch.testing.assert_close(q[0, :, 0, 0], expected / expected.sum())
    assert q[0, :, 1, 0].tolist() == [1.0, 0.0, 0.0]
    assert q[0, :, 2, 0].tolist() == [0.0, 0.0, 0.0]
    torch.testing.assert_close(soften_probabilities(p, 1.0)[0, :, 0, 0], torch.tensor([0.7, 0.2, 0.1]))


def test_agreement_map_tolerance_and_ignore():
    t = torch.zeros(1, 1, 9, dtype=torch.long)
    t[..., 5:] = 1  # annotated boundary between x = 4 and 5
    pred = torch.zeros_like(t)
    pred[..., 7:] = 1  # predicted boundary 2 px to the right
    a1 = agreement_map(pred, t, tolerance=1.0)
    a2 = agreement_map(pred, t, tolerance=2.0)
    a3 = agreement_map(pred, t, tolerance=2.5)
    # pixels 5, 6 are annotated 1 but predicted 0; the nearest predicted 1 is at x = 7
    assert a1[0, 0].tolist() == [True] * 5 + [False, False, True, True]
    assert a2[0, 0].tolist() == [True] * 5 + [False, True, True, True]
    assert a3[0, 0].all()
    t[0, 0, 0] = IGN
    assert not agreement_map(pred, t, 2.5, ignore_index=IGN)[0, 0, 0]


# --- near_class, moved_side_band (band_ignore, band_side=teacher) -------------------------------------


@pytest.mark.parametrize("radius", [1.0, 2.0, 2.5, 3.0])
def test_near_class_equals_scipy_edt(radius):
    from nlkd.pixelwise import near_class

    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, 3, (2, 12, 15), generator=g)
    t[0, :3, :3] = 255  # unlabelled: no class
    near = near_class(t, 3, radius, ignore_index=255)
    for b in range(2):
        for c in range(3):
            mask = (t[b] == c).numpy()
            ref = ndimage.distance_transform_edt(~mask) < radius if mask.any() else np.zeros_like(mask)
            assert np.array_equal(near[b, c].numpy(), ref), (b, c)


def _grown(cols: int) -> torch.Tensor:
    """Class 0 left of column ``cols``, class 1 from it on (1 row block of 6 x 12)."""
    t = torch.zeros(1, 6, 12, dtype=torch.long)
    t[:, :, cols:] = 1
    return t


def test_moved_side_band_marks_the_side_the_annotation_grew_into():
    from nlkd.pixelwise import moved_side_band

    truth = _grown(6)
    grew_1 = _grown(4)  # class 1 annotated 2 columns too far left: columns 4, 5 are wrong
    marked = moved_side_band(grew_1, truth, 2, 3.0)
    assert {int(c) for c in marked[0].nonzero()[:, 1]} == {4, 5} and int(marked.sum()) == 12
    shrank_1 = _grown(8)  # class 0 annotated into 6, 7: now class 0's side is wrong
    marked = moved_side_band(shrank_1, truth, 2, 3.0)
    assert {int(c) for c in marked[0].nonzero()[:, 1]} == {6, 7}
    assert not moved_side_band(truth, truth, 2, 3.0).any()  # a tie (nothing claimed): neither side


def test_moved_side_band_votes_per_image_and_never_marks_unlabelled_pixels():
    from nlkd.pixelwise import moved_side_band

    target = torch.cat([_grown(4), _grown(8)])
    pred = torch.cat([_grown(6), _grown(6)])
    pred[0, 0, 4] = 0  # a pixel-level slip does not change the image's vote
    target[1, 0, :] = 255
    marked = moved_side_band(target, pred, 2, 3.0, ignore_index=255)
    assert {int(c) for c in marked[0].nonzero()[:, 1]} == {4, 5}
    assert {int(c) for c in marked[1].nonzero()[:, 1]} == {6, 7} and not marked[1, 0].any()
    with pytest.raises(ValueError, match="same shape"):
        moved_side_band(target, pred[:, :3], 2, 3.0)
