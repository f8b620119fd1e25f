"""The fast CPU step options (bfloat16 autocast, channels_last) train and leave an fp32 checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import nlkd.runtime
from conftest import SMALL_ENCODER, tiny_config
from nlkd.checkpoint import model_from_checkpoint
from nlkd.data.folder import FolderDataset
from nlkd.evaluate import evaluate
from nlkd.train import train


def test_bf16_channels_last_epoch_has_finite_loss_and_evaluates_in_fp32(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nlkd.runtime, "has_native_bf16", lambda device: False)  # an AVX2-only CPU
    out = tmp_path / "fast"
    cfg = tiny_config(tiny_data, out, bf16=True, channels_last=True, **{"model.encoder": SMALL_ENCODER})
    lines: list[str] = []
    train(cfg, log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    warned = [line for line in lines if "without native bfloat16" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: bf16=true on a CPU") and "set bf16=false" in warned[0]
    assert warned[0] in (out / "train.log").read_text()  # said in the run's log too
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(record["train_loss"]) and record["train_loss"] > 0
    model, _, info = model_from_checkpoint(out / "last.pt")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps fp32 weights
    result = evaluate(model, FolderDataset(tiny_data, "val", info=info, size=tuple(cfg.data.size)))
    assert 0.0 <= result["miou"] <= 1.0 and result["n_images"] > 0
    assert math.isclose(result["miou"], record["val_miou"], abs_tol=1e-9)  # the val pass of training is fp32 too


@pytest.mark.parametrize(
    ("bf16", "native", "warned"), [(True, False, True), (True, True, False), (False, False, False)]
)
def test_precision_warnings_only_for_emulated_bf16(
    bf16: bool, native: bool, warned: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nlkd.runtime, "has_native_bf16", lambda device: native)
    lines = nlkd.runtime.precision_warnings(bf16, torch.device("cpu"))
    assert len(lines) == int(warned)


def test_has_native_bf16_reads_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not nlkd.runtime.has_native_bf16(cpu)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert nlkd.runtime.has_native_bf16(cpu)
