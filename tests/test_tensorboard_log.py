"""``--log tensorboard``: RUN/tb/ holds metrics.jsonl's values as scalars and a prediction grid."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL_ENCODER, train_argv
from nlkd.cli import main
from nlkd.data.info import DatasetInfo
from nlkd.errors import NLKDError
from nlkd.tensorboard_log import TensorBoardLog, scalar_tag

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def _events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_a_two_epoch_run_logs_what_metrics_jsonl_holds(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = train_argv(tiny_data, out, "--epochs", "2", "--encoder", SMALL_ENCODER, "--strategy", "reweight")
    teacher = tmp_path / "teacher"
    assert main(train_argv(tiny_data, teacher, "--epochs", "1", "--encoder", SMALL_ENCODER)) == 0
    assert main([*argv, "--teacher", str(teacher / "last.pt"), "--log", "tensorboard"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    acc = _events(out / "tb")
    keys = [k for k in records[0] if k != "epoch"]
    assert {"train_loss", "val_miou", "val_bf", "w_teacher_clean", "w_teacher_coarse"} <= set(keys)
    assert sorted(acc.Tags()["scalars"]) == sorted(scalar_tag(k) for k in keys)
    for key in keys:
        events = acc.Scalars(scalar_tag(key))
        assert [e.step for e in events] == [1, 2]
        assert [e.value for e in events] == pytest.approx([r[key] for r in records], rel=1e-6, abs=1e-7)
    # log_images_every = 5: no grid after epoch 1, one after the last epoch (2)
    (image,) = acc.Images("val/predictions")
    assert image.step == 2 and image.width > 3 * 48 and image.height > 4 * 32


def test_resume_drops_what_an_interrupted_run_logged_past_its_checkpoint(tmp_path: Path) -> None:
    info = DatasetInfo(num_classes=3, ignore_index=None)
    first = TensorBoardLog(tmp_path, every=100, info=info)
    for epoch in (1, 2, 3):
        first.epoch({"epoch": epoch, "train_loss": float(epoch)}, False, None, None, None)  # type: ignore[arg-type]
    first.close()
    resumed = TensorBoardLog(tmp_path, every=100, info=info, start_epoch=1)  # last.pt was written after epoch 1
    for epoch in (2, 3):
        resumed.epoch({"epoch": epoch, "train_loss": 10.0 * epoch}, False, None, None, None)  # type: ignore[arg-type]
    resumed.close()
    events = _events(tmp_path / "tb").Scalars("train/train_loss")
    assert [(e.step, e.value) for e in events] == [(1, 1.0), (2, 20.0), (3, 30.0)]


def test_tensorboard_missing_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(
        NLKDError,
        match=r"log=tensorboard needs the tensorboard package: pip install .nlkd\[io\]. \(or pip install tensorboard\)",
    ):
        TensorBoardLog(tmp_path, every=5, info=DatasetInfo(num_classes=3))
    assert not (tmp_path / "tb").exists()


def test_train_without_tensorboard_stops_in_one_line_before_writing(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    out = tmp_path / "run"
    assert main([*train_argv(tiny_data, out, "--encoder", SMALL_ENCODER), "--log", "tensorboard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "log=tensorboard needs the tensorboard package" in err[0], err
    assert not out.exists()


def test_bad_log_value_is_a_config_error(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for setting, expected in (("log=wandb", "expects one of none, tensorboard"), ("log_images_every=0", ">= 1")):
        assert main([*train_argv(tiny_data, tmp_path / "run", "--set", setting)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0]
    assert not (tmp_path / "run").exists()


def test_prediction_strip_shows_photo_annotation_prediction() -> None:
    import torch

    from nlkd.data.transforms import to_tensor
    from nlkd.tensorboard_log import prediction_strip

    info = DatasetInfo(num_classes=2, ignore_index=255, palette=((0, 0, 0), (255, 0, 0)))
    photo = np.random.default_rng(0).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    mask = np.array([[1, 0, 255, 1, 0]] * 4)
    strip = prediction_strip(to_tensor(photo), mask, np.ones((4, 5), dtype=np.int64), info)
    assert strip.shape == (4, 3 * 5 + 4, 3) and strip.dtype == np.uint8
    assert np.abs(strip[:, :5].astype(int) - photo.transpose(1, 2, 0)).max() <= 1
    assert (strip[:, 5:7] == 255).all() and (strip[:, 7] == (255, 0, 0)).all() and (strip[:, 8] == 0).all()
    assert (strip[:, 14:] == torch.tensor([255, 0, 0]).numpy()).all()
