"""The fast CPU step options (bfloat16 autocast, channels_last) train and leave an fp32 checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from conftest import SMALL_ENCODER, tiny_config
from nlkd.checkpoint import model_from_checkpoint
from nlkd.data.folder import FolderDataset
from nlkd.evaluate import evaluate
from nlkd.train import train


def test_bf16_channels_last_epoch_has_finite_loss_and_evaluates_in_fp32(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "fast"
    cfg = tiny_config(tiny_data, out, bf16=True, channels_last=True, **{"model.encoder": SMALL_ENCODER})
    train(cfg, log=lambda *a, **k: None)
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(record["train_loss"]) and record["train_loss"] > 0
    model, _, info = model_from_checkpoint(out / "last.pt")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps fp32 weights
    result = evaluate(model, FolderDataset(tiny_data, "val", info=info, size=tuple(cfg.data.size)))
    assert 0.0 <= result["miou"] <= 1.0 and result["n_images"] > 0
    assert math.isclose(result["miou"], record["val_miou"], abs_tol=1e-9)  # the val pass of training is fp32 too
