"""``nlkd export --format onnx``: every registered model runs in onnxruntime as in PyTorch (≤ 1e-4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nlkd.checkpoint import make_checkpoint
from nlkd.cli import main
from nlkd.config import TrainConfig
from nlkd.data.info import DatasetInfo
from nlkd.export_onnx import STATIC_ONLY, export_onnx, onnx_max_abs_diff
from nlkd.io import save_checkpoint
from nlkd.models import create_model, list_models

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

TOLERANCE = 1e-4
#: Small networks where the registry allows it (the export path is the same for any width).
OPTIONS: dict[str, dict[str, object]] = {
    "ocrnet": {"mid_channels": 32, "key_channels": 16},
}


def _calibrated(name: str) -> torch.nn.Module:
    """A random-init model whose BatchNorm statistics were updated by a few forwards, as a trained model's
    are: with the initial statistics, activations grow through HRNet's many layers until float rounding
    alone exceeds the tolerance."""
    torch.manual_seed(0)
    model = create_model(name, 3, **OPTIONS.get(name, {}))
    with torch.no_grad():
        model.train()
        for _ in range(3):
            model(torch.rand(2, 3, 64, 64))
    return model.eval()


def _images(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", list_models())
def test_static_export_matches_pytorch(name: str, tmp_path: Path) -> None:
    model = _calibrated(name)
    path = tmp_path / f"{name}.onnx"
    export_onnx(model, path, (50, 70), name=name)
    assert onnx_max_abs_diff(model, path, _images(1, 3, 50, 70)) <= TOLERANCE
    assert not model.training  # the exporter leaves the model as it found it


@pytest.mark.parametrize("name", [n for n in list_models() if n not in STATIC_ONLY])
def test_dynamic_export_matches_pytorch_at_other_sizes(name: str, tmp_path: Path) -> None:
    model = _calibrated(name)
    path = tmp_path / f"{name}.onnx"
    export_onnx(model, path, (64, 64), name=name, dynamic=True)  # a stride multiple: traced padded anyway
    for shape in [(1, 3, 64, 64), (2, 3, 50, 70), (1, 3, 33, 97)]:
        assert onnx_max_abs_diff(model, path, _images(*shape)) <= TOLERANCE, shape


@pytest.mark.parametrize("name", sorted(STATIC_ONLY))
def test_static_only_models_are_wrong_when_dynamic(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal is measured: without it, the traced graph differs from PyTorch at a larger size."""
    model = _calibrated(name)
    with pytest.raises(Exception, match="cannot be exported with --dynamic"):
        export_onnx(model, tmp_path / "refused.onnx", (50, 70), name=name, dynamic=True)
    assert not (tmp_path / "refused.onnx").exists()
    monkeypatch.setattr("nlkd.export_onnx.STATIC_ONLY", {})
    export_onnx(model, tmp_path / "forced.onnx", (50, 70), name=name, dynamic=True)
    assert onnx_max_abs_diff(model, tmp_path / "forced.onnx", _images(1, 3, 256, 256)) > 100 * TOLERANCE


def _checkpoint(tmp_path: Path, name: str = "unet", size: list[int] | None = None) -> Path:
    cfg = TrainConfig()
    cfg.model.name = name
    cfg.model.encoder = "resnet18" if name != "ocrnet" else None
    cfg.data.size = size
    info = DatasetInfo(num_classes=3, ignore_index=255, class_names=("a", "b", "c"))
    torch.manual_seed(0)
    model = create_model(name, 3, **cfg.model.kwargs()).eval()
    path = tmp_path / "best.pt"
    save_checkpoint(make_checkpoint(cfg, info, [model], 0), path)
    return path


def test_cli_exports_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = _checkpoint(tmp_path, size=[32, 48])
    out = tmp_path / "deploy" / "model.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out), "--dynamic"]) == 0
    printed = capsys.readouterr().out
    assert "images (batch, 3, height, width) -> logits, opset 17" in printed
    assert "checked with onnxruntime" in printed and "32x48" in printed
    import onnx

    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["images"] and [o.name for o in graph.output] == ["logits"]
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", "", "height", "width"]
    assert not [p for p in out.parent.iterdir() if p.name != "model.onnx"]  # no temporary file left


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.pt"], "missing.pt: checkpoint not found"),
        (["garbage.pt"], "garbage.pt: corrupt or truncated checkpoint"),
        (["best.pt", "--size", "12"], "size must look like HxW"),
        (["best.pt", "--size", "0x5"], "size must be positive"),
        (["native.pt"], "trained at each image's own size; pass --size HxW"),
    ],
)
def test_cli_bad_input_is_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _checkpoint(tmp_path, size=[32, 48])
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "native").mkdir()
    (tmp_path / "native.pt").write_bytes(_checkpoint(tmp_path / "native", size=None).read_bytes())
    monkeypatch.chdir(tmp_path)
    assert main(["export", *argv, "--out", "model.onnx"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "model.onnx").exists()


def test_cli_refuses_dynamic_pointrend_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = _checkpoint(tmp_path, name="pointrend", size=[32, 48])
    assert main(["export", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--dynamic"]) == 2
    err = capsys.readouterr().err
    assert "cannot be exported with --dynamic" in err and "subdivision_points" in err
    assert not (tmp_path / "m.onnx").exists()
