"""What a user of ``nlkd train`` reads and relies on: a resumed finished run does nothing and says so, a
missing run is not resumed, logs without progress-bar redraws off a terminal, ``train.log`` with a summary,
every checkpoint checked against the data's classes, and a warning for a teacher that agrees with nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import nlkd.train
from conftest import SMALL_ENCODER, tiny_config, train_argv
from nlkd.cli import main
from nlkd.data.folder import FolderDataset
from nlkd.data.info import load_dataset_info
from nlkd.io import read_mask, write_mask
from nlkd.teacher import teacher_scores, weak_teacher_warning
from nlkd.train import train


def quiet(*args: Any, **kwargs: Any) -> None:
    pass


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    """Exit code, stdout, and stderr lines of ``nlkd argv`` (stderr is not a terminal here)."""
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, [ln for ln in err.splitlines() if ln.strip()]


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(autouse=True)
def _no_curves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nlkd.train, "_plot", lambda out: None)


@pytest.fixture(scope="module")
def finished(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A 2-epoch run through the CLI, off a terminal: (run folder, its stdout, its stderr)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    with pytest.MonkeyPatch.context() as m, _Capture() as cap:
        m.setattr(nlkd.train, "_plot", lambda out: None)
        assert main(train_argv(tiny_data, out, "--epochs", "2", "--encoder", SMALL_ENCODER)) == 0
    return out, cap.out, cap.err


class _Capture:
    """stdout/stderr of a block, as a module-scoped fixture cannot use capsys (both are not terminals)."""

    def __enter__(self) -> _Capture:
        import contextlib
        import io

        self._out, self._err = io.StringIO(), io.StringIO()
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(contextlib.redirect_stdout(self._out))
        self._stack.enter_context(contextlib.redirect_stderr(self._err))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self.out, self.err = self._out.getvalue(), self._err.getvalue()


def test_off_a_terminal_one_line_per_epoch_and_no_bar_redraws(finished: tuple[Path, str, str]) -> None:
    _, stdout, stderr = finished
    assert "\r" not in stderr and "it/s" not in stderr and "epoch 1/2" not in stderr
    assert [ln.split()[0] for ln in stdout.splitlines() if ln.startswith("epoch=")] == ["epoch=1", "epoch=2"]


def test_train_log_holds_the_epochs_and_a_summary(finished: tuple[Path, str, str]) -> None:
    out, stdout, _ = finished
    log = (out / "train.log").read_text().splitlines()
    messages = [ln.split(" ", 2)[2] for ln in log]  # after the date and time
    assert messages == [ln for ln in stdout.splitlines() if ln]
    history = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    best = max(history, key=lambda r: r["val_miou"])
    done, best_line, ckpts = messages[-3:]
    assert done.startswith(f"done: {out}: unet ({SMALL_ENCODER}), strategy baseline, 2 epochs on cpu, ")
    assert done.endswith("16 training / 8 validation images")
    assert best_line.startswith(f"best: epoch {best['epoch']}, val mIoU {100 * best['val_miou']:.2f}%")
    mb = {n: f"{(out / n).stat().st_size / 1e6:.0f} MB" for n in ("best.pt", "last.pt")}
    assert ckpts == (
        f"checkpoints: {out / 'best.pt'} (weights, {mb['best.pt']}), {out / 'last.pt'} (for --resume, {mb['last.pt']})"
    )


def test_every_metrics_jsonl_key_is_documented_in_the_readme(finished: tuple[Path, str, str]) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("`metrics.jsonl` has one JSON object per finished epoch") :]
    section = section[: section.index("\n\n")]  # its paragraph
    keys = {key for line in (finished[0] / "metrics.jsonl").read_text().splitlines() for key in json.loads(line)}
    assert "val_band_share" in keys and "weight_auroc" in keys  # a baseline on coarse labels with a manifest
    assert sorted(key for key in keys if f"`{key}`" not in section) == []


def test_resume_of_a_finished_run_does_nothing(
    finished: tuple[Path, str, str], tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = finished[0]
    before = files(out)
    for argv in (
        train_argv(tiny_data, out, "--epochs", "2", "--encoder", SMALL_ENCODER, "--resume"),
        ["train", "--out", str(out), "--resume"],
    ):
        rc, stdout, err = cli(capsys, *argv)
        assert rc == 0 and err == []
        assert stdout.splitlines() == [f"{out} is already complete (2/2 epochs); nothing to do"]
    assert files(out) == before


def test_resume_of_a_missing_run_is_refused(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nothing"
    rc, _, err = cli(capsys, *train_argv(tiny_data, out, "--epochs", "1", "--resume"))
    assert rc == 2
    assert err == [f"nlkd train: error: {out}: no run to resume (no last.pt there); start it without --resume"]
    assert not out.exists()


# ----------------------------------------------------------------------------- checkpoint vs data classes


@pytest.fixture(scope="module")
def three_class_data(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_data`` with its 6 classes folded into 3 (class mod 3)."""
    root = tmp_path_factory.mktemp("three") / "data"
    shutil.copytree(tiny_data / "images", root / "images")
    for split in ("train", "val"):
        for path in sorted((tiny_data / "labels" / split).glob("*.png")):
            write_mask(root / "labels" / split / path.name, read_mask(path) % 3)
    (root / "dataset.yaml").write_text("num_classes: 3\nignore_index: null\n")
    return root


def _teacher(data: Path, out: Path) -> Path:
    with pytest.MonkeyPatch.context() as m:
        m.setattr(nlkd.train, "_plot", lambda out: None)
        train(tiny_config(data, out, **{"model.encoder": SMALL_ENCODER}), log=quiet)
    return out / "best.pt"


@pytest.fixture(scope="module")
def teachers(tiny_data: Path, three_class_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("teachers")
    return {6: _teacher(tiny_data, root / "t6"), 3: _teacher(three_class_data, root / "t3")}


@pytest.mark.parametrize(("teacher", "data"), [(6, 3), (3, 6)])
def test_train_refuses_a_teacher_of_other_classes_before_writing(
    teacher: int,
    data: int,
    teachers: dict[int, Path],
    tiny_data: Path,
    three_class_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = {6: tiny_data, 3: three_class_data}[data]
    out = tmp_path / "student"
    argv = train_argv(root, out, "--strategy", "nlkd", "--teacher", str(teachers[teacher]), labels="train")
    rc, _, err = cli(capsys, *argv)
    assert rc == 2
    assert err == [f"nlkd train: error: {teachers[teacher]}: checkpoint has {teacher} classes, the data set has {data}"]
    assert not out.exists()


@pytest.mark.parametrize("command", ["eval", "score"])
@pytest.mark.parametrize(("teacher", "data"), [(6, 3), (3, 6)])
def test_eval_and_score_name_the_checkpoint_when_classes_differ(
    command: str,
    teacher: int,
    data: int,
    teachers: dict[int, Path],
    tiny_data: Path,
    three_class_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = {6: tiny_data, 3: three_class_data}[data]
    extra = ["--out", str(tmp_path / "s.csv")] if command == "score" else []
    rc, _, err = cli(
        capsys, command, "--checkpoint", str(teachers[teacher]), "--data", str(root), "--device", "cpu", *extra
    )
    assert rc == 2
    assert err == [
        f"nlkd {command}: error: {teachers[teacher]}: checkpoint has {teacher} classes, the data set has {data}"
    ]
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("command", ["eval", "score", "train"])
def test_a_checkpoint_of_another_ignore_index_is_named_and_nothing_is_written(
    command: str, teachers: dict[int, Path], tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, teacher = tmp_path / "out", str(teachers[6])  # trained without an ignore index
    argv = {
        "eval": ["eval", "--checkpoint", teacher, "--data", str(tiny_data), "--device", "cpu"],
        "score": ["score", "--checkpoint", teacher, "--data", str(tiny_data), "--device", "cpu", "--out", str(out)],
        "train": train_argv(tiny_data, out, "--strategy", "nlkd", "--teacher", teacher, labels="train"),
    }[command]
    rc, _, err = cli(capsys, *argv, "--ignore-index", "255")
    assert rc == 2
    assert err == [f"nlkd {command}: error: {teacher}: checkpoint has ignore index None, the data set has 255"]
    assert not out.exists()


def test_eval_of_a_matching_checkpoint_still_works(
    teachers: dict[int, Path], three_class_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, stdout, err = cli(capsys, "eval", "--checkpoint", str(teachers[3]), "--data", str(three_class_data), "--json")
    assert rc == 0 and err == []
    assert 0.0 <= json.loads(stdout)["miou"] <= 1.0


# ----------------------------------------------------------------------------- a teacher that agrees with nothing


def test_weak_teacher_warning_says_the_number() -> None:
    nan = float("nan")
    warning = weak_teacher_warning(torch.tensor([0.01, 0.02, nan, 0.0]), "bfmiou")
    assert warning is not None and "mean bfmiou on these 4 training images is 1.0 % (below 5 %)" in warning
    assert weak_teacher_warning(torch.tensor([0.01, 0.5, 0.6]), "bfmiou") is None
    assert weak_teacher_warning(torch.tensor([nan, nan]), "bfmiou") is None


def test_training_with_a_weak_teacher_warns(tiny_data: Path, tmp_path: Path) -> None:
    ds = FolderDataset(tiny_data, "train", info=load_dataset_info(tiny_data), size=(32, 48))
    csv = tmp_path / "scores.csv"
    csv.write_text("id,weight\n" + "".join(f"{i},0.01\n" for i in ds.ids))
    messages: list[str] = []
    kwargs = {
        "teacher": None,
        "metric": "bfmiou",
        "tolerance": 2.0,
        "cache_dir": tmp_path,
        "device": torch.device("cpu"),
    }
    scores = teacher_scores(ds, scores_csv=str(csv), log=messages.append, **kwargs)
    assert torch.allclose(scores, torch.full((16,), 0.01))
    assert len(messages) == 1 and messages[0].startswith("warning: the teacher's mean score on these 16 training")
    assert " 1.0 % " in messages[0]
    csv.write_text("id,weight\n" + "".join(f"{i},0.5\n" for i in ds.ids))
    messages.clear()
    teacher_scores(ds, scores_csv=str(csv), log=messages.append, **kwargs)
    assert messages == []
