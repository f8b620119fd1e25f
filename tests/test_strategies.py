"""nlkd.strategies: exact selections of fixed, discard, decoupling, co-teaching(+) and the loop end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from nlkd.config import StrategyConfig
from nlkd.errors import ConfigError
from nlkd.runtime import dataset_info
from nlkd.strategies import STRATEGIES, StepInputs, create_strategy
from nlkd.strategies.discard import lowest_share_mask
from nlkd.strategies.two_network import disagreement, keep_rate, round_half_up, small_loss_mask
from nlkd.teacher import teacher_scores
from nlkd.train import build_datasets, train

NEW = ("fixed", "discard", "decoupling", "coteaching", "coteaching_plus")
C = 3


def _strategy(name: str, epochs: int = 10, ignore_index: int | None = None, **cfg: object):
    return create_strategy(StrategyConfig(name=name, **cfg), C, ignore_index, epochs)


def _logits(pred: torch.Tensor) -> torch.Tensor:
    """(B, H, W) labels -> (B, C, H, W) one-hot logits whose argmax is ``pred``."""
    return F.one_hot(pred, C).permute(0, 3, 1, 2).float()


def _step(b: int = 4, *, losses=None, logits=None, index=None, target=None, epoch=0, step=0, spe=4, **kw):
    target = torch.zeros(b, 4, 4, dtype=torch.long) if target is None else target
    logits = logits or [_logits(torch.zeros_like(target))] * 2
    losses = losses or [torch.zeros(b)] * len(logits)
    index = torch.arange(b) if index is None else index
    return StepInputs(
        index=index, target=target, logits=logits, losses=losses, epoch=epoch, step=step, steps_per_epoch=spe, **kw
    )


def _expected_small(loss: list[float], index: list[int], n: int, among=None) -> set[int]:
    """Independent reference: batch positions of the n smallest losses, ties by dataset index."""
    pos = [i for i in range(len(loss)) if among is None or i in among]
    return set(sorted(pos, key=lambda i: (loss[i], index[i]))[:n])


def _ones(w: torch.Tensor) -> set[int]:
    assert set(w.tolist()) <= {0.0, 1.0}
    return {i for i, v in enumerate(w.tolist()) if v == 1.0}


# ----------------------------------------------------------------------------- registry


def test_new_strategies_registered_and_unknown_name_lists_valid_ones():
    assert set(NEW) <= set(STRATEGIES)
    with pytest.raises(ConfigError) as e:
        _strategy("coteachng")
    assert "coteachng" in str(e.value)
    for name in STRATEGIES:
        assert name in str(e.value)


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [("fixed", "coarse_weight", -0.1), ("discard", "discard_ratio", 1.0), ("discard", "discard_ratio", -0.1),
     ("coteaching", "forget_rate", 1.5), ("coteaching_plus", "forget_epochs", 0)],
)  # fmt: skip
def test_bad_values_are_config_errors_naming_the_key(name, key, value):
    with pytest.raises(ConfigError, match=f"strategy.{key}"):
        _strategy(name, **{key: value})


# ----------------------------------------------------------------------------- fixed


def test_fixed_gives_coarse_images_exactly_coarse_weight():
    coarse = torch.tensor([True, False, False, True, True])
    for cw, expected in ((0.5, [0.5, 1, 1, 0.5, 0.5]), (0.0, [0, 1, 1, 0, 0])):
        s = _strategy("fixed", coarse_weight=cw)
        assert s.needs_coarse_flags and s.num_networks == 1
        (w,) = s.weights(_step(5, coarse=coarse))
        assert w.tolist() == expected
    assert s.log.pop() == pytest.approx({"coarse_share": 0.6, "w_mean": 0.4})
    with pytest.raises(ValueError, match="coarse"):
        s.weights(_step(5))


# ----------------------------------------------------------------------------- discard


def test_discard_threshold_drops_exactly_the_images_below_it():
    s = _strategy("discard", discard_threshold=0.5)
    assert s.needs_teacher
    scores = torch.tensor([0.9, 0.49, 0.5, float("nan"), 0.1, 0.7])
    s.setup(scores)
    (w,) = s.weights(_step(3, index=torch.tensor([3, 2, 1])))
    assert w.tolist() == [0.0, 1.0, 0.0]  # NaN and 0.49 dropped, 0.5 (not below) kept
    (w,) = s.weights(_step(3, index=torch.tensor([0, 4, 5])))
    assert w.tolist() == [1.0, 0.0, 1.0]


def test_discard_ratio_cutoff_is_global_and_exact_with_ties():
    scores = torch.tensor([0.8, 0.3, 0.9, 0.3, 0.5, 0.3, 0.95, 0.6, 0.7, 0.85])
    s = _strategy("discard", discard_ratio=0.2)
    with pytest.raises(RuntimeError, match="setup"):
        s.weights(_step(2))
    s.setup(scores)
    # round(0.2 * 10) = 2 dropped among the three tied 0.3 scores: the lower dataset indices 1 and 3
    dropped = set()
    for idx in (torch.tensor([9, 3, 1, 0]), torch.tensor([5, 2, 4, 6]), torch.tensor([7, 8])):
        (w,) = s.weights(_step(len(idx), index=idx))
        dropped |= {int(i) for i, v in zip(idx, w) if v == 0}
        assert set(w.tolist()) <= {0.0, 1.0}
    assert dropped == {1, 3}
    assert s.log.pop()["kept"] == pytest.approx(0.8)
    assert lowest_share_mask(scores, 0.0).sum() == 0
    assert lowest_share_mask(scores, 0.25).nonzero().flatten().tolist() == [1, 3, 5]  # 2.5 -> 3
    assert lowest_share_mask(torch.tensor([0.1, float("nan"), 0.2]), 0.34).tolist() == [False, True, False]


# ----------------------------------------------------------------------------- co-teaching


def test_keep_rate_schedule():
    assert [keep_rate(t, 0.2, 4) for t in (0, 2, 4, 9)] == pytest.approx([1.0, 0.9, 0.8, 0.8])
    s = _strategy("coteaching", epochs=30)  # forget_epochs default: 10 % of 30 = 3
    assert s.forget_epochs == 3 and _strategy("coteaching", epochs=4).forget_epochs == 1
    got = [s.keep_rate(_step(epoch=e, step=k, spe=4)) for e, k in ((0, 0), (1, 2), (3, 0), (20, 3))]
    assert got == pytest.approx([1.0, 1 - 0.2 * 1.5 / 3, 0.8, 0.8])
    assert round_half_up(2.5) == 3 and round_half_up(2.49) == 2


def test_coteaching_each_network_trains_on_the_peers_small_loss_images():
    loss_a = [0.5, 0.1, 0.9, 0.7, 0.7, 0.3, 0.2, 0.4]
    loss_b = [0.1, 0.9, 0.2, 0.8, 0.3, 0.4, 0.6, 0.4]
    index = [12, 3, 7, 9, 1, 15, 4, 2]  # shuffled: ties are broken by these, not by batch position
    s = _strategy("coteaching", forget_rate=0.5, forget_epochs=3)
    # t = 1 + 2/4 = 1.5 epochs: R = 1 - 0.5 * 0.5 = 0.75, keep round(0.75 * 8) = 6
    step = _step(8, losses=[torch.tensor(loss_a), torch.tensor(loss_b)], index=torch.tensor(index),
                 epoch=1, step=2, spe=4)  # fmt: skip
    w_a, w_b = s.weights(step)
    assert _ones(w_a) == _expected_small(loss_b, index, 6)
    assert _ones(w_b) == _expected_small(loss_a, index, 6)
    assert 3 not in _ones(w_b) and 4 in _ones(w_b)  # 0.7 tie at the cut-off: index 1 (pos 4) beats 9 (pos 3)
    # at t = 0 every image is kept; with R = 0 still one image (the smallest loss) is
    assert [w.sum() for w in s.weights(_step(8, losses=step.losses, index=step.index))] == [8, 8]
    s0 = _strategy("coteaching", forget_rate=1.0, forget_epochs=1)
    w_a, w_b = s0.weights(_step(8, losses=step.losses, index=step.index, epoch=2))
    assert _ones(w_a) == {0} and _ones(w_b) == {1}
    log = s.log.pop()
    assert log["keep_rate"] == pytest.approx((0.75 + 1) / 2) and 0 <= log["overlap"] <= 1


def test_small_loss_mask_among_candidates():
    loss = torch.tensor([0.0, 0.5, 0.2, 0.0, 0.2])
    cand = torch.tensor([False, True, True, False, True])
    assert small_loss_mask(loss, torch.arange(5), 2, cand).tolist() == [False, False, True, False, True]
    assert small_loss_mask(loss, torch.tensor([0, 1, 9, 3, 4]), 1, cand).tolist() == [False] * 4 + [True]
    with pytest.raises(ValueError, match="n_keep"):
        small_loss_mask(loss, torch.arange(5), 4, cand)


# ----------------------------------------------------------------------------- disagreement-based


def _pair_with_differences(ks: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A predicts class 0 everywhere on 4×4 images; B predicts class 1 on the first ks[i] pixels."""
    a = torch.zeros(len(ks), 4, 4, dtype=torch.long)
    b = a.clone().view(len(ks), -1)
    for i, k in enumerate(ks):
        b[i, :k] = 1
    return a, b.view_as(a)


def test_disagreement_is_one_minus_iou_on_valid_pixels():
    a, b = _pair_with_differences([0, 1, 4, 8])
    # k differing pixels: IoU(class 0) = (16 - k) / 16, IoU(class 1) = 0 -> d = 1 - (16 - k) / 32
    expected = [0.0, 17 / 32, 20 / 32, 24 / 32]
    assert disagreement(_logits(a), _logits(b), a, C).tolist() == pytest.approx(expected)
    target = torch.zeros_like(a)
    target.view(4, -1)[:, :4] = 255  # the first 4 pixels are ignored: images 1 and 2 now agree
    got = disagreement(_logits(a), _logits(b), target, C, ignore_index=255)
    assert got.tolist() == pytest.approx([0.0, 0.0, 0.0, 1 - 8 / 12 / 2])
    target[0] = 255  # no valid pixel: nothing to disagree on
    assert disagreement(a, b, target, C, ignore_index=255)[0] == 0.0
    # an ignore_index that is also a class index does not remove predicted pixels of that class
    assert disagreement(a, b, torch.zeros_like(a), C, ignore_index=1).tolist() == pytest.approx(expected)


def test_decoupling_selects_images_above_the_batch_median():
    a, b = _pair_with_differences([4, 0, 8, 1])  # d = 20/32, 0, 24/32, 17/32; lower median 17/32
    s = _strategy("decoupling")
    assert s.num_networks == 2
    w_a, w_b = s.weights(_step(4, logits=[_logits(a), _logits(b)]))
    assert _ones(w_a) == _ones(w_b) == {0, 2}
    a, b = _pair_with_differences([0, 3, 3, 3, 0])  # nothing above the median 3: the maxima
    w_a, _ = s.weights(_step(5, logits=[_logits(a), _logits(b)]))
    assert _ones(w_a) == {1, 2, 3}
    a, b = _pair_with_differences([0, 0])  # full agreement: all tie, all selected (at least one)
    w_a, _ = s.weights(_step(2, logits=[_logits(a), _logits(b)]))
    assert _ones(w_a) == {0, 1}
    log = s.log.pop()
    assert set(log) == {"disagreement", "kept"} and log["kept"] == pytest.approx((2 + 3 + 2) / 11)


def test_coteaching_plus_selects_small_loss_among_disagreeing_images():
    a, b = _pair_with_differences([2, 0, 1, 5, 0, 3])  # disagreeing: 0, 2, 3, 5
    loss_a = torch.tensor([0.1, 0.0, 0.5, 0.2, 0.0, 0.4])
    loss_b = torch.tensor([0.3, 0.0, 0.1, 0.2, 0.0, 0.6])
    s = _strategy("coteaching_plus", forget_rate=0.5, forget_epochs=2)
    # t = 2: R = 0.5, keep round(0.5 * 4) = 2 of the 4 disagreeing images
    w_a, w_b = s.weights(_step(6, logits=[_logits(a), _logits(b)], losses=[loss_a, loss_b], epoch=2))
    assert _ones(w_b) == {0, 3}  # A's small-loss disagreeing images train B
    assert _ones(w_a) == {2, 3}  # and B's train A; images 1 and 4 (loss 0, agreeing) never
    # at t = 0 all disagreeing images are used
    w_a, w_b = s.weights(_step(6, logits=[_logits(a), _logits(b)], losses=[loss_a, loss_b]))
    assert _ones(w_a) == _ones(w_b) == {0, 2, 3, 5}
    # no disagreement: nothing is updated
    a, b = _pair_with_differences([0, 0, 0])
    w_a, w_b = s.weights(_step(3, logits=[_logits(a), _logits(b)], losses=[loss_a[:3], loss_b[:3]]))
    assert w_a.tolist() == w_b.tolist() == [0.0, 0.0, 0.0]
    log = s.log.pop()
    assert log["disagree_share"] == pytest.approx(8 / 15)


def test_coteaching_plus_median_rule_takes_decouplings_candidates():
    a, b = _pair_with_differences([2, 0, 1, 5, 0, 3])  # d > 0 for 0, 2, 3, 5; above the median: 0, 3, 5
    loss_a = torch.tensor([0.1, 0.0, 0.5, 0.2, 0.0, 0.4])
    loss_b = torch.tensor([0.3, 0.0, 0.1, 0.2, 0.0, 0.6])
    s = _strategy("coteaching_plus", forget_rate=0.5, forget_epochs=2, disagree_rule="median")
    step = _step(6, logits=[_logits(a), _logits(b)], losses=[loss_a, loss_b], epoch=2)
    w_a, w_b = s.weights(step)  # R = 0.5: keep round_half_up(0.5 * 3) = 2 of the 3 candidates
    assert _ones(w_b) == {0, 3}  # A's two smallest losses among 0, 3, 5
    assert _ones(w_a) == {0, 3}  # B's: 0.3 and 0.2 (image 2 is no candidate any more)
    assert s.log.pop()["disagree_share"] == pytest.approx(3 / 6)
    a, b = _pair_with_differences([0, 0, 0])  # no disagreement: still nothing is updated
    w_a, _ = s.weights(_step(3, logits=[_logits(a), _logits(b)], losses=[loss_a[:3], loss_b[:3]]))
    assert w_a.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ConfigError, match="disagree_rule must be any or median"):
        _strategy("coteaching_plus", disagree_rule="most")


# ----------------------------------------------------------------------------- end to end


def _quiet(*args: object, **kwargs: object) -> None:
    pass


@pytest.fixture(scope="module")
def teacher(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-epoch baseline checkpoint on the clean labels, used as the teacher."""
    out = tmp_path_factory.mktemp("teacher")
    train(tiny_config(tiny_data, out), log=_quiet)
    return out / "last.pt"


EXPECTED_LOG = {"fixed": "w_mean", "discard": "kept", "decoupling": "disagreement", "coteaching": "overlap",
                "coteaching_plus": "disagree_share"}  # fmt: skip


@pytest.mark.parametrize("name", NEW)
def test_strategy_trains_one_epoch_end_to_end(name, tiny_data, teacher, tmp_path):
    changes: dict[str, object] = {"strategy.name": name, "data.labels": "train_coarse"}
    if name == "discard":
        changes["strategy.teacher"] = str(teacher)
    record = train(tiny_config(tiny_data, tmp_path / "run", **changes), log=_quiet)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == record
    for key in ("train_loss", "val_miou", "val_bf", EXPECTED_LOG[name]):
        assert math.isfinite(record[key]), key
    if name == "discard":  # 20 % of 16 images: 3 dropped, the batches cover the 16 images once
        assert record["kept"] == pytest.approx(13 / 16)


def test_reweight_metric_bf_and_miou_give_different_weights(tiny_data, teacher, tmp_path):
    """Table 2's metric ablation: ``strategy.metric`` picks the teacher score Reweight trains with."""
    weights = {}
    for metric in ("bf", "miou"):
        changes = {"strategy.name": "reweight", "strategy.metric": metric, "strategy.teacher": str(teacher),
                   "data.labels": "train_coarse"}  # fmt: skip
        cfg = tiny_config(tiny_data, tmp_path, **changes)
        info = dataset_info(cfg)
        train_ds, _ = build_datasets(cfg, info, check=False)
        s = cfg.strategy  # the same call the loop makes
        scores = teacher_scores(train_ds, teacher=s.teacher, scores_csv=None, metric=s.metric,
                                tolerance=s.tolerance, cache_dir=tmp_path / metric,
                                device=torch.device("cpu"), log=_quiet)  # fmt: skip
        strategy = create_strategy(s, info.num_classes, info.ignore_index, cfg.epochs)
        index = torch.arange(len(train_ds))
        (weights[metric],) = strategy.weights(_step(len(index), index=index, teacher_scores=scores[index]))
        assert weights[metric].shape == (16,) and torch.isfinite(weights[metric]).all()
    assert (weights["bf"] - weights["miou"]).abs().max() > 1e-3
