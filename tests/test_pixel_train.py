"""The pixel-level strategies through the training loop and the CLI (tiny synthetic data, 1-2 epochs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import SMALL_ENCODER, tiny_config, train_argv
from nlkd.checkpoint import build_model, make_checkpoint
from nlkd.cli import main
from nlkd.data.info import load_dataset_info
from nlkd.io import save_checkpoint
from nlkd.teacher_cache import CACHE_NAME
from nlkd.train import train

SMALL = {"model.encoder": SMALL_ENCODER, "data.labels": "train_coarse"}


def quiet(*args: Any, **kwargs: Any) -> None:
    pass


@pytest.fixture(autouse=True, scope="module")
def _no_curves() -> Any:
    """Skip drawing curves.png (tests/test_cli.py checks it)."""
    import nlkd.train

    with pytest.MonkeyPatch.context() as m:
        m.setattr(nlkd.train, "_plot", lambda out: None)
        yield


@pytest.fixture(scope="module")
def teacher(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained small U-Net checkpoint: a teacher like any other for the loop's plumbing."""
    path = tmp_path_factory.mktemp("pixel_teacher") / "teacher.pt"
    cfg = tiny_config(tiny_data, path.parent, **{"model.encoder": SMALL_ENCODER})
    info = load_dataset_info(tiny_data)
    torch.manual_seed(0)
    save_checkpoint(make_checkpoint(cfg, info, [build_model(cfg, info)], 0), path)
    return path


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("name", "changes", "logged"),
    [
        ("relax", {}, "relaxed_share"),
        ("relax", {"strategy.doubt_rule": "teacher"}, "relaxed_share"),
        ("band_kd", {"strategy.doubt_rule": "score"}, "band_share"),
        ("nlkd_pixel", {"strategy.warmup_epochs": 0}, "pixel_kept"),
        ("adele", {}, "classes_corrected"),
        ("band_ignore", {}, "dropped_share"),
        ("band_ignore", {"strategy.doubt_rule": "score"}, "dropped_share"),
    ],
)
def test_strategy_trains(tiny_data: Path, teacher: Path, tmp_path: Path, name: str, changes: dict, logged: str):
    cfg = tiny_config(
        tiny_data, tmp_path / "run", epochs=1, **SMALL, **{"strategy.name": name, "strategy.teacher": str(teacher)}
    )
    for key, value in changes.items():
        setattr(cfg.strategy, key.split(".")[1], value)
    record = train(cfg, log=quiet)
    assert np.isfinite(record["train_loss"]) and record["epoch"] == 1
    assert all(logged in r for r in _records(tmp_path / "run"))
    needs_maps = name in ("band_kd", "nlkd_pixel") or changes.get("strategy.doubt_rule") == "teacher"
    assert (tmp_path / "run" / CACHE_NAME).is_file() == needs_maps


def test_band_kd_from_the_command_line(tiny_data: Path, teacher: Path, tmp_path: Path, capsys):
    out = tmp_path / "cli"
    argv = train_argv(tiny_data, out, "--strategy", "band_kd", "--teacher", str(teacher), "--epochs", "1")
    assert main([*argv, "--set", f"model.encoder={SMALL_ENCODER}"]) == 0
    assert (out / CACHE_NAME).is_file() and (out / "last.pt").is_file()
    # resuming the finished run reuses the cached maps
    assert main([*argv, "--set", f"model.encoder={SMALL_ENCODER}", "--resume"]) == 0


def test_band_kd_without_a_teacher_is_one_line(tiny_data: Path, tmp_path: Path, capsys):
    argv = train_argv(tiny_data, tmp_path / "x", "--strategy", "band_kd", "--epochs", "1")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--teacher" in err[0]
