"""The pixel-level strategies inside the training loop: one real step, checked image by image, pixel by pixel.

As ``test_method_in_loop.py`` does for the image weights: one ``nlkd.train.train(cfg)`` SGD step over the 16
training images of ``tiny_data`` (one batch) with the probe network (one 3×3 convolution, no BatchNorm, so an
image's loss depends on that image alone). The test writes each strategy's per-pixel rule out here, from the
strategy's description (never by calling its code), image by image, and checks

* each per-image loss the loop handed to ``weighted_loss`` equals one image's hand-computed loss, every image
  is matched once, and the image weight beside it is that image's;
* the logged ``train_loss`` equals Σ W_i·L_i / B, and the SGD update in ``last.pt`` equals −lr · Σ W_i·∇L_i / B.

The rules (C classes, y the annotation, p the probe's softmax, t the teacher's probabilities as the loop caches
them: softmax of the teacher, in steps of 1/255):

* ``oracle_pixel``: a pixel weighs 1 where y equals the fine mask, 0 elsewhere; L = mean CE over kept pixels.
* ``relax`` (r = 1): the label is the set S of classes annotated in the pixel's 3×3 window; L = mean −log Σ_S p.
* ``band_kd`` (R = 3, σ = 1, T = 2): d = distance to the nearest annotated boundary pixel (a pixel with a
  4-neighbour of another label); inside the band d < R the target is α·onehot(y) + (1 − α)·κ·t^T with
  α = 1 − exp(−d/σ), κ = max_c t_c and t^T ∝ t^(1/T); outside it onehot(y); L = mean −Σ_c q_c log p_c.
* ``nlkd_pixel`` (θ = 2, λ = 0.3): a_f(p) = 1 when network f predicts y_p at some pixel nearer than θ;
  w(p) = λ·a_student + (1 − λ)·a_teacher, L = Σ w·CE / #{w > 0}; image weight W = λ·BFmIoU(student) +
  (1 − λ)·(the image's teacher score, from a CSV of distinct scores).
* ``adele`` (classes 0, 2 and 5 triggered, τ = 0.5): a pixel's label becomes the student's argmax c when
  p_c > τ, c is triggered and c is annotated somewhere in the image; L = mean CE on the corrected labels.

What a broken loop would train on instead (plain CE: pixel weights, soft target or target set dropped;
the teacher maps of another image; no image weights) is checked to differ by far more than the tolerance.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import nlkd.train
from conftest import PROBE, one_step_config, probe_network, tiny_config
from nlkd.checkpoint import load_checkpoint, make_checkpoint
from nlkd.data.folder import FolderDataset
from nlkd.data.info import load_dataset_info
from nlkd.io import atomic_write_bytes, checkpoint_bytes
from nlkd.metrics import bf_and_iou
from nlkd.strategies.adele import Adele

LR = 0.5
RADIUS, SIGMA, TEMPERATURE = 3.0, 1.0, 2.0  # band_kd
THETA, LAM = 2.0, 0.3  # nlkd_pixel
TAU, TRIGGERED = 0.5, (0, 2, 5)  # adele


def _quiet(*args: object, **kwargs: object) -> None:
    pass


@dataclass
class Image:
    """One training image as a rule sees it."""

    log_p: Tensor  # (C, H, W) the probe's log-probabilities, with gradient
    coarse: Tensor  # (H, W) the annotation trained on
    fine: Tensor  # (H, W) the fine mask
    teacher: Tensor | None  # (C, H, W) the teacher's probabilities as cached, or None
    score: float | None  # the image's teacher score, or None


Rule = Callable[[Image], tuple[Tensor, float]]  # -> (the image's loss L, its image weight W)


def _ce(img: Image, labels: Tensor) -> Tensor:
    """(H, W) per-pixel cross-entropy against ``labels``."""
    return -img.log_p.gather(0, labels[None])[0]


def _plain_ce(img: Image) -> tuple[Tensor, float]:
    return _ce(img, img.coarse).mean(), 1.0


def _oracle_pixel(img: Image) -> tuple[Tensor, float]:
    kept = img.coarse == img.fine
    return _ce(img, img.coarse)[kept].sum() / kept.sum(), 1.0


def _pairs(h: int, w: int, dy: int, dx: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Index pairs (pixel p, pixel q = p + (dy, dx)) over every p whose q lies inside an H×W image."""
    y0, y1, x0, x1 = max(0, -dy), h - max(0, dy), max(0, -dx), w - max(0, dx)
    return (slice(y0, y1), slice(x0, x1)), (slice(y0 + dy, y1 + dy), slice(x0 + dx, x1 + dx))


def _relax(img: Image) -> tuple[Tensor, float]:
    c, h, w = img.log_p.shape
    onehot = F.one_hot(img.coarse, c).permute(2, 0, 1).bool()
    in_window = torch.zeros(c, h, w, dtype=torch.bool)  # S(p): the labels of p's 3×3 window inside the image
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            p, q = _pairs(h, w, dy, dx)
            in_window[:, p[0], p[1]] |= onehot[:, q[0], q[1]]
    return -torch.logsumexp(img.log_p.masked_fill(~in_window, float("-inf")), dim=0).mean(), 1.0


def _boundary_distance(mask: Tensor) -> Tensor:
    """(H, W) Euclidean distance of each pixel to the nearest pixel with a 4-neighbour of another label, where
    that distance is below the band radius R (inf elsewhere: only d < R matters)."""
    h, w = mask.shape
    edge = torch.zeros(h, w, dtype=torch.bool)
    vertical, horizontal = mask[1:] != mask[:-1], mask[:, 1:] != mask[:, :-1]  # pairs of 4-neighbours
    edge[1:] |= vertical
    edge[:-1] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    d = torch.full((h, w), math.inf)
    r = math.ceil(RADIUS)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx < RADIUS * RADIUS:
                p, q = _pairs(h, w, dy, dx)
                d[p] = torch.where(edge[q], torch.minimum(d[p], torch.tensor(math.hypot(dy, dx))), d[p])
    return d


def _band_kd(img: Image) -> tuple[Tensor, float]:
    d = _boundary_distance(img.coarse)
    alpha = torch.where(d < RADIUS, 1 - torch.exp(-d / SIGMA), torch.ones_like(d))
    soft = img.teacher ** (1 / TEMPERATURE)
    soft = soft / soft.sum(0)
    confidence = img.teacher.max(0).values
    onehot = F.one_hot(img.coarse, img.log_p.shape[0]).permute(2, 0, 1).float()
    q = alpha * onehot + (1 - alpha) * confidence * soft
    assert bool((q.sum(0) > 0).all()), "every pixel has a target here"
    return -(q * img.log_p).sum(0).mean(), 1.0


def _agrees(pred: Tensor, mask: Tensor) -> Tensor:
    """(H, W) float: 1 where ``pred`` holds the pixel's annotated class at some pixel nearer than θ."""
    h, w = mask.shape
    out = torch.zeros(h, w, dtype=torch.bool)
    r = math.ceil(THETA)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx < THETA * THETA:
                p, q = _pairs(h, w, dy, dx)
                out[p] |= pred[q] == mask[p]
    return out.float()


def _nlkd_image_weight(img: Image) -> float:
    student = img.log_p.detach().argmax(0)
    bf, iou = bf_and_iou(student[None], img.coarse[None], img.log_p.shape[0], THETA, None)
    return LAM * float((bf + iou)[0]) / 2 + (1 - LAM) * img.score


def _nlkd_pixel(img: Image) -> tuple[Tensor, float]:
    student, teacher = img.log_p.detach().argmax(0), img.teacher.argmax(0)
    w = LAM * _agrees(student, img.coarse) + (1 - LAM) * _agrees(teacher, img.coarse)
    kept = w > 0
    return (w * _ce(img, img.coarse))[kept].sum() / kept.sum(), _nlkd_image_weight(img)


def _adele(img: Image) -> tuple[Tensor, float]:
    confidence, pred = img.log_p.detach().exp().max(0)
    triggered = torch.isin(pred, torch.tensor(TRIGGERED))
    annotated = torch.isin(pred, img.coarse.unique())
    corrected = torch.where((confidence > TAU) & triggered & annotated, pred, img.coarse)
    return _ce(img, corrected).mean(), 1.0


@dataclass
class Case:
    """A strategy's rule, its settings, what it needs from a teacher, and the rules of broken loops."""

    rule: Rule
    changes: dict[str, object] = field(default_factory=dict)
    teacher: bool = False  # needs the teacher's probability maps
    scores: bool = False  # needs per-image teacher scores
    wrong: dict[str, Rule] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "oracle_pixel": Case(_oracle_pixel, wrong={"pixel weights dropped": _plain_ce}),
    "relax": Case(_relax, wrong={"target sets dropped": _plain_ce}),
    "band_kd": Case(
        _band_kd,
        {"strategy.band_radius": RADIUS, "strategy.band_sigma": SIGMA, "strategy.kd_temperature": TEMPERATURE},
        teacher=True,
        wrong={"soft target dropped": _plain_ce},
    ),
    "nlkd_pixel": Case(
        _nlkd_pixel,
        {"strategy.final_lambda": LAM, "strategy.warmup_epochs": 0, "strategy.tolerance": THETA},
        teacher=True,
        scores=True,
        wrong={
            "pixel weights dropped": lambda img: (_plain_ce(img)[0], _nlkd_image_weight(img)),
            "image weights dropped": lambda img: (_nlkd_pixel(img)[0], 1.0),
        },
    ),
    "adele": Case(_adele, {"strategy.adele_threshold": TAU}, wrong={"target sets dropped": _plain_ce}),
}


def _cached_probs(teacher: nn.Module, image: Tensor) -> Tensor:
    """(C, H, W) the teacher's softmax as the loop's cache holds it: uint8 levels q = round(255 p), p = q/255."""
    with torch.no_grad():
        q = teacher(image[None])[0].softmax(0).mul(255).round()
    return q * np.float32(1 / 255)


class HandStep:
    """Each training image's loss L_i, image weight W_i and gradient ∇L_i under a rule, one image at a time.

    ``shift`` gives image k the teacher maps of image k + shift (what a loop misaligning them trains on)."""

    def __init__(
        self,
        data: Path,
        rule: Rule,
        teacher: nn.Module | None = None,
        scores: dict[str, float] | None = None,
        shift: int = 0,
    ) -> None:
        info = load_dataset_info(data)
        coarse_ds = FolderDataset(data, "train", "train_coarse", info=info, size=(32, 48))
        fine_ds = FolderDataset(data, "train", "train", info=info, size=(32, 48))
        assert coarse_ds.ids == fine_ds.ids
        count = len(coarse_ds)
        maps = [None if teacher is None else _cached_probs(teacher, coarse_ds[k]["image"]) for k in range(count)]
        self.model = probe_network(info.num_classes)
        self.params = dict(self.model.named_parameters())
        self.loss: list[float] = []
        self.weight: list[float] = []
        self.grads: list[dict[str, Tensor]] = []
        for k in range(count):
            item = coarse_ds[k]
            self.model.zero_grad()
            log_p = F.log_softmax(self.model(item["image"][None])[0], dim=0)
            score = None if scores is None else scores[coarse_ds.ids[k]]
            loss, w = rule(Image(log_p, item["mask"], fine_ds[k]["mask"], maps[(k + shift) % count], score))
            loss.backward()
            self.loss.append(float(loss.detach()))
            self.weight.append(float(w))
            self.grads.append({n: p.grad.detach().clone() for n, p in self.params.items()})
        assert np.diff(np.sort(self.loss)).min() > 1e-4, "every image needs its own loss (matched by it)"

    def update(self) -> dict[str, Tensor]:
        b = len(self.grads)
        return {n: -LR * sum(w * g[n] for w, g in zip(self.weight, self.grads)) / b for n in self.params}

    def train_loss(self) -> float:
        return sum(w * v for w, v in zip(self.weight, self.loss)) / len(self.loss)


def _distance(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    num = sum(float((a[n] - b[n]).pow(2).sum()) for n in a)
    return math.sqrt(num / sum(float(b[n].pow(2).sum()) for n in b))


@pytest.fixture(scope="module")
def teacher_ckpt(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A probe-network checkpoint with other (and larger) weights than the student's: a confident teacher
    that agrees with the annotation on about half of the pixels."""
    info = load_dataset_info(tiny_data)
    net = probe_network(info.num_classes)
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    cfg = tiny_config(tiny_data, path.parent, **{"model.name": PROBE})
    atomic_write_bytes(path, checkpoint_bytes(make_checkpoint(cfg, info, [net], 0)))
    return path


def _teacher_network(path: Path) -> nn.Module:
    ckpt = load_checkpoint(path)
    net = probe_network(ckpt["info"]["num_classes"])
    net.load_state_dict(ckpt["models"][0])
    return net.eval()


def _write_scores(path: Path, ids: list[str]) -> dict[str, float]:
    """A distinct teacher score per image (0.05 ... 0.95, shuffled), written as a CSV in another order."""
    values = np.random.default_rng(3).permutation(np.linspace(0.05, 0.95, len(ids)))
    scores = {i: round(float(v), 6) for i, v in zip(ids, values)}
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "quality"])
        writer.writerows(sorted(scores.items(), reverse=True))
    return scores


@pytest.mark.parametrize("name", list(CASES))
def test_pixel_strategy_step_follows_its_per_pixel_rule(
    name: str,
    tiny_data: Path,
    tmp_path: Path,
    probe_model: str,
    recorded: list,
    teacher_ckpt: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = CASES[name]
    out = tmp_path / "run"
    cfg = one_step_config(tiny_data, out, probe_model, LR, **{"strategy.name": name, **case.changes})
    teacher = scores = None
    if case.teacher:
        cfg.strategy.teacher = str(teacher_ckpt)
        teacher = _teacher_network(teacher_ckpt)
    if case.scores:
        ids = FolderDataset(tiny_data, "train", "train_coarse", info=load_dataset_info(tiny_data)).ids
        scores = _write_scores(tmp_path / "scores.csv", list(ids))
        cfg.strategy.teacher_scores = str(tmp_path / "scores.csv")
    if name == "adele":  # the trigger fires between epochs; this step starts after it, for the chosen classes
        init = Adele.__init__

        def triggered_init(self: Adele, *args: object, **kwargs: object) -> None:
            init(self, *args, **kwargs)
            self.triggered[list(TRIGGERED)] = True

        monkeypatch.setattr(Adele, "__init__", triggered_init)

    hand = HandStep(tiny_data, case.rule, teacher, scores)
    tol = 1e-4
    wrong = {label: HandStep(tiny_data, rule, teacher, scores) for label, rule in case.wrong.items()}
    if case.teacher:
        wrong["teacher maps of another image"] = HandStep(tiny_data, case.rule, teacher, scores, shift=1)
    for label, broken in wrong.items():  # the checks below can tell each broken loop from the rule
        assert _distance(broken.update(), hand.update()) > 100 * tol, label

    nlkd.train.train(cfg, log=_quiet)

    assert len(recorded) == 1, f"expected one weighted_loss call (one step, one network), got {len(recorded)}"
    losses, w = recorded[0]
    matched = []
    for loss, w_loop in zip(losses.tolist(), w.tolist()):  # per image: one image's loss, that image's weight
        k = int(np.argmin(np.abs(np.array(hand.loss) - loss)))
        assert abs(hand.loss[k] - loss) < 2e-5, f"the loop's per-image loss {loss} matches no image's ({name})"
        assert w_loop == pytest.approx(hand.weight[k], abs=1e-6), f"image {k}: weight {w_loop}, not {hand.weight[k]}"
        matched.append(k)
    assert sorted(matched) == list(range(len(hand.loss)))
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["train_loss"] == pytest.approx(hand.train_loss(), rel=1e-5)
    trained = load_checkpoint(out / "last.pt")["models"][0]
    update = {n: trained[n] - hand.params[n].detach() for n in hand.params}
    assert _distance(update, hand.update()) < tol
