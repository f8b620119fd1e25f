"""Safe checkpoints: plain values only, read with ``weights_only=True``; a pickled object is refused and
never run; checkpoints of the previous format are refused with the command that converts them, and a
converted one resumes exactly; ``best.pt`` holds the weights only."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import nlkd.train
from conftest import SMALL_ENCODER, tiny_config
from nlkd.checkpoint import load_checkpoint
from nlkd.cli import main
from nlkd.errors import DataError
from nlkd.train import train

BEST_KEYS = {"format", "config", "info", "models", "epoch", "best"}


def quiet(*args: Any, **kwargs: Any) -> None:
    pass


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, [ln for ln in err.splitlines() if ln.strip()]


@pytest.fixture(autouse=True)
def _no_curves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nlkd.train, "_plot", lambda out: None)


def small(data: Path, out: Path, **changes: Any) -> Any:
    return tiny_config(data, out, **{"model.encoder": SMALL_ENCODER, "data.labels": "train_coarse", **changes})


@pytest.fixture(scope="module")
def run_dir(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-epoch co-teaching+ run with Ranger (two networks, Lookahead state, strategy state)."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(nlkd.train, "_plot", lambda out: None)
        train(small(tiny_data, out, **{"strategy.name": "coteaching_plus", "optim.name": "ranger"}), log=quiet)
    return out


def test_checkpoints_load_with_weights_only(run_dir: Path) -> None:
    last = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    best = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    assert set(best) == BEST_KEYS
    assert {"optimizers", "schedulers", "strategy", "rng", "history"} <= set(last)
    assert len(best["models"]) == 2
    for a, b in zip(best["models"], last["models"], strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert (run_dir / "best.pt").stat().st_size < 0.7 * (run_dir / "last.pt").stat().st_size


def test_readme_states_the_default_unet_and_its_best_pt_size(tmp_path: Path) -> None:
    """README's "57 MB for the default U-Net's 14.33 M": the default model of TrainConfig, saved as best.pt."""
    from nlkd.checkpoint import build_model, make_checkpoint, save_checkpoint
    from nlkd.config import TrainConfig
    from nlkd.data.info import DatasetInfo

    cfg, info = TrainConfig(), DatasetInfo(num_classes=3)
    model = build_model(cfg, info)
    save_checkpoint(make_checkpoint(cfg, info, [model], 1), tmp_path / "best.pt")
    params, size = sum(p.numel() for p in model.parameters()), (tmp_path / "best.pt").stat().st_size
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    sentence = f"{size / 1e6:.0f} MB for the default U-Net's {params / 1e6:.2f} M"
    assert sentence in " ".join(readme.split()), sentence


class _Payload:
    """Unpickling this creates the file ``path`` (what a malicious checkpoint's code could do)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


def _poisoned(good: Path, path: Path, marker: Path) -> Path:
    state = torch.load(good, map_location="cpu", weights_only=True)
    state["info"]["note"] = _Payload(marker)
    torch.save(state, path)
    return path


@pytest.mark.parametrize("command", ["eval", "predict", "train", "audit", "score"])
def test_a_pickled_object_is_refused_and_never_run(
    command: str, run_dir: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The payload works: full unpickling runs it.
    probe = tmp_path / "probe"
    torch.load(_poisoned(run_dir / "best.pt", tmp_path / "probe.pt", probe), weights_only=False)
    assert probe.exists()

    marker = tmp_path / "marker"
    bad = _poisoned(run_dir / "best.pt", tmp_path / "bad.pt", marker)
    args = {
        "eval": ["eval", "--checkpoint", str(bad), "--data", str(tiny_data), "--device", "cpu"],
        "predict": [
            *("predict", "--checkpoint", str(bad), "--images", str(tiny_data / "images" / "test")),
            *("--out", str(tmp_path / "pred"), "--device", "cpu"),
        ],
        "train": [
            *("train", "--data", str(tiny_data), "--out", str(tmp_path / "student"), "--strategy", "nlkd"),
            *("--teacher", str(bad), "--size", "32x48", "--device", "cpu", "--epochs", "1"),
        ],
        "audit": ["audit", "--checkpoint", str(bad), "--data", str(tiny_data), "--out", str(tmp_path / "audit")],
        "score": ["score", "--checkpoint", str(bad), "--data", str(tiny_data), "--out", str(tmp_path / "scores.csv")],
    }[command]
    rc, err = cli(capsys, *args)
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"nlkd {command}: error: {bad}: refused, it holds pickled Python objects")
    assert not marker.exists()
    assert not any((tmp_path / name).exists() for name in ("pred", "student", "audit", "scores.csv"))


def _old_format(path: Path, save_as: Path | None = None, marker: Path | None = None) -> None:
    """Rewrite ``path`` (or write ``save_as``) as the previous nlkd wrote it: numpy's RNG state tuple (and
    numpy scalars); with ``marker``, also a payload that would create that file when unpickled."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    n = state["rng"]["numpy"]
    key = n["key"].numpy().astype(np.uint32)
    state["rng"]["numpy"] = (n["bit_generator"], key, n["pos"], n["has_gauss"], n["cached_gaussian"])
    state["best"] = np.float64(state["best"])
    if marker is not None:
        state["info"]["note"] = _Payload(marker)
    torch.save(state, save_as or path)


def test_an_old_checkpoint_is_refused_with_the_fix_and_resumes_exactly_once_converted(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    straight = train(small(tiny_data, tmp_path / "straight", epochs=2), log=quiet)

    out = tmp_path / "old"
    with monkeypatch.context() as m:

        def stop(out: Path) -> None:
            raise KeyboardInterrupt

        m.setattr(nlkd.train, "_plot", stop)
        with pytest.raises(KeyboardInterrupt):
            train(small(tiny_data, out, epochs=2), log=quiet)
    _old_format(out / "last.pt")
    with pytest.raises(DataError, match=rf"convert-checkpoint {out / 'last.pt'} NEW.pt"):
        load_checkpoint(out / "last.pt")

    rc, err = cli(capsys, "train", "--out", str(out), "--resume")
    assert rc == 2 and len(err) == 1 and "nlkd convert-checkpoint" in err[0]

    new = tmp_path / "new.pt"
    rc, err = cli(capsys, "convert-checkpoint", str(out / "last.pt"), str(new))
    assert rc == 0
    assert type(load_checkpoint(new)["best"]) is float  # the numpy scalar became a Python number
    rc, err = cli(capsys, "convert-checkpoint", str(out / "last.pt"), str(new))
    assert rc == 2 and err == [f"nlkd convert-checkpoint: error: {new}: already exists; choose another output file"]

    new.replace(out / "last.pt")
    # what the interrupted process left in the global RNGs must not matter: resume restores them
    random.seed(123), np.random.seed(123), torch.manual_seed(123)
    resumed = train(small(tiny_data, out, epochs=2), resume=True, log=quiet)
    timing = ("seconds", "train_seconds")
    assert {k: v for k, v in resumed.items() if k not in timing} == {
        k: v for k, v in straight.items() if k not in timing
    }
    a, b = load_checkpoint(out / "last.pt"), load_checkpoint(tmp_path / "straight" / "last.pt")
    for sa, sb in zip(a["models"], b["models"], strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_convert_refuses_a_file_that_is_not_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save({"state_dict": {"w": torch.zeros(3)}}, tmp_path / "foreign.pt")
    rc, err = cli(capsys, "convert-checkpoint", str(tmp_path / "foreign.pt"), str(tmp_path / "new.pt"))
    assert rc == 2 and err == [
        f"nlkd convert-checkpoint: error: {tmp_path / 'foreign.pt'}: not an nlkd checkpoint "
        "(expected a file written by 'nlkd train')"
    ]
    assert not (tmp_path / "new.pt").exists()


def test_convert_refuses_a_pickled_object_and_never_runs_it(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, marker = tmp_path / "old.pt", tmp_path / "marker"
    _old_format(run_dir / "last.pt", save_as=old, marker=marker)  # numpy values (allowed) + a payload
    rc, err = cli(capsys, "convert-checkpoint", str(old), str(tmp_path / "new.pt"))
    assert rc == 2 and err == [
        f"nlkd convert-checkpoint: error: {old}: refused, it holds pickled Python objects (loading it could run code)"
    ]
    assert not marker.exists() and not (tmp_path / "new.pt").exists()
