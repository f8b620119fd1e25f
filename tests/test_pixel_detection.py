"""``benchmarks/pixel_detection.py``: the counting on cases with a known answer, and the script on synthetic data
(``--quick``; an ``--adele`` run; a wrong ``--adele`` checkpoint is one line, exit 2)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from nlkd.checkpoint import load_checkpoint
from nlkd.config import StrategyConfig, TrainConfig
from nlkd.data.info import DatasetInfo
from nlkd.io import save_checkpoint
from nlkd.separation import weight_auroc
from nlkd.strategies import STRATEGIES, LossWeights, StepInputs, create_strategy


@pytest.fixture(scope="module")
def pd():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import pixel_detection
    finally:
        sys.path.pop(0)
    return pixel_detection


def _step(target: torch.Tensor, fine: torch.Tensor) -> StepInputs:
    b = target.shape[0]
    return StepInputs(index=torch.arange(b), target=target, logits=[], losses=[], epoch=0, step=0,
                      steps_per_epoch=1, extras={"fine_mask": fine})  # fmt: skip


def _row(pd, name: str, target: torch.Tensor, fine: torch.Tensor, ignore: int | None = 3) -> dict[str, float]:  # type: ignore[no-untyped-def]
    strategy = create_strategy(StrategyConfig(name=name), 3, ignore, 1)
    tally = pd.Tally()
    tally.add(strategy.loss_weights(_step(target, fine))[0], target, fine, ignore)
    return tally.row()


def _noisy_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """(2, 6, 8) annotation and fine mask over classes 0..2, ignore 3 in both; about a quarter differ."""
    g = torch.Generator().manual_seed(0)
    fine = torch.randint(0, 3, (2, 6, 8), generator=g)
    fine[0, 0, :3] = 3
    target = torch.where(torch.rand(2, 6, 8, generator=g) < 0.25, (fine + 1) % 3, fine)
    target[1, 5, 5:] = 3
    return target, fine


def test_oracle_pixel_finds_every_corrupted_pixel_and_nothing_else(pd) -> None:  # type: ignore[no-untyped-def]
    target, fine = _noisy_pair()
    r = _row(pd, "oracle_pixel", target, fine)
    counted = (target != 3) & (fine != 3)
    assert r["n_corrupted"] == int((counted & (target != fine)).sum()) > 0
    assert r["n_clean"] == int((counted & (target == fine)).sum())
    assert (r["recall"], r["false_pos"], r["auroc"], r["share"], r["taught"]) == (1.0, 0.0, 1.0, 0.0, 0.0)


def test_plain_ce_keeps_every_pixel_and_its_loss_share_is_the_images_mean_corrupted_share(pd) -> None:  # type: ignore[no-untyped-def]
    target, fine = _noisy_pair()
    r = _row(pd, "baseline", target, fine)
    assert (r["recall"], r["false_pos"], r["auroc"], r["taught"]) == (0.0, 0.0, 0.5, 0.0)
    labelled = target != 3
    bad = labelled & (fine != 3) & (target != fine)
    by_image = bad.flatten(1).sum(1).double() / labelled.flatten(1).sum(1)  # each image's CE is a mean over its pixels
    assert r["share"] == pytest.approx(float(by_image.mean()), abs=1e-12)


def test_annotation_equal_to_the_fine_mask_has_no_corrupted_pixels(pd) -> None:  # type: ignore[no-untyped-def]
    _, fine = _noisy_pair()
    r = _row(pd, "oracle_pixel", fine, fine)
    assert r["n_corrupted"] == 0 and math.isnan(r["recall"]) and math.isnan(r["auroc"])
    assert r["false_pos"] == 0.0 and r["share"] == 0.0
    rule = pd.Rule("oracle_pixel", lambda s: LossWeights(torch.ones(2)))
    tally = pd.Tally()
    tally.add(LossWeights(torch.ones(2)), fine, fine, 3)
    lines = pd.table([rule], [tally])
    assert "No corrupted pixels: recall, AUROC and fine label taught are undefined (—)." in lines
    assert lines[-1] == "| oracle_pixel |  | — | 0.00 | — | — | 0.00 |"


def test_relaxed_sets_on_a_strip(pd) -> None:  # type: ignore[no-untyped-def]
    """Annotation 0 0 1 1, fine 0 1 1 1: radius-1 sets {0} {0,1} {0,1} {1}. The corrupted pixel's set is widened
    and holds its fine label; of the three clean pixels one set is widened."""
    target, fine = torch.tensor([[[0, 0, 1, 1]]]), torch.tensor([[[0, 1, 1, 1]]])
    r = _row(pd, "relax", target, fine, ignore=None)
    assert (r["recall"], r["taught"]) == (1.0, 1.0)
    assert r["false_pos"] == pytest.approx(1 / 3)
    assert r["auroc"] == pytest.approx(1 - 0.5 * 1 / 3)  # ties with the widened clean pixel count ½


def test_binned_auroc_is_weight_auroc(pd) -> None:  # type: ignore[no-untyped-def]
    """On weights on the bin grid the histogram AUROC is nlkd's Mann–Whitney one (ties ½)."""
    g = torch.Generator().manual_seed(1)
    target, fine = _noisy_pair()
    w = torch.randint(0, 5, target.shape, generator=g).double() / 4
    tally = pd.Tally()
    tally.add(LossWeights(torch.ones(2), pixel=w), target, fine, 3)
    counted = (target != 3) & (fine != 3)
    expected = weight_auroc(w[counted], (target != fine)[counted])
    assert tally.row()["auroc"] == pytest.approx(expected, abs=1e-12)
    assert tally.row()["recall"] == pytest.approx(1 - float(w[counted & (target != fine)].mean()), abs=1e-12)


def _table(out: str) -> dict[str, list[str]]:
    rows = [ln.strip("|").split(" | ") for ln in out.splitlines() if ln.startswith("| ") and "---" not in ln]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows[1:]}


def test_quick_run_measures_every_pixel_strategy_and_the_oracle_exactly(pd, capsys) -> None:  # type: ignore[no-untyped-def]
    assert pd.main(["--quick"]) == 0
    out = capsys.readouterr().out
    rows = _table(out)
    assert rows["oracle_pixel"] == ["pixel weight", "100.00", "0.00", "1.000", "0.00", "0.00"]
    assert rows["baseline (plain CE)"][:5] == ["image weight", "0.00", "0.00", "0.500", "0.00"]
    assert "Corrupted pixels (annotation ≠ fine mask, both labelled):" in out
    pixel_level = [n for n, c in STRATEGIES.items() if c.loss_weights is not STRATEGIES["baseline"].loss_weights]
    for name in pixel_level:
        assert any(r.split(",")[0].split(" ")[0] == name for r in rows), name
    assert "relax, doubt_rule=teacher" in rows and "band_kd, doubt_rule=score" in rows
    assert any(r.startswith("nlkd_pixel, last epoch") for r in rows)  # --quick passes a student
    assert "band_ignore, doubt_rule=score, band_side=teacher, band_radius=4" in rows
    assert rows["reference: band_ignore's side chosen by the fine mask, band_radius=3"][0] == "pixel weight"


def test_adele_run_and_a_wrong_adele_checkpoint(pd, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """--adele: that run's triggered classes (here all, set by hand) make the rule a target set; a checkpoint
    of another strategy is one line and exit code 2."""
    from nlkd.train import train

    args = pd.quick_inputs(tmp_path)
    cfg = TrainConfig(epochs=1, batch_size=4, seed=0, out=str(tmp_path / "adele"), device="cpu")
    cfg.data.root, cfg.data.labels, cfg.data.size = str(tmp_path / "data"), "train_coarse", [32, 48]
    cfg.strategy.name = "adele"
    train(cfg, log=lambda *a, **k: None)
    ckpt = load_checkpoint(tmp_path / "adele" / "last.pt")
    ckpt["strategy"]["triggered"] = [True] * len(ckpt["strategy"]["triggered"])
    save_checkpoint(ckpt, tmp_path / "adele_all.pt")
    assert pd.main([*args, "--adele", str(tmp_path / "adele_all.pt")]) == 0
    rows = _table(capsys.readouterr().out)
    assert rows["adele, --adele run (6 of 6 classes triggered)"][0] == "target set"
    teacher = args[args.index("--teacher") + 1]
    assert pd.main([*args, "--adele", teacher]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1] == f"pixel_detection: error: {teacher}: needs the last.pt of a 'adele' run, got a 'baseline' checkpoint"
    )


def test_fine_side_reference_drops_exactly_the_side_the_annotation_grew_into(pd) -> None:  # type: ignore[no-untyped-def]
    """Annotation 0 0 1 1 1 1, fine 0 0 0 1 1 1: class 1 grew into 0 by one pixel. With a 2 px band the fine
    mask's vote leaves out the one corrupted pixel and keeps the clean side; an unmoved image loses nothing."""
    target, fine = torch.tensor([[[0, 0, 1, 1, 1, 1]]]), torch.tensor([[[0, 0, 0, 1, 1, 1]]])
    info = DatasetInfo(num_classes=2, ignore_index=None)
    rule = pd.fine_side_rule(info, 2.0)
    tally = pd.Tally()
    tally.add(rule.weights(_step(target, fine)), target, fine, None)
    r = tally.row()
    assert (r["recall"], r["false_pos"], r["share"]) == (1.0, 0.0, 0.0)
    unmoved = rule.weights(_step(fine, fine))
    assert unmoved.pixel is not None and bool((unmoved.pixel == 1).all())
