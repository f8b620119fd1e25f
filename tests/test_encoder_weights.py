"""``--encoder-weights PATH``: a local state dict into the encoder (timm/smp names), never a download."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import SMALL_ENCODER, train_argv
from nlkd.cli import main
from nlkd.config import ModelConfig
from nlkd.encoder_weights import encoder_of, load_encoder_weights
from nlkd.errors import DataError
from nlkd.models import create_model


def _model(name: str = "unet", seed: int = 0, **options: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, 3, **options)


def _assert_encoders_equal(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = encoder_of(a).state_dict(), encoder_of(b).state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    ("name", "options"), [("unet", {}), ("pointrend", {}), ("ocrnet", {"mid_channels": 16, "key_channels": 8})]
)
def test_an_encoder_saved_from_one_model_loads_into_a_fresh_one(name: str, options: dict, tmp_path: Path) -> None:
    source, fresh = _model(name, 0, **options), _model(name, 1, **options)
    state = encoder_of(source).state_dict()
    assert not all(torch.equal(v, encoder_of(fresh).state_dict()[k]) for k, v in state.items())
    path = tmp_path / "encoder.pth"
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in state.items()}}, path)  # prefixed and wrapped
    loaded, unused = load_encoder_weights(fresh, path, name)
    assert (loaded, unused) == (len(state), 0)
    _assert_encoders_equal(source, fresh)


def test_plain_keys_safetensors_and_a_whole_model_file(tmp_path: Path) -> None:
    source = _model()
    state = encoder_of(source).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "encoder.safetensors")
    fresh = _model(seed=1)
    assert load_encoder_weights(fresh, tmp_path / "encoder.safetensors")[0] == len(state)
    _assert_encoders_equal(source, fresh)
    torch.save({"model": source.state_dict()}, tmp_path / "whole.pt")  # keys net.encoder.*, plus the decoder's
    fresh = _model(seed=2)
    loaded, unused = load_encoder_weights(fresh, tmp_path / "whole.pt")
    assert loaded == len(state) and unused == len(source.state_dict()) - len(state) > 0
    _assert_encoders_equal(source, fresh)


def test_a_timm_models_own_file_loads_into_smps_timm_universal_encoder(tmp_path: Path) -> None:
    """timm names (``conv_stem.weight``) into smp's ``tu-`` encoder (``model.conv_stem.weight``); the timm
    model's head (``conv_head``, ``classifier``) is counted as unused."""
    import timm

    torch.manual_seed(3)
    state = timm.create_model(SMALL_ENCODER.removeprefix("tu-"), pretrained=False).state_dict()
    torch.save(state, tmp_path / "timm.pth")
    fresh = _model(encoder=SMALL_ENCODER)
    wanted = encoder_of(fresh).state_dict()
    assert not wanted.keys() & state.keys()  # no key is the same as it is
    loaded, unused = load_encoder_weights(fresh, tmp_path / "timm.pth")
    assert (loaded, unused) == (len(wanted), len(state) - len(wanted)) and unused > 0
    got = encoder_of(fresh).state_dict()
    assert all(torch.equal(got[k], state[k.removeprefix("model.")]) for k in wanted)


def test_missing_and_mismatched_keys_are_named_and_counted(tmp_path: Path) -> None:
    state = encoder_of(_model()).state_dict()
    keys = list(state)
    torch.save({k: v for k, v in state.items() if k not in keys[:5]}, tmp_path / "missing.pth")
    with pytest.raises(DataError, match=rf"5 of the {len(state)} encoder tensors of 'model' are missing \({keys[0]}"):
        load_encoder_weights(_model(), tmp_path / "missing.pth")
    conv = next(k for k, v in state.items() if v.ndim == 4)
    torch.save({**state, conv: torch.zeros(1, 1, 1, 1)}, tmp_path / "shape.pth")
    with pytest.raises(DataError, match=rf"1 encoder tensors of 'model' have another shape \({conv} \(1, 1, 1, 1\)"):
        load_encoder_weights(_model(), tmp_path / "shape.pth")


def test_a_weights_path_is_not_passed_to_the_model_library() -> None:
    assert ModelConfig(encoder_weights="weights/r18.pth").kwargs() == {}
    assert ModelConfig(encoder_weights="imagenet").kwargs() == {"encoder_weights": "imagenet"}


def test_train_loads_the_file_and_logs_the_count(tiny_data: Path, tmp_path: Path) -> None:
    source = _model(encoder=SMALL_ENCODER)
    state = encoder_of(source).state_dict()
    torch.save(state, tmp_path / "enc.pth")
    out = tmp_path / "run"
    argv = train_argv(tiny_data, out, "--epochs", "1", "--encoder", SMALL_ENCODER, "--set", "data.hflip=false")
    assert main([*argv, "--encoder-weights", str(tmp_path / "enc.pth")]) == 0
    log = (out / "train.log").read_text()
    assert f"loaded {len(state)} tensors into the encoder of network 0 from {tmp_path / 'enc.pth'}" in log


@pytest.mark.parametrize(
    ("file", "message"),
    [("missing.pth", "encoder tensors of 'unet' are missing"), ("absent.pth", "encoder weights file not found")],
)
def test_train_refuses_a_bad_file_in_one_line(
    file: str, message: str, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = encoder_of(_model(encoder=SMALL_ENCODER)).state_dict()
    torch.save(dict(list(state.items())[2:]), tmp_path / "missing.pth")
    out = tmp_path / "run"
    argv = train_argv(tiny_data, out, "--epochs", "1", "--encoder", SMALL_ENCODER)
    assert main([*argv, "--encoder-weights", str(tmp_path / file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    if file == "missing.pth":
        assert f"2 of the {len(state)} encoder tensors" in err[0]
    assert not out.exists()  # checked before the run folder is made


def test_a_checkpoint_is_rebuilt_without_its_pretrained_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluating or exporting a run that started from 'imagenet' or a file must not download or need it."""
    import nlkd.checkpoint
    from nlkd.checkpoint import make_checkpoint, model_from_checkpoint
    from nlkd.config import TrainConfig
    from nlkd.data.info import DatasetInfo

    cfg, info = TrainConfig(), DatasetInfo(num_classes=3)
    cfg.model.encoder = SMALL_ENCODER
    ckpt = make_checkpoint(cfg, info, [_model(encoder=SMALL_ENCODER)], 0)
    seen: list[dict] = []
    monkeypatch.setattr(nlkd.checkpoint, "create_model", lambda *a, **kw: seen.append(kw) or create_model(*a, **kw))
    for weights in ("imagenet", "gone/encoder.pth"):
        ckpt["config"]["model"]["encoder_weights"] = weights
        model_from_checkpoint(ckpt)
        assert seen.pop() == {"encoder": SMALL_ENCODER}
