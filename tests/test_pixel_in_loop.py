"""The pixel-level strategies inside the training loop: one real step, checked image by image, pixel by pixel.

As ``test_method_in_loop.py`` does for the image weights: one ``nlkd.train.train(cfg)`` SGD step over the 16
training images of ``tiny_data`` (one batch) with the probe network (one 3×3 convolution, no BatchNorm, so an
image's loss depends on that image alone). The test writes each strategy's per-pixel rule out here, image by
image, and checks

* each per-image loss the loop handed to ``weighted_loss`` equals one image's hand-computed loss, and every
  image is matched once;
* the logged ``train_loss`` equals their mean, and the SGD update in ``last.pt`` equals −lr · the mean of
  their gradients.

The rules: ``oracle_pixel`` weighs a pixel 1 where the coarse annotation equals the fine mask and 0 elsewhere
(an image's loss is the mean CE over its kept pixels); ``relax`` (r = 1) replaces each pixel's label by the
set of classes annotated in its 3×3 window (loss −log Σ_{c∈S} p_c, mean over the image). Plain CE, which a
loop that drops the pixel weights or the target sets would train on, is checked to differ by far more than
the tolerance.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
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
from nlkd.data.folder import FolderDataset
from nlkd.data.info import load_dataset_info

LR = 0.5


def _quiet(*args: object, **kwargs: object) -> None:
    pass


def _oracle_pixel_loss(log_p: Tensor, coarse: Tensor, fine: Tensor) -> Tensor:
    """Mean CE over the pixels whose coarse label equals the fine one. log_p (C, H, W); masks (H, W)."""
    ce = -log_p.gather(0, coarse[None])[0]
    kept = coarse == fine
    return ce[kept].sum() / kept.sum()


def _relax_loss(log_p: Tensor, coarse: Tensor) -> Tensor:
    """Mean over pixels of −log Σ p_c over the classes annotated in the pixel's 3×3 window."""
    c, h, w = log_p.shape
    in_window = torch.zeros(c, h, w, dtype=torch.bool)
    for y in range(h):
        for x in range(w):
            for label in coarse[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].unique():
                in_window[label, y, x] = True
    return -torch.logsumexp(log_p.masked_fill(~in_window, float("-inf")), dim=0).mean()


def _plain_ce(log_p: Tensor, coarse: Tensor, fine: Tensor) -> Tensor:
    return -log_p.gather(0, coarse[None])[0].mean()


RULES: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "oracle_pixel": _oracle_pixel_loss,
    "relax": lambda log_p, coarse, fine: _relax_loss(log_p, coarse),
}


class HandStep:
    """Each training image's loss and gradient under a per-pixel rule, computed one image at a time."""

    def __init__(self, data: Path, rule: Callable[[Tensor, Tensor, Tensor], Tensor]) -> None:
        info = load_dataset_info(data)
        coarse_ds = FolderDataset(data, "train", "train_coarse", info=info, size=(32, 48))
        fine_ds = FolderDataset(data, "train", "train", info=info, size=(32, 48))
        assert coarse_ds.ids == fine_ds.ids
        self.model = probe_network(info.num_classes)
        self.params = dict(self.model.named_parameters())
        self.loss: list[float] = []
        self.grads: list[dict[str, Tensor]] = []
        for k in range(len(coarse_ds)):
            item = coarse_ds[k]
            self.model.zero_grad()
            log_p = F.log_softmax(self.model(item["image"][None])[0], dim=0)
            loss = rule(log_p, item["mask"], fine_ds[k]["mask"])
            loss.backward()
            self.loss.append(float(loss.detach()))
            self.grads.append({n: p.grad.detach().clone() for n, p in self.params.items()})
        assert np.diff(np.sort(self.loss)).min() > 1e-4, "every image needs its own loss (matched by it)"

    def update(self) -> dict[str, Tensor]:
        return {n: -LR * sum(g[n] for g in self.grads) / len(self.grads) for n in self.params}


def _distance(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    num = sum(float((a[n] - b[n]).pow(2).sum()) for n in a)
    return math.sqrt(num / sum(float(b[n].pow(2).sum()) for n in b))


@pytest.mark.parametrize("name", list(RULES))
def test_pixel_strategy_step_follows_its_per_pixel_rule(
    name: str, tiny_data: Path, tmp_path: Path, probe_model: str, recorded: list
) -> None:
    hand = HandStep(tiny_data, RULES[name])
    plain = HandStep(tiny_data, _plain_ce)  # what a loop dropping the pixel weights / target sets trains on
    tol = 1e-4
    assert _distance(plain.update(), hand.update()) > 100 * tol
    out = tmp_path / "run"
    nlkd.train.train(one_step_config(tiny_data, out, probe_model, LR, **{"strategy.name": name}), log=_quiet)

    assert len(recorded) == 1, f"expected one weighted_loss call (one step, one network), got {len(recorded)}"
    losses, w = recorded[0]
    assert w.tolist() == [1.0] * len(hand.loss)
    matched = []
    for loss in losses.tolist():  # per image: the loop's loss is one image's hand-computed loss
        k = int(np.argmin(np.abs(np.array(hand.loss) - loss)))
        assert abs(hand.loss[k] - loss) < 2e-5, f"the loop's per-image loss {loss} matches no image's ({name})"
        matched.append(k)
    assert sorted(matched) == list(range(len(hand.loss)))
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["train_loss"] == pytest.approx(sum(hand.loss) / len(hand.loss), rel=1e-5)
    trained = load_checkpoint(out / "last.pt")["models"][0]
    update = {n: trained[n] - hand.params[n].detach() for n in hand.params}
    assert _distance(update, hand.update()) < tol
