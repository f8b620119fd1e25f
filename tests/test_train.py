"""The training loop's promises: exact resume (after a clean stop or ``kill -9``), refusing to mix runs,
and the teacher-score cache (reused when nothing changed, recomputed when stale).

Resume is bit-exact on CPU: ``last.pt`` holds model, optimiser (incl. Lookahead), scheduler, strategy and
RNG states, and the loader order and augmentation are a function of (seed, epoch). That needs the same
number of torch threads in both runs (1 here), as float reductions may split differently otherwise.

Most runs here use a small encoder (``ENCODER``) and skip curves.png: the loop is what is tested, and
the small model's 25 MB checkpoints write several times faster than the default U-Net's 170 MB.
"""

from __future__ import annotations

import fcntl
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import SMALL_ENCODER, tiny_config, train_argv
from nlkd.checkpoint import load_checkpoint
from nlkd.cli import main
from nlkd.config import TrainConfig
from nlkd.data.folder import FolderDataset
from nlkd.data.info import load_dataset_info
from nlkd.teacher import cache_key, read_scores_csv, score_dataset, teacher_scores
from nlkd.train import train

TIMING_KEYS = ("seconds", "train_seconds")
ENCODER = SMALL_ENCODER
SMALL = {"model.encoder": ENCODER}


def quiet(*args: Any, **kwargs: Any) -> None:
    pass


def without_timing(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in TIMING_KEYS}


def assert_same_checkpoint(a: Path, b: Path) -> None:
    """Bit-identical weights, optimiser state and history (timings aside)."""
    ka, kb = load_checkpoint(a), load_checkpoint(b)
    assert ka["epoch"] == kb["epoch"]
    for sa, sb in zip(ka["models"], kb["models"], strict=True):
        assert sa.keys() == sb.keys()
        for name in sa:
            assert torch.equal(sa[name], sb[name]), name
    assert repr(ka["optimizers"]) == repr(kb["optimizers"])
    assert ka["schedulers"] == kb["schedulers"]
    assert [without_timing(r) for r in ka["history"]] == [without_timing(r) for r in kb["history"]]


@pytest.fixture(autouse=True, scope="module")
def _no_curves() -> Any:
    """Skip drawing curves.png (0.7 s an epoch, half of a tiny run; tests/test_cli.py checks it)."""
    import nlkd.train

    with pytest.MonkeyPatch.context() as m:
        m.setattr(nlkd.train, "_plot", lambda out: None)
        yield


@pytest.fixture(scope="module")
def teachers(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different 1-epoch baseline checkpoints (seeds 0 and 1) to act as teachers."""
    root = tmp_path_factory.mktemp("teachers")
    paths = []
    for seed in (0, 1):
        cfg = tiny_config(tiny_data, root / f"t{seed}", seed=seed, **{"data.labels": "train_coarse", **SMALL})
        train(cfg, log=quiet)
        paths.append(root / f"t{seed}" / "last.pt")
    return paths[0], paths[1]


# ----------------------------------------------------------------------------- resume


def interrupt_after_first_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C right after epoch 1's files are written (checkpoints, metrics.jsonl, curves.png)."""
    import nlkd.train

    real = nlkd.train._plot

    def plot_then_stop(out: Path) -> None:
        real(out)
        raise KeyboardInterrupt

    monkeypatch.setattr(nlkd.train, "_plot", plot_then_stop)


def test_resume_is_bit_exact(
    tiny_data: Path,
    teachers: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """NLKD with Ranger: model, Lookahead + RAdam, scheduler, strategy and RNG states all come back from
    last.pt (the baseline with AdamW is resumed after kill -9 below)."""

    def cfg(out: Path) -> TrainConfig:
        changes = {
            "strategy.name": "nlkd",
            "strategy.teacher": str(teachers[0]),
            "strategy.warmup_epochs": 0,
            "optim.name": "ranger",
            "data.labels": "train_coarse",
            **SMALL,
        }
        return tiny_config(tiny_data, out, epochs=2, **changes)

    straight = train(cfg(tmp_path / "straight"), log=quiet)
    with monkeypatch.context() as m:
        interrupt_after_first_epoch(m)
        with pytest.raises(KeyboardInterrupt):
            train(cfg(tmp_path / "resumed"), log=quiet)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 0
    messages: list[str] = []
    resumed = train(cfg(tmp_path / "resumed"), resume=True, log=messages.append)
    assert messages[0] == f"resuming {tmp_path / 'resumed'} after epoch 1/2"
    assert without_timing(resumed) == without_timing(straight)
    assert_same_checkpoint(tmp_path / "straight" / "last.pt", tmp_path / "resumed" / "last.pt")
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return train_argv(data, out, "--encoder", ENCODER, "--set", "threads=1", *extra)


@pytest.fixture(scope="module")
def finished(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-epoch run folder written by ``nlkd train``; tests must leave it as it is."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(_train_args(tiny_data, out, "--epochs", "1")) == 0
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_resume_of_a_finished_run_changes_nothing(
    finished: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(finished)
    assert main([*_train_args(tiny_data, finished, "--epochs", "1"), "--resume"]) == 0
    assert main(["train", "--config", str(finished / "config.yaml"), "--resume"]) == 0  # the same, from its file
    # Where and how it runs may change: device, threads, loader workers (the order does not depend on them).
    extra = ["--device", "auto", "--set", "threads=2", "--set", "data.num_workers=1"]
    assert main([*_train_args(tiny_data, finished, "--epochs", "1"), *extra, "--resume"]) == 0
    assert snapshot(finished) == before


def test_resume_without_a_checkpoint_starts_fresh(tiny_data: Path, tmp_path: Path) -> None:
    record = train(tiny_config(tiny_data, tmp_path / "new", **SMALL), resume=True, log=quiet)
    assert record["epoch"] == 1 and (tmp_path / "new" / "config.yaml").is_file()


def test_existing_run_dir_without_resume_is_refused(
    finished: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(finished)
    capsys.readouterr()
    assert main(_train_args(tiny_data, finished, "--epochs", "1")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"nlkd train: error: {finished} already holds a run; pass --resume to continue it, or choose another --out"
    ]
    assert snapshot(finished) == before


@pytest.mark.parametrize(
    ("extra", "diff"),
    [
        (["--epochs", "2"], "epochs: 1 -> 2"),
        (["--epochs", "1", "--lr", "0.01"], "optim.lr: 0.002 -> 0.01"),
        (["--epochs", "1", "--set", "data.hflip=false", "--seed", "3"], "data.hflip: True -> False; seed: 0 -> 3"),
    ],
)
def test_resume_with_another_config_is_refused(
    extra: list[str], diff: str, finished: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(finished)
    capsys.readouterr()
    assert main([*_train_args(tiny_data, finished, *extra), "--resume"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"nlkd train: error: {finished / 'last.pt'} was written with a different config ({diff}); use a new --out"
    )
    assert snapshot(finished) == before


def test_resume_with_a_different_config_file_is_refused(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "other.yaml"
    config.write_text((finished / "config.yaml").read_text().replace("weight_decay: 0.0001", "weight_decay: 0.001"))
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--resume"]) == 2
    assert "optim.weight_decay: 0.0001 -> 0.001" in capsys.readouterr().err


def _read_terminal(fd: int, sink: list[str]) -> None:
    """Collect what the process writes to the pseudo-terminal ``fd`` until it exits (EIO), then close it."""
    try:
        while chunk := os.read(fd, 4096):
            sink.append(chunk.decode(errors="replace"))
    except OSError:
        pass
    finally:
        os.close(fd)


def test_kill_9_mid_epoch_then_resume(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``kill -9`` in epoch 2 of 3 (after epoch 1's last.pt), then ``--resume``: the same final weights and
    metrics as a run that was never interrupted."""
    out = tmp_path / "killed"
    args = _train_args(tiny_data, out, "--epochs", "3", "--batch-size", "2")  # 8 steps an epoch
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    # stderr on a pseudo-terminal: the progress bar is drawn (off a terminal there is none) and shows the step
    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a 0-column one draws nothing
    proc = subprocess.Popen([sys.executable, "-m", "nlkd", *args], stdout=subprocess.DEVNULL, stderr=terminal, env=env)
    os.close(terminal)
    err: list[str] = []
    reader = threading.Thread(target=_read_terminal, args=(master, err), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 900  # a safety net only: a loaded machine may take minutes
        in_epoch_2 = False
        while time.monotonic() < deadline and proc.poll() is None:
            text = "".join(err)
            # tqdm redraws the bar after every step: a 'loss=' after 'epoch 2/3' means epoch 2 has begun.
            _, started, epoch_2 = text.rpartition("epoch 2/3")
            if started and "loss=" in epoch_2 and (out / "last.pt").is_file():
                in_epoch_2 = True
                break
            time.sleep(0.01)
        assert proc.poll() is None, "training finished or failed before it could be killed:\n" + "".join(err)
        assert in_epoch_2, "epoch 2 did not begin within 15 minutes:\n" + "".join(err)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    reader.join(5)
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(out / "last.pt")["epoch"] == 0  # killed in epoch 2: epoch 1 is the last saved
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1

    assert main([*args, "--resume"]) == 0
    assert f"resuming {out} after epoch 1/3" in capsys.readouterr().out

    ref = tmp_path / "uninterrupted"
    assert main(_train_args(tiny_data, ref, "--epochs", "3", "--batch-size", "2")) == 0
    assert_same_checkpoint(ref / "last.pt", out / "last.pt")
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


# ----------------------------------------------------------------------------- teacher-score cache


def nlkd_config(data: Path, out: Path, teacher: Path, **changes: Any) -> TrainConfig:
    return tiny_config(
        data,
        out,
        **{
            "data.labels": "train_coarse",
            "strategy.name": "nlkd",
            **SMALL,
            "strategy.teacher": str(teacher),
            **changes,
        },
    )


def test_stale_teacher_cache_is_recomputed(tiny_data: Path, teachers: tuple[Path, Path], tmp_path: Path) -> None:
    t1, t2 = teachers
    logs: dict[str, list[str]] = {name: [] for name in ("a", "b", "c")}
    train(nlkd_config(tiny_data, tmp_path / "a", t1), log=logs["a"].append)
    cache_a = tmp_path / "a" / "teacher_scores.csv"
    assert f"teacher scores: computed for 16 images -> {cache_a}" in logs["a"]

    # Same cache, another teacher: reported stale and recomputed.
    (tmp_path / "b").mkdir()
    shutil.copy(cache_a, tmp_path / "b" / "teacher_scores.csv")
    train(nlkd_config(tiny_data, tmp_path / "b", t2), log=logs["b"].append)
    cache_b = tmp_path / "b" / "teacher_scores.csv"
    assert (f"teacher scores: cache {cache_b} is stale (teacher, labels, size or metric changed); recomputing") in logs[
        "b"
    ]
    assert any(m.startswith("teacher scores: computed") for m in logs["b"])
    assert read_scores_csv(cache_a) != read_scores_csv(cache_b)
    assert cache_a.read_text().splitlines()[0] != cache_b.read_text().splitlines()[0]  # the key line

    # Same cache, same teacher and setting: reused as is.
    (tmp_path / "c").mkdir()
    shutil.copy(cache_a, tmp_path / "c" / "teacher_scores.csv")
    before = (tmp_path / "c" / "teacher_scores.csv").read_bytes()
    train(nlkd_config(tiny_data, tmp_path / "c", t1), log=logs["c"].append)
    assert f"teacher scores: reusing {tmp_path / 'c' / 'teacher_scores.csv'}" in logs["c"]
    assert [m for m in logs["c"] if m.startswith("teacher scores:")] == [
        f"teacher scores: reusing {tmp_path / 'c' / 'teacher_scores.csv'}"
    ]
    assert (tmp_path / "c" / "teacher_scores.csv").read_bytes() == before


def _dataset(root: Path, labels: str = "train_coarse", size: tuple[int, int] = (32, 48), train: bool = False):
    info = load_dataset_info(root)
    return FolderDataset(root, "train", labels, info=info, size=size, train=train, seed=0)


def test_cache_key_covers_what_the_scores_depend_on(
    tiny_data: Path, teachers: tuple[Path, Path], tmp_path: Path
) -> None:
    t1, t2 = teachers
    ds = _dataset(tiny_data)
    key = cache_key(t1, ds, "bfmiou", 2.0)
    assert cache_key(t1, _dataset(tiny_data), "bfmiou", 2.0) == key  # deterministic
    assert cache_key(t2, ds, "bfmiou", 2.0) != key
    assert cache_key(t1, _dataset(tiny_data, labels="train"), "bfmiou", 2.0) != key
    assert cache_key(t1, _dataset(tiny_data, size=(16, 24)), "bfmiou", 2.0) != key
    assert cache_key(t1, ds, "bf", 2.0) != key
    assert cache_key(t1, ds, "bfmiou", 3.0) != key
    # An edited annotation file (new size / mtime) makes the key change too.
    copy = tmp_path / "copy"
    shutil.copytree(tiny_data, copy)
    key_copy = cache_key(t1, _dataset(copy), "bfmiou", 2.0)
    mask = next((copy / "labels" / "train_coarse").glob("*.png"))
    os.utime(mask, ns=(mask.stat().st_atime_ns, mask.stat().st_mtime_ns + 10**9))
    assert cache_key(t1, _dataset(copy), "bfmiou", 2.0) != key_copy


def test_teacher_scores_ignore_training_augmentation(
    tiny_data: Path, teachers: tuple[Path, Path], tmp_path: Path
) -> None:
    """Scores judge the annotation as it is on disk, not a randomly flipped copy."""
    from nlkd.checkpoint import model_from_checkpoint

    model, _, _ = model_from_checkpoint(teachers[0])
    plain = score_dataset(model, _dataset(tiny_data))
    augmented = _dataset(tiny_data, train=True)
    assert augmented.train  # the training set itself keeps augmenting
    cached = teacher_scores(
        augmented,
        teacher=str(teachers[0]),
        scores_csv=None,
        metric="bfmiou",
        tolerance=2.0,
        cache_dir=tmp_path,
        device=torch.device("cpu"),
        log=quiet,
    )
    assert augmented.train
    torch.testing.assert_close(cached, torch.from_numpy(plain.bfmiou).float())


def test_missing_teacher_is_a_data_error(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _train_args(
        tiny_data, tmp_path / "x", "--epochs", "1", "--strategy", "nlkd", "--teacher", str(tmp_path / "nope.pt")
    )
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"nlkd train: error: {tmp_path / 'nope.pt'}: teacher checkpoint not found"
    ]


def test_resume_accepts_a_checkpoint_from_before_a_config_key_existed(tmp_path: Path) -> None:
    """A key added to the config later (here strategy.disagree_rule) counts as its default on resume."""
    from nlkd.config import TrainConfig, config_to_dict
    from nlkd.errors import NLKDError
    from nlkd.train import _check_resume_config

    cfg = TrainConfig()
    old = config_to_dict(cfg)
    del old["strategy"]["disagree_rule"]
    _check_resume_config({"config": old}, cfg, tmp_path / "last.pt")  # no error
    old["strategy"]["metric"] = "bf"
    with pytest.raises(NLKDError, match=r"strategy.metric: 'bf' -> 'bfmiou'"):
        _check_resume_config({"config": old}, cfg, tmp_path / "last.pt")
