"""The method inside the training loop: NLKD's weights (Eq. 6) and what one real step does with them.

Unit level: ``NLKD.weights`` against Eq. 6 and the warm-up + linear λ schedule at several (epoch, step).

Loop level: one ``nlkd.train.train(cfg)`` step over the whole training set (batch = 16 images) with a
probe network (one 3×3 convolution, deterministic init, no BatchNorm, so each image's loss depends on
that image alone). The test recomputes, image by image, the per-image cross-entropy ``ce_i``, its
gradient ``g_i`` and the weight ``w_i`` the method prescribes for that image, then checks

* the weight the loop paired with each image's loss (recorded where the loop calls ``weighted_loss``,
  matched to the image by its loss value) equals ``w_i``;
* the logged ``train_loss`` equals Σ w_i·ce_i / B;
* the SGD update in ``last.pt`` equals −lr · Σ w_i·g_i / B (what was actually optimised).

Each test also checks that the wrong answers (unweighted mean, student and teacher swapped, teacher
scores in another image order) differ from the right one by far more than its tolerance, so a loop that
drops the weights, swaps the two networks' scores or misaligns the per-image teacher scores fails here.
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import nlkd.train
import nlkd.weighting
from conftest import one_step_config, probe_network
from nlkd.checkpoint import load_checkpoint
from nlkd.config import StrategyConfig
from nlkd.data.folder import FolderDataset
from nlkd.data.info import load_dataset_info
from nlkd.metrics import bf_and_iou
from nlkd.strategies import StepInputs, create_strategy

LR = 0.5
C = 3


def _quiet(*args: object, **kwargs: object) -> None:
    pass


# ----------------------------------------------------------------------------- NLKD.weights, Eq. 6


def _expected_lambda(t: float, warmup: int, epochs: int, final: float) -> float:
    """λ(t) of the paper: 0 during the warm-up, then linear to ``final`` at the start of the last epoch."""
    if t < warmup:
        return 0.0
    span = epochs - 1 - warmup
    return final if span <= 0 else final * min(1.0, (t - warmup) / span)


def _one_hot_logits(pred: Tensor) -> Tensor:
    return F.one_hot(pred, C).permute(0, 3, 1, 2).float()


def _nlkd_step(epoch: int, step: int, spe: int, teacher: Tensor) -> tuple[StepInputs, Tensor]:
    """Four 8×8 images: student prediction = annotation (score 1), one row wrong, a block wrong, all wrong.
    Returns the step and the student's BFmIoU per image (from the metric, which test_metrics pins)."""
    target = torch.zeros(4, 8, 8, dtype=torch.long)
    target[:, :, 4:] = 1
    target[:, 5:, :3] = 2
    pred = target.clone()
    pred[1, 0] = 2
    pred[2, 2:6, 2:6] = 0
    pred[3] = (target[3] + 1) % C
    bf, iou = bf_and_iou(pred, target, C, 2.0, None)
    step_inputs = StepInputs(
        index=torch.arange(4),
        target=target,
        logits=[_one_hot_logits(pred)],
        losses=[torch.zeros(4)],
        epoch=epoch,
        step=step,
        steps_per_epoch=spe,
        teacher_scores=teacher,
    )
    return step_inputs, ((bf + iou) / 2).float()


@pytest.mark.parametrize(
    ("epoch", "step"),
    [(0, 0), (1, 3), (2, 0), (2, 2), (3, 1), (4, 3), (5, 0), (5, 3)],
)
def test_nlkd_weights_follow_eq6_and_the_lambda_schedule(epoch: int, step: int) -> None:
    """W = λ·w_student + (1 − λ)·w_teacher, λ from the schedule at the fractional epoch epoch + step/spe
    (6 epochs, 2 of warm-up, final 0.8, 4 steps per epoch)."""
    epochs, warmup, final, spe = 6, 2, 0.8, 4
    strategy = create_strategy(StrategyConfig(name="nlkd", warmup_epochs=warmup, final_lambda=final), C, None, epochs)
    teacher = torch.tensor([0.2, 0.9, 0.55, 0.35])
    inputs, w_student = _nlkd_step(epoch, step, spe, teacher)
    assert w_student[0] == 1.0 and len(set(w_student.tolist())) == 4  # four different student scores
    lam = _expected_lambda(epoch + step / spe, warmup, epochs, final)
    (w,) = strategy.weights(inputs)
    expected = lam * w_student + (1 - lam) * teacher
    assert w.requires_grad is False
    torch.testing.assert_close(w, expected, rtol=0, atol=1e-6)
    if lam not in (0.0, 0.5):  # the two networks' roles are told apart here
        swapped = (1 - lam) * w_student + lam * teacher
        assert (swapped - expected).abs().max() > 0.05
    logged = strategy.log.pop()
    assert logged["lambda"] == pytest.approx(lam)
    assert logged["w_teacher"] == pytest.approx(float(teacher.mean()))
    assert ("w_student" in logged) == (lam > 0)


def test_nlkd_default_warmup_is_ten_percent_of_the_epochs_and_at_least_one() -> None:
    teacher = torch.tensor([0.2, 0.9, 0.55, 0.35])
    for epochs, warmup in ((30, 3), (5, 1), (1, 1)):
        strategy = create_strategy(StrategyConfig(name="nlkd"), C, None, epochs)
        for epoch in range(epochs):
            inputs, w_student = _nlkd_step(epoch, 0, 1, teacher)
            (w,) = strategy.weights(inputs)
            lam = _expected_lambda(epoch, min(warmup, epochs), epochs, 0.5)
            torch.testing.assert_close(w, lam * w_student + (1 - lam) * teacher, rtol=0, atol=1e-6)


def test_nlkd_nan_teacher_score_gives_weight_zero() -> None:
    """A NaN score marks an image without valid pixels (weighting.py's NaN rule): its weight is 0, the
    other images keep Eq. 6."""
    strategy = create_strategy(StrategyConfig(name="nlkd", warmup_epochs=0, final_lambda=0.5), C, None, 3)
    teacher = torch.tensor([0.2, float("nan"), 0.55, 0.35])
    inputs, w_student = _nlkd_step(2, 0, 4, teacher)
    (w,) = strategy.weights(inputs)
    assert w[1] == 0.0
    torch.testing.assert_close(w[[0, 2, 3]], (0.5 * w_student + 0.5 * teacher)[[0, 2, 3]])


# ----------------------------------------------------------------------------- one real training step


class HandStep:
    """Each training image's loss, gradient and student score, computed here one image at a time."""

    def __init__(self, data: Path) -> None:
        info = load_dataset_info(data)
        ds = FolderDataset(data, "train", "train_coarse", info=info, size=(32, 48))
        self.ids = list(ds.ids)
        self.model = probe_network(info.num_classes)
        self.params = dict(self.model.named_parameters())
        self.ce, self.grads, self.student = [], [], []
        for k in range(len(ds)):
            item = ds[k]
            x, y = item["image"][None], item["mask"][None]
            self.model.zero_grad()
            logits = self.model(x)
            ce = F.cross_entropy(logits, y)  # mean over the image's pixels (no ignore label here)
            ce.backward()
            self.ce.append(float(ce.detach()))
            self.grads.append({n: p.grad.detach().clone() for n, p in self.params.items()})
            bf, iou = bf_and_iou(logits.argmax(1), y, info.num_classes, 2.0, None)
            self.student.append(float((bf + iou)[0]) / 2)
        gaps = np.diff(np.sort(self.ce))
        assert gaps.min() > 1e-4, "the probe must give every image a different loss (images are told apart by it)"

    def expected_update(self, w: list[float]) -> dict[str, Tensor]:
        b = len(w)
        return {n: -LR * sum(wi * g[n] for wi, g in zip(w, self.grads)) / b for n in self.params}

    def expected_loss(self, w: list[float]) -> float:
        return sum(wi * ce for wi, ce in zip(w, self.ce)) / len(w)

    def image_of(self, ce: float) -> int:
        k = int(np.argmin(np.abs(np.array(self.ce) - ce)))
        assert abs(self.ce[k] - ce) < 2e-5, f"the loop's loss {ce} matches no image's hand-computed loss"
        return k


@pytest.fixture(scope="module")
def hand(tiny_data: Path) -> HandStep:
    return HandStep(tiny_data)


def _update(out: Path, hand: HandStep) -> dict[str, Tensor]:
    trained = load_checkpoint(out / "last.pt")["models"][0]
    return {n: trained[n] - hand.params[n].detach() for n in hand.params}


def _distance(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    """Relative distance of two parameter updates."""
    num = sum(float((a[n] - b[n]).pow(2).sum()) for n in a)
    den = sum(float(b[n].pow(2).sum()) for n in b)
    return math.sqrt(num / den)


def _check_step(
    out: Path,
    hand: HandStep,
    calls: list[tuple[Tensor, Tensor]],
    w: list[float],
    wrong: dict[str, list[float]],
) -> None:
    """The loop's one step used weight ``w[k]`` for image k (per image), logged Σ w·ce / B and moved the
    parameters by −lr·Σ w·g / B. ``wrong``: weightings a broken loop would use; each must be told apart."""
    tol = 1e-4
    expected = hand.expected_update(w)
    for name, w_wrong in wrong.items():  # the check below can see each of these mistakes
        assert _distance(hand.expected_update(w_wrong), expected) > 100 * tol, name
    assert len(calls) == 1, f"expected one weighted_loss call (one step, one network), got {len(calls)}"
    ce, w_loop = calls[0]
    assert len(ce) == len(hand.ids)
    seen = set()
    for ce_j, w_j in zip(ce.tolist(), w_loop.tolist()):
        k = hand.image_of(ce_j)
        seen.add(k)
        assert w_j == pytest.approx(w[k], abs=1e-6), f"image {hand.ids[k]}: loop weight {w_j}, expected {w[k]}"
    assert seen == set(range(len(hand.ids)))
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["train_loss"] == pytest.approx(hand.expected_loss(w), rel=1e-5)
    assert _distance(_update(out, hand), expected) < tol


def _distinct_scores(ids: list[str], seed: int) -> dict[str, float]:
    """A distinct score per image: 0.05, 0.11, ..., 0.95 in a shuffled assignment."""
    values = np.linspace(0.05, 0.95, len(ids))
    np.random.default_rng(seed).shuffle(values)
    return {i: round(float(v), 6) for i, v in zip(ids, values)}


def _write_scores(path: Path, scores: dict[str, float], column: str = "weight", seed: int = 7) -> Path:
    rows = list(scores.items())
    random.Random(seed).shuffle(rows)  # the file's order is not the data set's
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", column])
        writer.writerows(rows)
    return path


def _shifted(w: list[float]) -> list[float]:
    return w[1:] + w[:1]


def test_reweight_step_weights_each_image_by_its_own_csv_score(
    tiny_data: Path, tmp_path: Path, hand: HandStep, probe_model: str, recorded: list
) -> None:
    scores = _distinct_scores(hand.ids, seed=0)
    csv_path = _write_scores(tmp_path / "scores.csv", scores)
    cfg = one_step_config(tiny_data, tmp_path / "run", probe_model, LR, **{"strategy.name": "reweight"})
    cfg.strategy.teacher_scores = str(csv_path)
    nlkd.train.train(cfg, log=_quiet)
    w = [scores[i] for i in hand.ids]
    wrong = {"unweighted": [1.0] * len(w), "misaligned": _shifted(w), "reversed": w[::-1]}
    _check_step(tmp_path / "run", hand, recorded, w, wrong)


def test_shuffled_scores_control_weights_each_image_by_another_images_score(
    tiny_data: Path, tmp_path: Path, hand: HandStep, probe_model: str, recorded: list
) -> None:
    scores = _distinct_scores(hand.ids, seed=0)
    cfg = one_step_config(tiny_data, tmp_path / "run", probe_model, LR, **{"strategy.name": "reweight"})
    cfg.strategy.teacher_scores = str(_write_scores(tmp_path / "scores.csv", scores))
    cfg.strategy.shuffle_scores = True
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    nlkd.train.shuffled(torch.zeros(len(hand.ids)), cfg.seed)
    assert torch.equal(torch.rand(3), before)  # the permutation draws from its own generator
    nlkd.train.train(cfg, log=_quiet)
    own = [scores[i] for i in hand.ids]
    w = nlkd.train.shuffled(torch.tensor(own), cfg.seed).tolist()
    assert sorted(w) == pytest.approx(sorted(own)) and w != pytest.approx(own)  # the same weights, other images
    _check_step(tmp_path / "run", hand, recorded, w, {"own scores": own, "unweighted": [1.0] * len(w)})


@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_nlkd_step_weights_each_image_by_eq6(
    lam: float, tiny_data: Path, tmp_path: Path, hand: HandStep, probe_model: str, recorded: list
) -> None:
    """λ = 0: inside the warm-up, the teacher's score alone. λ = 0.3 (no warm-up, one epoch: the final λ
    from the first step): 0.3·student + 0.7·teacher, the student scored from this very forward pass."""
    scores = _distinct_scores(hand.ids, seed=1)
    csv_path = _write_scores(tmp_path / "scores.csv", scores)
    changes = {"strategy.name": "nlkd", "strategy.final_lambda": 0.3, "strategy.warmup_epochs": 1 if lam == 0 else 0}
    cfg = one_step_config(tiny_data, tmp_path / "run", probe_model, LR, **changes)
    cfg.strategy.teacher_scores = str(csv_path)
    nlkd.train.train(cfg, log=_quiet)
    teacher = [scores[i] for i in hand.ids]
    w = [lam * s + (1 - lam) * t for s, t in zip(hand.student, teacher)]
    wrong = {"unweighted": [1.0] * len(w), "misaligned": _shifted(w)}
    if lam > 0:
        wrong["student and teacher swapped"] = [(1 - lam) * s + lam * t for s, t in zip(hand.student, teacher)]
        wrong["teacher misaligned"] = [lam * s + (1 - lam) * t for s, t in zip(hand.student, _shifted(teacher))]
    _check_step(tmp_path / "run", hand, recorded, w, wrong)
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert record["lambda"] == pytest.approx(lam)


def test_fixed_step_ignores_the_images_weighted_zero(
    tiny_data: Path, tmp_path: Path, hand: HandStep, probe_model: str, recorded: list
) -> None:
    """``fixed`` with weight 0 on five chosen images: those images' gradients must not reach the update."""
    chosen = [hand.ids[k] for k in (0, 3, 4, 9, 14)]
    (tmp_path / "coarse.txt").write_text("\n".join(chosen) + "\n")
    changes = {
        "strategy.name": "fixed",
        "strategy.coarse_weight": 0.0,
        "strategy.coarse_list": str(tmp_path / "coarse.txt"),
    }
    nlkd.train.train(one_step_config(tiny_data, tmp_path / "run", probe_model, LR, **changes), log=_quiet)
    w = [0.0 if i in chosen else 1.0 for i in hand.ids]
    _check_step(tmp_path / "run", hand, recorded, w, {"unweighted": [1.0] * len(w), "misaligned": _shifted(w)})
