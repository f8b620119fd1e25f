"""Faults end in one line on stderr and exit code 2, never a traceback, and never damage what is on disk:
a NaN/Inf loss, corrupt or truncated checkpoints, a full disk while writing one, bad options and data."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

import nlkd.checkpoint
import nlkd.io
import nlkd.train
from conftest import SMALL_ENCODER, train_argv
from nlkd.cli import main
from nlkd.io import atomic_write_bytes, save_checkpoint

ENCODER = SMALL_ENCODER


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    """Run ``nlkd argv``: the exit code and the stderr lines a terminal would show (tqdm redraws its bar
    with carriage returns; only what follows the last one remains)."""
    capsys.readouterr()
    rc = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln.rsplit("\r", 1)[-1].strip() for ln in err.split("\n")]
    return rc, [ln for ln in lines if ln]


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return train_argv(data, out, "--epochs", "2", "--encoder", ENCODER, *extra)


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(autouse=True)
def _no_curves(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip drawing curves.png (0.7 s an epoch); tests/test_cli.py checks it."""
    monkeypatch.setattr(nlkd.train, "_plot", lambda out: None)


@pytest.fixture(scope="module")
def ckpt(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "run"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(nlkd.train, "_plot", lambda out: None)
        assert main(train_args(tiny_data, out, "--epochs", "1")) == 0
    return out / "last.pt"


def files_after_epoch_1(out: Path) -> dict[str, bytes]:
    """The run folder's files but ``train.log``, which must hold epoch 1's line only (it is written after
    the epoch's other files, so the snapshots below do not see it)."""
    after = files(out)
    log = after.pop("train.log").decode().splitlines()
    assert len(log) == 1 and log[0].split()[2] == "epoch=1", log
    return after


def snapshot_after_each_epoch(monkeypatch: pytest.MonkeyPatch, out: Path) -> list[dict[str, bytes]]:
    """Record the run folder's files each time an epoch has finished writing them."""
    snaps: list[dict[str, bytes]] = []
    monkeypatch.setattr(nlkd.train, "_plot", lambda _: snaps.append(files(out)))
    return snaps


# ----------------------------------------------------------------------------- NaN / Inf loss


class PoisonAfter(nn.Module):
    """Wraps a model; from its ``after``-th training forward on, the logits make the loss non-finite."""

    def __init__(self, net: nn.Module, after: int, kind: str) -> None:
        super().__init__()
        self.net, self.after, self.kind, self.calls = net, after, kind, 0

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                if self.kind == "nan":
                    return out + float("nan")
                # class 0 certain, every other class impossible: CE = inf wherever the label is not 0
                bad = torch.full_like(out, float("-inf"))
                bad[:, 0] = 0.0
                return out * 0.0 + bad
        return out


def poison_models(monkeypatch: pytest.MonkeyPatch, after: int, kind: str) -> None:
    real: Callable[..., nn.Module] = nlkd.checkpoint.create_model
    monkeypatch.setattr(nlkd.checkpoint, "create_model", lambda *a, **k: PoisonAfter(real(*a, **k), after, kind))


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_non_finite_loss_stops_with_epoch_and_step(
    kind: str, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    poison_models(monkeypatch, after=4 + 1, kind=kind)  # 4 steps an epoch: epoch 2, step 2 goes bad
    snaps = snapshot_after_each_epoch(monkeypatch, out)
    rc, err = cli(capsys, *train_args(tiny_data, out))
    assert rc == 2
    assert err == [
        f"nlkd train: error: loss became {kind} at epoch 2, step 2; stopped, {out / 'last.pt'} is the last good "
        "checkpoint"
    ]
    assert len(snaps) == 1 and files_after_epoch_1(out) == snaps[0]  # epoch 1's files, untouched
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_non_finite_loss_in_the_first_step(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    poison_models(monkeypatch, after=0, kind="nan")
    rc, err = cli(capsys, *train_args(tiny_data, out))
    assert rc == 2
    assert err == ["nlkd train: error: loss became nan at epoch 1, step 1; stopped, no checkpoint written"]
    assert not (out / "last.pt").exists()


def test_ctrl_c_keeps_the_last_epoch(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    snaps = snapshot_after_each_epoch(monkeypatch, out)
    real = nlkd.train._plot

    def plot_then_interrupt(path: Path) -> None:
        real(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(nlkd.train, "_plot", plot_then_interrupt)
    rc, err = cli(capsys, *train_args(tiny_data, out))
    assert rc == 130 and err == ["nlkd train: interrupted"]
    assert len(snaps) == 1 and files(out) == snaps[0]


# ----------------------------------------------------------------------------- corrupt checkpoints


def _truncated(good: bytes) -> bytes:
    return good[: len(good) // 2]


def _garbage(good: bytes) -> bytes:
    return np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()


def _foreign(good: bytes) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(3)}}, buf)
    return buf.getvalue()


CORRUPTIONS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "truncated": (_truncated, "corrupt or truncated checkpoint"),
    "empty": (lambda good: b"", "corrupt or truncated checkpoint"),
    "garbage": (_garbage, "corrupt or truncated checkpoint"),
    "text": (lambda good: b"epochs: 3\n", "corrupt or truncated checkpoint"),
    "foreign": (_foreign, "not an nlkd checkpoint"),
}


@pytest.fixture(params=sorted(CORRUPTIONS))
def bad_ckpt(request: pytest.FixtureRequest, ckpt: Path, tmp_path: Path) -> tuple[Path, str]:
    corrupt, message = CORRUPTIONS[request.param]
    path = tmp_path / "bad.pt"
    path.write_bytes(corrupt(ckpt.read_bytes()))
    return path, message


@pytest.mark.parametrize("command", ["eval", "score", "predict"])
def test_corrupt_checkpoint_is_one_line(
    command: str, bad_ckpt: tuple[Path, str], tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, message = bad_ckpt
    args = {
        "eval": ["--data", str(tiny_data)],
        "score": ["--data", str(tiny_data), "--out", str(tmp_path / "s.csv")],
        "predict": ["--images", str(tiny_data / "images" / "test"), "--out", str(tmp_path / "pred")],
    }[command]
    rc, err = cli(capsys, command, "--checkpoint", str(path), "--device", "cpu", *args)
    assert rc == 2 and len(err) == 1
    assert err[0].startswith(f"nlkd {command}: error: {path}: {message}")
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "pred").exists()


def test_corrupt_last_checkpoint_on_resume(
    bad_ckpt: tuple[Path, str], ckpt: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, message = bad_ckpt
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_bytes((ckpt.parent / "config.yaml").read_bytes())
    (out / "last.pt").write_bytes(path.read_bytes())
    before = files(out)
    for args in (
        train_args(tiny_data, out, "--epochs", "1"),
        ["train", "--config", str(out / "config.yaml"), "--out", str(out)],
    ):
        rc, err = cli(capsys, *args, "--resume")
        assert rc == 2 and len(err) == 1
        assert err[0].startswith(f"nlkd train: error: {out / 'last.pt'}: {message}")
    assert files(out) == before


def test_checkpoint_of_another_model(
    ckpt: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = torch.load(ckpt, weights_only=True)
    state["config"]["model"]["encoder"] = "resnet18"  # the weights are a mobilenet's
    save_checkpoint(state, tmp_path / "other.pt")
    rc, err = cli(
        capsys, "eval", "--checkpoint", str(tmp_path / "other.pt"), "--data", str(tiny_data), "--device", "cpu"
    )
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("nlkd eval: error: checkpoint does not fit model 'unet':")


# ----------------------------------------------------------------------------- full disk


def enospc(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class HalfWrite:
    """A file object whose write stores half of the data, then fails like a full disk."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def __enter__(self) -> HalfWrite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()

    def write(self, data: bytes) -> int:
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        enospc()
        return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_full_disk_leaves_the_previous_file(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "last.pt"
    atomic_write_bytes(target, b"old checkpoint")
    if where == "write":
        real_fdopen = os.fdopen
        monkeypatch.setattr(nlkd.io.os, "fdopen", lambda fd, mode: HalfWrite(real_fdopen(fd, mode)))
    else:
        monkeypatch.setattr(nlkd.io.os, where, enospc)
    with pytest.raises(OSError, match=re.escape(f"No space left on device: '{target}'")) as e:
        atomic_write_bytes(target, b"new checkpoint, much longer than the old one")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    monkeypatch.undo()
    assert target.read_bytes() == b"old checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_full_disk_during_training(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The disk fills up while epoch 2's checkpoint is written: epoch 1's files stay whole."""
    out = tmp_path / "run"
    snaps = snapshot_after_each_epoch(monkeypatch, out)
    real_replace = os.replace

    def replace(src: str, dst: str | os.PathLike[str]) -> None:
        if snaps and str(dst).endswith(".pt"):  # epoch 1 is done: the next checkpoint does not fit
            enospc()
        real_replace(src, dst)

    monkeypatch.setattr(nlkd.io.os, "replace", replace)
    rc, err = cli(capsys, *train_args(tiny_data, out))
    assert rc == 2 and len(err) == 1
    assert re.fullmatch(rf"nlkd train: error: \[Errno 28\] No space left on device: '{out}/(best|last)\.pt'", err[0])
    assert len(snaps) == 1 and files_after_epoch_1(out) == snaps[0]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_unwritable_output(ckpt: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rc, err = cli(
        capsys,
        "score",
        "--checkpoint",
        str(ckpt),
        "--data",
        str(tiny_data),
        "--device",
        "cpu",
        "--out",
        str(blocker / "scores.csv"),
    )
    # off a terminal the finished scoring loop says so in one line (nlkd.progress); then the one error line
    assert rc == 2 and len(err) == 2 and err[0].startswith("scoring: 1 batch in ")
    assert err[1].startswith("nlkd score: error: [Errno ")


# ----------------------------------------------------------------------------- bad options and data


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "optim.lrr=1"], "unknown config key 'optim.lrr'; valid keys at optim: grad_clip, lr, name,"),
        (["--set", "optim.lr=fast"], "config key 'optim.lr' expects float, got 'fast'"),
        (["--set", "epochs=0"], "config key 'epochs' expects an int >= 1, got 0"),
        (["--set", "strategy.reduction=max"], "config key 'strategy.reduction' expects mean, sum or normalized"),
        (["--set", "data.format=coco"], "config key 'data.format' expects folder, cityscapes or supervisely"),
        (["--set", "optim"], "--set expects key=value, got 'optim'"),
        (["--model", "unett"], "model: unknown name 'unett' (did you mean 'unet'?)"),
        (["--strategy", "magic"], "unknown strategy 'magic'"),
        (["--optimizer", "sgd", "--set", "optim.schedule=zigzag"], "optim.schedule: unknown schedule 'zigzag'"),
        (["--device", "gpu:7"], "device 'gpu:7' not understood"),
        (["--strategy", "nlkd"], "strategy 'nlkd' needs a teacher: pass --teacher CKPT"),
        (["--config", "/no/such/config.yaml"], "/no/such/config.yaml: config file not found"),
    ],
)
def test_bad_train_option_is_one_line(
    extra: list[str], message: str, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, err = cli(capsys, *train_args(tiny_data, tmp_path / "run"), *extra)
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("nlkd train: error: ") and message in err[0]
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


@pytest.mark.parametrize("command", ["train", "eval", "score", "validate", "audit", "audit --folds", "reproduce"])
def test_missing_data_folder(command: str, ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every command taking --data says the same first (before the checkpoint, the split or the settings)."""
    missing, out = tmp_path / "nope", str(tmp_path / "out")
    args = {
        "train": train_args(missing, tmp_path / "run")[1:],
        "eval": ["--checkpoint", str(ckpt), "--data", str(missing)],
        "score": ["--checkpoint", str(ckpt), "--data", str(missing), "--out", str(tmp_path / "s.csv")],
        "validate": ["--data", str(missing), "--split", "train"],
        "audit": ["--checkpoint", str(ckpt), "--data", str(missing), "--out", out],
        "audit --folds": ["--folds", "2", "--data", str(missing), "--out", out],
        "reproduce": ["table2", "--data", str(missing), "--out", out, "--dry-run"],
    }[command]
    name = command.split()[0]
    rc, err = cli(capsys, name, *args)
    assert rc == 2 and err == [f"nlkd {name}: error: {missing}: data folder not found"]
    assert not Path(out).exists() and not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("eval", ["--checkpoint", "{tmp}/none.pt", "--data", "{data}"], "{tmp}/none.pt: checkpoint not found"),
        (
            "predict",
            ["--checkpoint", "{ckpt}", "--images", "{tmp}/none", "--out", "{tmp}/p"],
            "{tmp}/none: image folder not found",
        ),
        ("predict", ["--checkpoint", "{ckpt}", "--images", "{tmp}", "--out", "{tmp}/p"], "{tmp}: no images (.jpg"),
        (
            "score",
            ["--checkpoint", "{ckpt}", "--data", "{data}", "--split", "nosuch", "--out", "{tmp}/s.csv"],
            "split 'nosuch' not found in {data}: no folder {data}/images/nosuch and no folder {data}/labels/nosuch"
            " (splits there: test, train, val)",
        ),
    ],
)
def test_bad_path_is_reported(
    command: str,
    args: list[str],
    message: str,
    ckpt: Path,
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    subst = {"tmp": str(tmp_path), "data": str(tiny_data), "ckpt": str(ckpt)}
    rc, err = cli(capsys, command, *(a.format(**subst) for a in args), "--device", "cpu")
    assert rc == 2 and err and err[0].startswith(f"nlkd {command}: error: ")
    assert message.format(**subst) in "\n".join(err)


@pytest.fixture
def bad_masks(tiny_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the tiny data set in which one coarse mask holds the value 200 (6 classes)."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    path = sorted((root / "labels" / "train_coarse").glob("*.png"))[3]
    mask = np.asarray(Image.open(path)).copy()
    mask[:2, :2] = 200
    Image.fromarray(mask).save(path)
    return root, path


def test_wrong_mask_values_stop_training_before_it_starts(
    bad_masks: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The error names the bad file and its values: a header line and one line per bad file (as ``nlkd
    validate`` prints them)."""
    root, path = bad_masks
    rc, err = cli(capsys, *train_args(root, tmp_path / "run"))
    assert rc == 2
    assert err[0].startswith("nlkd train: error: 1 problem in ")
    assert len(err) == 2 and err[1].startswith(f"{path}: ") and "200" in err[1]
    assert not (tmp_path / "run" / "last.pt").exists()


def test_float_mask_is_refused(tmp_path: Path) -> None:
    from nlkd.errors import DataError
    from nlkd.io import read_mask

    path = tmp_path / "m.png"
    Image.fromarray(np.full((4, 5), 1.5, np.float32), mode="F").save(path, format="TIFF")
    with pytest.raises(DataError, match="float32 values; expected integer class indices"):
        read_mask(path)
