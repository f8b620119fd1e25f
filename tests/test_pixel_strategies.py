"""Pixel-level strategies (relax, band_kd, nlkd_pixel, adele, band_ignore) on tiny cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nlkd.config import StrategyConfig
from nlkd.early_learning import iou_curve
from nlkd.errors import ConfigError
from nlkd.strategies import STRATEGIES, StepInputs, create_strategy
from nlkd.strategies.base import LossWeights
from nlkd.weighting import per_image_cross_entropy, per_image_loss

IGN = 255
C = 3


def _target(b: int = 2, h: int = 10, w: int = 12) -> torch.Tensor:
    t = torch.zeros(b, h, w, dtype=torch.long)
    t[:, :, 6:] = 1
    t[:, 6:, :4] = 2
    t[0, 0, :3] = IGN
    return t


def _step(target: torch.Tensor, logits: torch.Tensor, epoch: int = 0, **kw) -> StepInputs:
    ce = per_image_cross_entropy(logits, target, IGN)
    return StepInputs(
        index=torch.arange(len(target)),
        target=target,
        logits=[logits],
        losses=[ce],
        epoch=epoch,
        step=0,
        steps_per_epoch=1,
        **kw,
    )


def _loss(lw: LossWeights, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    per_image = per_image_loss(logits, target, IGN, lw.pixel, lw.soft_target, lw.target_set)
    return per_image * lw.image


def _one_hot_prob(labels: torch.Tensor) -> torch.Tensor:
    """(B, H, W) labels -> (B, C, H, W) one-hot probabilities; ignore pixels get no class."""
    p = F.one_hot(labels.clamp(max=C - 1), C).permute(0, 3, 1, 2).float()
    return p * (labels != IGN).unsqueeze(1)


def _make(name: str, epochs: int = 10, **cfg) -> object:
    return create_strategy(StrategyConfig(name=name, **cfg), C, IGN, epochs)


def test_registered():
    assert {"relax", "band_kd", "nlkd_pixel", "adele"} <= set(STRATEGIES)


def test_relax_radius_zero_is_cross_entropy():
    torch.manual_seed(0)
    t, z = _target(), torch.randn(2, C, 10, 12)
    lw = _make("relax", relax_radius=0).loss_weights(_step(t, z))[0]
    torch.testing.assert_close(_loss(lw, z, t), per_image_cross_entropy(z, t, IGN))


def test_relax_lowers_the_loss_only_near_boundaries_and_only_in_doubt():
    torch.manual_seed(0)
    t, z = _target(), torch.randn(2, C, 10, 12)
    ce = per_image_cross_entropy(z, t, IGN)
    relaxed = _loss(_make("relax").loss_weights(_step(t, z))[0], z, t)
    assert bool((relaxed < ce).all())
    # doubt_rule=teacher with a teacher that agrees everywhere: nothing is in doubt but the ignore pixels
    prob = _one_hot_prob(t)
    strat = _make("relax", doubt_rule="teacher")
    assert strat.needs_extras == ("teacher_prob",)
    sets = strat.loss_weights(_step(t, z, extras={"teacher_prob": prob}))[0].target_set
    labelled = t != IGN
    assert torch.equal(sets.sum(1)[labelled], torch.ones_like(t)[labelled])
    assert sets[0, :, 0, 2].tolist() == [True, False, False]  # an ignore pixel takes its neighbours' classes
    # ... and it trains on the annotation elsewhere: equal to CE once the ignore pixels are left out
    t2 = t.clone()
    t2[t2 == IGN] = 0
    lw = _make("relax", doubt_rule="teacher").loss_weights(_step(t2, z, extras={"teacher_prob": _one_hot_prob(t2)}))
    torch.testing.assert_close(_loss(lw[0], z, t2), per_image_cross_entropy(z, t2, IGN))


def test_relax_score_rule_relaxes_low_scored_images_only():
    torch.manual_seed(0)
    t, z = _target(), torch.randn(2, C, 10, 12)
    strat = _make("relax", doubt_rule="score", doubt_quantile=0.5)
    assert strat.needs_teacher
    strat.setup(torch.tensor([0.2, 0.4, 0.6, 0.8]))
    sets = strat.loss_weights(_step(t, z, teacher_scores=torch.tensor([0.9, 0.1])))[0].target_set
    assert int(sets[0].sum(0).max()) == 1 and int(sets[1].sum(0).max()) > 1


def test_band_kd_with_a_one_hot_teacher_equal_to_the_annotation_is_cross_entropy():
    torch.manual_seed(0)
    t, z = _target(), torch.randn(2, C, 10, 12)
    strat = _make("band_kd", kd_temperature=2.0)
    lw = strat.loss_weights(_step(t, z, extras={"teacher_prob": _one_hot_prob(t)}))[0]
    torch.testing.assert_close(_loss(lw, z, t), per_image_cross_entropy(z, t, IGN))


def test_band_kd_targets_known_values():
    t = torch.zeros(1, 1, 8, dtype=torch.long)
    t[..., 4:] = 1  # boundary pixels x = 3, 4; d = 1 at x = 2, 5 ...
    prob = torch.tensor([0.6, 0.3, 0.1]).view(1, C, 1, 1).expand(1, C, 1, 8).clone()
    z = torch.zeros(1, C, 1, 8)
    q = _make("band_kd", band_radius=2.0, band_sigma=1.0).loss_weights(_step(t, z, extras={"teacher_prob": prob}))
    q = q[0].soft_target[0, :, 0]
    teacher = torch.tensor([0.6, 0.3, 0.1]) * 0.6  # times the teacher's confidence
    torch.testing.assert_close(q[:, 3], teacher)  # on the boundary: the teacher alone
    a = 1 - math.exp(-1.0)
    torch.testing.assert_close(q[:, 5], a * torch.tensor([0.0, 1.0, 0.0]) + (1 - a) * teacher)
    assert q[:, 0].tolist() == [1.0, 0.0, 0.0] and q[:, 7].tolist() == [0.0, 1.0, 0.0]  # d = 3, 3: outside


def test_nlkd_pixel_weights():
    t = torch.zeros(1, 1, 12, dtype=torch.long)
    t[..., 6:] = 1
    teacher = t.clone()
    teacher[..., 6:9] = 0  # the teacher puts the boundary 3 px to the right
    z = torch.randn(1, C, 1, 12)
    strat = _make("nlkd_pixel", warmup_epochs=2, tolerance=2.0)
    extras = {"teacher_prob": _one_hot_prob(teacher)}
    lw = strat.loss_weights(_step(t, z, teacher_scores=torch.tensor([0.7]), extras=extras))[0]
    assert lw.image.tolist() == pytest.approx([0.7])  # warm-up: the teacher's image score
    # annotated 1 at x = 6, 7, 8 but the teacher's nearest 1 is at x = 9: agreement within θ = 2 only at x = 8
    assert lw.pixel[0, 0].tolist() == [1.0] * 6 + [0.0, 0.0] + [1.0] * 4
    # after the warm-up the student (here: predicting the annotation) enters with weight λ
    z_ann = F.one_hot(t, C).permute(0, 3, 1, 2).float() * 10
    later = strat.loss_weights(_step(t, z_ann, epoch=9, teacher_scores=torch.tensor([0.7]), extras=extras))[0]
    lam = strat.weighter.schedule(9)
    assert lam > 0
    assert later.pixel[0, 0, 6].item() == pytest.approx(lam)
    assert later.image.item() == pytest.approx(lam * 1.0 + (1 - lam) * 0.7)


def _adele_with_history(series: dict[int, np.ndarray], epochs: int, n: int) -> object:
    """An adele strategy after ``n`` epochs whose per-class IoU followed ``series`` (class -> values)."""
    strat = _make("adele", epochs=epochs)
    for e in range(n):
        counts = torch.zeros(2, C, dtype=torch.int64)
        for c, values in series.items():
            counts[:, c] = torch.tensor([round(1000 * values[e]), 1000])
        strat.counts = counts
        strat._close_epoch()
    return strat


def test_adele_triggers_after_the_fitted_curve_flattens_and_not_before():
    curve = iou_curve(np.arange(30.0), 0.8, 1.0, 2.0)  # update epoch 6
    linear = np.linspace(0.05, 0.6, 30)
    assert not _adele_with_history({0: curve, 1: linear}, 30, 6).triggered.any()
    strat = _adele_with_history({0: curve, 1: linear}, 30, 7)
    assert strat.triggered.tolist() == [True, False, False]
    # the state resumes exactly
    again = _make("adele", epochs=30)
    again.load_state_dict(strat.state_dict())
    np.testing.assert_equal(again.state_dict(), strat.state_dict())  # NaN (class 2 absent) equals NaN here
    assert np.isnan(strat.history[0][2])


def test_adele_changes_no_label_before_its_trigger_then_corrects_confident_pixels():
    torch.manual_seed(0)
    t = _target(1)
    z = torch.randn(1, C, 10, 12, requires_grad=True)
    strat = _make("adele", epochs=30)
    for epoch in range(3):  # too few epochs to fit: plain CE, no target replaced
        lw = strat.loss_weights(_step(t, z, epoch=epoch))[0]
        assert lw.image_only and lw.image.tolist() == [1.0]
    strat.triggered[1] = True
    z_conf = torch.zeros(1, C, 10, 12)
    z_conf[:, 1] = 5.0  # confident class 1 everywhere
    sets = strat.loss_weights(_step(t, z_conf, epoch=3))[0].target_set
    labels = sets.float().argmax(1)
    assert bool((labels[t != IGN] == 1).all())
    assert not sets[0, :, 0, 0].any()  # ignore pixels stay unknown


def test_adele_sums_the_epoch_counts_over_processes(tmp_path):
    """Under DDP the epoch's counts are all-reduced before the fit (a one-process gloo group here)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        strat = _make("adele", epochs=30)
        strat.counts = torch.tensor([[3, 0, 5], [4, 0, 10]])
        strat._close_epoch()
    finally:
        dist.destroy_process_group()
    np.testing.assert_equal(strat.history, [[0.75, np.nan, 0.5]])
    assert strat.counts.sum() == 0


# --- band_ignore ---------------------------------------------------------------------------------------


def _vertical_edge(b: int = 2, h: int = 6, w: int = 10) -> torch.Tensor:
    """Class 0 in columns 0-4, class 1 in columns 5-9: boundary pixels are columns 4 and 5."""
    t = torch.zeros(b, h, w, dtype=torch.long)
    t[:, :, 5:] = 1
    return t


def test_band_ignore_all_drops_exactly_the_pixels_nearer_than_the_radius():
    t = _vertical_edge()
    lw = _make("band_ignore", band_radius=2.0).loss_weights(_step(t, torch.zeros(2, C, 6, 10)))[0]
    dropped_cols = {int(c) for c in (lw.pixel[0] == 0).nonzero()[:, 1]}
    assert dropped_cols == {3, 4, 5, 6}  # distance 0 (columns 4, 5) and 1 (3, 6); 2 is not < 2
    assert torch.equal(lw.pixel[0], lw.pixel[1]) and torch.equal(lw.image, torch.ones(2))
    assert set(lw.pixel.unique().tolist()) == {0.0, 1.0}


def test_band_ignore_score_rule_drops_the_band_of_low_scored_images_only():
    t = _vertical_edge(b=3)
    s = _make("band_ignore", band_radius=2.0, doubt_rule="score", doubt_quantile=0.5)
    assert s.needs_teacher
    s.setup(torch.tensor([0.2, 0.5, 0.9, 0.8]))  # median cut-off 0.65 (torch.quantile interpolates)
    step = _step(t, torch.zeros(3, C, 6, 10), teacher_scores=torch.tensor([0.3, 0.9, float("nan")]))
    pixel = s.loss_weights(step)[0].pixel
    assert (pixel[0] == 0).sum() == 4 * 6  # low score: the band of 4 columns dropped
    assert torch.equal(pixel[1], torch.ones(6, 10))  # above the cut-off: plain CE
    assert (pixel[2] == 0).sum() == 4 * 6  # unscorable: in doubt


def test_band_ignore_leaves_ignore_pixels_out_of_the_logged_share_and_equals_ce_off_the_band():
    t = _vertical_edge(b=1)
    t[0, 0, :] = IGN  # an unlabelled first row: its neighbours in row 1 become boundary too
    s = _make("band_ignore", band_radius=1.0)
    logits = torch.randn(1, C, 6, 10, generator=torch.Generator().manual_seed(0))
    lw = s.loss_weights(_step(t, logits))[0]
    annotated = t != IGN
    dropped = (lw.pixel == 0) & annotated
    assert s.log.pop()["dropped_share"] == pytest.approx(float(dropped.sum() / annotated.sum()))
    kept = (lw.pixel == 1) & annotated
    ce = F.cross_entropy(logits, t.clamp(max=C - 1), reduction="none")[kept].mean()
    assert _loss(lw, logits, t)[0] == pytest.approx(float(ce), rel=1e-5)


def test_band_ignore_teacher_side_drops_only_the_side_the_teacher_says_moved():
    t = _vertical_edge(b=1)  # annotated boundary between columns 4 and 5
    truth = torch.zeros_like(t)
    truth[:, :, 7:] = 1  # class 1 was grown by 2 columns: 5, 6 are wrong
    s = _make("band_ignore", band_radius=3.0, band_side="teacher")
    assert "teacher_prob" in s.needs_extras and not s.needs_teacher
    lw = s.loss_weights(_step(t, torch.zeros(1, C, 6, 10), extras={"teacher_prob": _one_hot_prob(truth)}))[0]
    assert {int(c) for c in (lw.pixel[0] == 0).nonzero()[:, 1]} == {5, 6}
    with pytest.raises(ConfigError, match="band_side"):
        _make("band_ignore", band_side="left")
