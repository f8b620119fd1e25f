"""nlkd.weighting.per_image_loss: the one per-pixel reduction (pixel weights, soft targets, target sets)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nlkd.weighting import per_image_cross_entropy, per_image_loss

C, IGNORE = 4, 255


def _case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, C, 5, 6, generator=g, requires_grad=True)
    target = torch.randint(0, C, (3, 5, 6), generator=g)
    target[0, :2] = IGNORE
    target[2] = IGNORE  # no annotated pixel
    return logits, target


def _reference(logits: torch.Tensor, target: torch.Tensor, w: torch.Tensor) -> list[float]:
    """Independent per-image loop: mean of w_p * CE_p over annotated pixels with w_p > 0."""
    out = []
    for b in range(logits.shape[0]):
        total, n = 0.0, 0
        logp = F.log_softmax(logits[b].detach().double(), 0)
        for y in range(target.shape[1]):
            for x in range(target.shape[2]):
                t, wp = int(target[b, y, x]), float(w[b, y, x])
                if t != IGNORE and wp > 0:
                    total += wp * -float(logp[t, y, x])
                    n += 1
        out.append(total / max(n, 1))
    return out


def test_without_extras_it_is_per_image_cross_entropy_bit_for_bit():
    logits, target = _case()
    assert torch.equal(per_image_loss(logits, target, IGNORE), per_image_cross_entropy(logits, target, IGNORE))


def test_pixel_weights_weight_and_drop_pixels():
    logits, target = _case(1)
    w = torch.rand(target.shape, generator=torch.Generator().manual_seed(2))
    w[1, 0] = 0.0  # dropped: neither in the sum nor in the count
    got = per_image_loss(logits, target, IGNORE, pixel_weights=w)
    assert got.tolist() == pytest.approx(_reference(logits, target, w), rel=1e-5)
    ones = per_image_loss(logits, target, IGNORE, pixel_weights=torch.ones(target.shape))
    assert torch.allclose(ones, per_image_cross_entropy(logits, target, IGNORE), rtol=1e-6)
    got.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_one_hot_soft_target_and_one_hot_set_equal_cross_entropy():
    logits, target = _case(3)
    one_hot = F.one_hot(target.masked_fill(target == IGNORE, 0), C).permute(0, 3, 1, 2)
    one_hot = one_hot * (target != IGNORE).unsqueeze(1)  # ignored pixels: empty target, not counted
    ce = per_image_cross_entropy(logits, target, IGNORE)
    assert torch.allclose(per_image_loss(logits, target, IGNORE, soft_target=one_hot.float()), ce, rtol=1e-6)
    assert torch.allclose(per_image_loss(logits, target, IGNORE, target_set=one_hot.bool()), ce, rtol=1e-6)


def test_soft_target_is_cross_entropy_to_the_distribution():
    logits = torch.tensor([[1.0, 2.0, 0.5, -1.0]]).view(1, C, 1, 1)
    q = torch.tensor([0.25, 0.75, 0.0, 0.0]).view(1, C, 1, 1)
    target = torch.full((1, 1, 1), IGNORE)  # an unannotated pixel may still get a soft target
    logp = torch.log_softmax(torch.tensor([1.0, 2.0, 0.5, -1.0]), 0)
    expected = -(0.25 * logp[0] + 0.75 * logp[1])
    assert per_image_loss(logits, target, IGNORE, soft_target=q).item() == pytest.approx(expected.item(), rel=1e-6)


def test_target_set_is_minus_log_of_the_sets_probability_and_empty_sets_do_not_count():
    z = torch.tensor([0.0, 1.0, 2.0, 3.0])
    logits = z.view(1, C, 1, 1).expand(1, C, 1, 2).clone().requires_grad_(True)
    target = torch.zeros(1, 1, 2, dtype=torch.long)
    s = torch.zeros(1, C, 1, 2, dtype=torch.bool)
    s[0, [1, 3], 0, 0] = True  # pixel 0: {1, 3}; pixel 1: empty, not counted
    p = torch.softmax(z, 0)
    expected = -torch.log(p[1] + p[3])
    loss = per_image_loss(logits, target, IGNORE, target_set=s)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[..., 1].abs().sum() == 0
    w = torch.tensor([[[2.0, 5.0]]])
    assert per_image_loss(logits, target, IGNORE, pixel_weights=w, target_set=s).item() == pytest.approx(
        2 * expected.item(), rel=1e-6
    )


def test_bad_arguments_are_value_errors_naming_them():
    logits, target = _case()
    with pytest.raises(ValueError, match="pixel_weights must have"):
        per_image_loss(logits, target, IGNORE, pixel_weights=torch.ones(3, 5))
    with pytest.raises(ValueError, match="finite and >= 0"):
        per_image_loss(logits, target, IGNORE, pixel_weights=-torch.ones(target.shape))
    with pytest.raises(ValueError, match="at most one"):
        s = torch.ones(logits.shape)
        per_image_loss(logits, target, IGNORE, soft_target=s, target_set=s.bool())
    with pytest.raises(ValueError, match="soft_target must have"):
        per_image_loss(logits, target, IGNORE, soft_target=torch.ones(3, C, 5, 5))
    with pytest.raises(ValueError, match=r"outside 0\.\.3"):
        per_image_loss(logits, target.masked_fill(target == IGNORE, 7), IGNORE, pixel_weights=torch.ones(3, 5, 6))
