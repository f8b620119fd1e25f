"""A strategy that starts late (``strategy.start``) and a late run continued from a plain-CE checkpoint
(``keep_epochs`` + ``init_from``): before its start a strategy's run *is* the plain-CE run, step for step,
so continuing plain CE's checkpoint must give the very run that training from scratch gives.

Runs here train 2 epochs of a small encoder on ``tiny_data`` with one thread (bit-exact on CPU)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import SMALL_ENCODER, tiny_config, train_argv
from nlkd.checkpoint import load_checkpoint
from nlkd.cli import main
from nlkd.config import TrainConfig, apply_overrides, config_from_dict
from nlkd.errors import ConfigError, NLKDError
from nlkd.train import train

SMALL = {"model.encoder": SMALL_ENCODER, "threads": 1, "data.labels": "train_coarse"}
RELAX_LATE = {"strategy.name": "relax", "strategy.start": 0.5}  # a pixel-level strategy, no teacher needed


def _rank_late(root: Path) -> dict[str, Any]:
    """The noise bench's late row: rank weights from the baseline's final checkpoint as the teacher."""
    teacher = str(root / "baseline" / "last.pt")
    return {
        "strategy.name": "reweight",
        "strategy.transform": "rank",
        "strategy.start": 0.5,
        "strategy.teacher": teacher,
    }


def _quiet(*args: Any, **kwargs: Any) -> None:
    pass


def _cfg(data: Path, out: Path, **changes: Any) -> TrainConfig:
    return tiny_config(data, out, epochs=2, **{**SMALL, **changes})


def _records(out: Path) -> list[dict[str, Any]]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in ("seconds", "train_seconds")} for x in lines]


def _same_weights(a: Path, b: Path) -> bool:
    sa, sb = load_checkpoint(a)["models"][0], load_checkpoint(b)["models"][0]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def runs(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """From scratch: ``baseline`` (keeps epoch 1), ``relax`` (from epoch 1), ``relax-late`` and ``rank-late``
    (from epoch 2; rank weights taught by the baseline)."""
    root = tmp_path_factory.mktemp("late")
    train(_cfg(tiny_data, root / "baseline", keep_epochs=[1]), log=_quiet)
    train(_cfg(tiny_data, root / "relax", **{"strategy.name": "relax"}), log=_quiet)
    train(_cfg(tiny_data, root / "relax-late", **RELAX_LATE), log=_quiet)
    train(_cfg(tiny_data, root / "rank-late", **_rank_late(root)), log=_quiet)
    return root


@pytest.mark.parametrize("late", ["relax-late", "rank-late"])
def test_a_late_strategy_trains_plain_ce_until_its_start_then_the_strategy(late: str, runs: Path) -> None:
    base, records, relax = (_records(runs / name) for name in ("baseline", late, "relax"))
    assert records[0] == base[0]  # epoch 1: plain CE, every logged number the same
    assert relax[0]["train_loss"] != base[0]["train_loss"]  # relax from the start differs at once
    assert records[1]["train_loss"] != base[1]["train_loss"]  # epoch 2: the strategy
    assert not _same_weights(runs / "baseline" / "last.pt", runs / late / "last.pt")


def test_keep_epochs_keeps_that_epochs_checkpoints(runs: Path) -> None:
    kept = runs / "baseline" / "epoch1"
    assert sorted(p.name for p in kept.iterdir()) == ["best.pt", "last.pt"]
    assert load_checkpoint(kept / "last.pt")["epoch"] == 0
    assert load_checkpoint(runs / "baseline" / "last.pt")["epoch"] == 1
    assert not (runs / "baseline" / "epoch2").exists()


@pytest.mark.parametrize("late", ["relax-late", "rank-late"])
def test_init_from_gives_the_run_that_training_from_scratch_gives(
    late: str, runs: Path, tiny_data: Path, tmp_path: Path
) -> None:
    messages: list[str] = []
    kept = runs / "baseline" / "epoch1" / "last.pt"
    changes = RELAX_LATE if late == "relax-late" else _rank_late(runs)
    cfg = _cfg(tiny_data, tmp_path / "branch", init_from=str(kept), **changes)
    record = train(cfg, log=messages.append)
    assert f"continuing the plain-CE run {kept} after epoch 1/2" in messages
    assert _records(tmp_path / "branch") == _records(runs / late)
    assert record["epoch"] == 2
    assert _same_weights(tmp_path / "branch" / "last.pt", runs / late / "last.pt")
    assert (tmp_path / "branch" / "best.pt").is_file() and (tmp_path / "branch" / "config.yaml").is_file()
    again = train(cfg, resume=True, log=_quiet)
    assert again["epoch"] == 2  # finished: resuming finds last.pt and trains nothing


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optim.lr": 1e-3}, "was written with a different config (optim.lr: 0.002 -> 0.001)"),
        ({"strategy.reduction": "sum"}, "strategy.reduction: 'mean' -> 'sum'"),
        ({"strategy.start": 0.0}, "starts the strategy at epoch 1; init_from needs a checkpoint of epoch 0 or earlier"),
    ],
)
def test_init_from_refuses_a_checkpoint_that_is_not_the_same_run(
    changes: dict[str, Any], message: str, runs: Path, tiny_data: Path, tmp_path: Path
) -> None:
    kept = runs / "baseline" / "epoch1" / "last.pt"
    cfg = _cfg(tiny_data, tmp_path / "branch", init_from=str(kept), **{**RELAX_LATE, **changes})
    with pytest.raises(NLKDError, match=re.escape(message)):
        train(cfg, log=_quiet)
    assert not (tmp_path / "branch").exists()


def test_init_from_refuses_weights_only_and_a_run_that_was_not_plain_ce(
    runs: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best = runs / "baseline" / "epoch1" / "best.pt"
    argv = train_argv(tiny_data, tmp_path / "b", "--encoder", SMALL_ENCODER, "--epochs", "2", "--strategy", "relax")
    late = ["--set", "strategy.start=0.5", "--set", "threads=1"]
    assert main([*argv, *late, "--set", f"init_from={best}"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert (
        line
        == f"nlkd train: error: {best}: holds weights only; init_from needs a run's last.pt (or its epochN/last.pt)"
    )
    relaxed = runs / "relax" / "last.pt"  # relax from epoch 1: epoch 1 was not plain CE
    cfg = _cfg(tiny_data, tmp_path / "c", init_from=str(relaxed), **RELAX_LATE)
    with pytest.raises(NLKDError, match="its run trained strategy 'relax' before epoch 2, not plain CE"):
        train(cfg, log=_quiet)


def test_reweight_start_is_read_as_strategy_start() -> None:
    """Configs written before the rename (every archived late run's) still load."""
    assert config_from_dict({"strategy": {"reweight_start": 0.5}}).strategy.start == 0.5
    assert apply_overrides(TrainConfig(), {"strategy.reweight_start": 0.25}).strategy.start == 0.25
    with pytest.raises(ConfigError, match=re.escape("'strategy.start' expects a share of the epochs in [0, 1)")):
        apply_overrides(TrainConfig(), {"strategy.start": 1.0})
    with pytest.raises(ConfigError, match=re.escape("'keep_epochs' expects a list of epochs >= 1, got [0]")):
        apply_overrides(TrainConfig(), {"keep_epochs": [0]})
