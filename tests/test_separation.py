"""Weights that separate: rank / GMM transforms, batch-mean normalisation, and the separation figures logged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from nlkd.config import StrategyConfig, check_config
from nlkd.errors import ConfigError
from nlkd.score_transforms import ScoreTransform, fit_gaussian_mixture2, normalise_batch_mean, rank_among
from nlkd.separation import WeightSeparation, corrupted_loss_share, weight_auroc, weight_ratio
from nlkd.strategies import LossWeights, StepInputs, create_strategy
from nlkd.train import train

C = 3


def test_rank_is_the_mid_rank_percentile_among_the_reference():
    ref = torch.tensor([0.2, 0.4, 0.4, 0.6, float("nan")])  # NaN left out: 4 scores
    got = rank_among(torch.tensor([0.1, 0.2, 0.4, 0.5, 0.7, float("nan")]), ref)
    assert got[:5].tolist() == pytest.approx([0.0, 0.125, 0.5, 0.75, 1.0]) and got[5].isnan()


def test_gmm_recovers_two_clusters_and_its_posterior():
    low, high = [0.1, 0.2, 0.3] * 10, [0.7, 0.8, 0.9] * 30  # 25 % low, 75 % high
    g = fit_gaussian_mixture2(torch.tensor(low + high), iterations=200, tol=1e-10, reg=1e-6)
    assert g.means == pytest.approx((0.2, 0.8), abs=1e-6)
    assert g.weights == pytest.approx((0.25, 0.75), abs=1e-6)
    assert g.variances == pytest.approx((0.02 / 3 + 1e-6,) * 2, rel=1e-4)
    post = g.posterior_high(torch.tensor([0.2, 0.5, 0.8]))
    # at the midpoint equal variances leave only the prior: 0.75
    assert post.tolist() == pytest.approx([0.0, 0.75, 1.0], abs=1e-6)


def test_gmm_transform_is_not_taken_by_a_few_outliers():
    # the shape that made a CamVid run collapse: a Gaussian bulk (mean 0.40, sd 0.075, as the teacher's
    # scores there) and 2 outliers far above it. Run to convergence, EM gives the outliers a component of
    # their own and every other weight ~0.
    bulk = torch.distributions.Normal(0.40, 0.075).icdf((torch.arange(365) + 0.5) / 365)
    scores = torch.cat([bulk, torch.tensor([0.80, 0.84])])
    converged = fit_gaussian_mixture2(scores, iterations=200, tol=1e-10, reg=1e-6)
    assert converged.weights[1] < 0.02  # the failure the defaults avoid is real
    w = ScoreTransform("gmm", scores)(scores)
    assert 0.3 < float(w.mean()) < 0.7  # the default (DivideMix's early stop) splits the bulk
    assert float(w[:180].mean()) < 0.5 < float(w[185:].mean())  # low half down-weighted, high half kept


def test_normalise_batch_mean():
    assert normalise_batch_mean(torch.tensor([1.0, 3.0, float("nan"), 0.0])).tolist() == [1.0, 3.0, 0.0, 0.0]
    assert normalise_batch_mean(torch.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def _step(teacher: list[float], pred_equals_target: bool = True, epoch: int = 0) -> StepInputs:
    b = len(teacher)
    target = torch.zeros(b, 8, 8, dtype=torch.long)
    target[:, :, 4:] = 1
    pred = target if pred_equals_target else torch.zeros_like(target)
    logits = torch.nn.functional.one_hot(pred, C).permute(0, 3, 1, 2).float()
    return StepInputs(
        index=torch.arange(b),
        target=target,
        logits=[logits],
        losses=[torch.zeros(b)],
        epoch=epoch,
        step=0,
        steps_per_epoch=1,
        teacher_scores=torch.tensor(teacher),
    )


def test_reweight_rank_and_gmm_weights_and_raw_unchanged():
    ref = torch.tensor([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    batch = [0.2, 0.8, 0.9]
    raw = create_strategy(StrategyConfig(name="reweight"), C, None, 4)
    raw.setup(ref)
    assert raw.weights(_step(batch))[0].tolist() == pytest.approx(batch)
    rank = create_strategy(StrategyConfig(name="reweight", transform="rank"), C, None, 4)
    rank.setup(ref)
    pct = torch.tensor([1.5, 4.5, 5.5]) / 6
    assert rank.weights(_step(batch))[0].tolist() == pytest.approx((pct / pct.mean()).tolist())
    gmm = create_strategy(StrategyConfig(name="reweight", transform="gmm"), C, None, 4)
    gmm.setup(ref)
    post = ScoreTransform("gmm", ref)(torch.tensor(batch))
    w = gmm.weights(_step(batch))[0]
    assert w.mean().item() == pytest.approx(1.0) and w.tolist() == pytest.approx((post / post.mean()).tolist())
    with pytest.raises(ConfigError, match="raw, rank or gmm"):
        check_config(tiny_config(Path("."), Path("."), **{"strategy.transform": "sigmoid"}))


def test_nlkd_maps_the_students_score_through_the_teacher_fit():
    ref = torch.tensor([0.1, 0.2, 0.3, 0.7, 0.8, 1.0])
    s = create_strategy(StrategyConfig(name="nlkd", transform="rank", warmup_epochs=0, final_lambda=1.0), C, None, 2)
    s.setup(ref)
    # λ = 1 at the last epoch: only the student counts. Its prediction equals the annotation: score 1 -> the
    # top rank among the teacher scores (11/12), whatever the teacher said; equal in the batch -> all 1
    w = s.weights(_step([0.1, 0.2], epoch=1))[0]
    assert w.tolist() == [1.0, 1.0]
    logged = s.log.pop()
    assert logged["w_student"] == pytest.approx(11 / 12)


def test_weight_tolerance_is_the_strategys_not_the_evaluations(tiny_data: Path, tmp_path: Path, monkeypatch):
    import nlkd.train as loop

    seen = {}

    def fake_scores(dataset, **kw):  # the loop's call: record the tolerance it scores with
        seen.update(kw)
        return torch.ones(len(dataset))

    monkeypatch.setattr(loop, "teacher_scores", fake_scores)
    monkeypatch.setattr(loop, "_check_teacher", lambda *a, **k: None)  # "t.pt" is never read
    changes = {"strategy.name": "nlkd", "strategy.tolerance": 1.0, "eval_tolerance": 3.0, "strategy.teacher": "t.pt"}
    run = loop.build_run(tiny_config(tiny_data, tmp_path / "run", **changes), saved=None, log=lambda *a: None)
    assert seen["tolerance"] == 1.0 and run.strategy.weighter.tolerance == 1.0 and run.cfg.eval_tolerance == 3.0


def test_auroc_ratio_and_corrupted_pixel_share_on_hand_cases():
    bad = torch.tensor([True, True, False, False])
    assert weight_auroc(torch.tensor([0.0, 0.1, 0.5, 0.9]), bad) == 1.0
    assert weight_auroc(torch.tensor([1.0, 1.0, 1.0, 1.0]), bad) == 0.5
    assert weight_auroc(torch.tensor([0.9, 0.5, 0.1, 0.0]), bad) == 0.0
    assert weight_ratio(torch.tensor([0.2, 0.4, 1.0, 1.0]), bad) == pytest.approx(0.3)
    target = torch.tensor([[[0, 1], [1, 255]], [[2, 2], [2, 2]]])
    fine = torch.tensor([[[0, 0], [1, 1]], [[2, 2], [2, 0]]])  # image 0: 1 of 3 counted wrong; image 1: 1 of 4
    lw = LossWeights(torch.tensor([1.0, 0.5]))
    on, total = corrupted_loss_share(lw, target, fine, 255).tolist()
    assert (on, total) == pytest.approx((1 / 3 + 0.5 / 4, 1.5))
    pix = LossWeights(torch.tensor([1.0, 0.5]), pixel=(target == fine).float())
    assert corrupted_loss_share(pix, target, fine, 255)[0].item() == 0.0


@pytest.mark.parametrize(
    ("name", "auroc", "ratio", "share"),
    [("baseline", 0.5, 1.0, None), ("oracle_image", 1.0, 0.0, 0.0), ("oracle_pixel", 0.5, 1.0, 0.0)],
)
def test_the_loop_logs_the_separation_figures(name, auroc, ratio, share, tiny_data: Path, tmp_path: Path):
    cfg = tiny_config(tiny_data, tmp_path / name, **{"strategy.name": name, "data.labels": "train_coarse"})
    record = train(cfg, log=lambda *a, **k: None)
    assert record["weight_auroc"] == auroc and record["weight_ratio_corrupted_clean"] == ratio
    got = record["loss_share_corrupted_pixels"]
    assert got == share if share is not None else 0 < got < 1


def test_weight_separation_without_flags_or_fine_masks_logs_nothing():
    sep = WeightSeparation()
    sep.add(LossWeights(torch.ones(2)), _step([0.5, 0.5]), None)
    assert sep.pop() == {}
