"""`nlkd reproduce noise-bench`: the plan, the best rows, the report, and the whole harness end to end
on a tiny synthetic set (2 epochs, 2 rows, 2 seeds; killed and resumed; --report-only; --adopt)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import SMALL_ENCODER
from nlkd.cli import main
from nlkd.config import TrainConfig
from nlkd.data.synth import make_synthetic
from nlkd.reproduce.bench_plan import BENCH, bench_plan, load_bench_setting, rows_of_kind
from nlkd.reproduce.bench_runner import PID_FILE, adopt_key
from nlkd.reproduce.bench_scores import RunData, best_rows

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_plan_rows_teachers_and_unavailable() -> None:
    setting = load_bench_setting("cpu")
    plan, unavailable = bench_plan(setting, TrainConfig(), ignore_index=None)
    slugs = [c.slug for c in plan.cells]
    assert slugs.count("clean") == 1 and "baseline-de50" in slugs and "baseline-markov50" in slugs
    by = {c.slug: c for c in plan.cells}
    assert by["clean"].labels == "train" and by["baseline-poly50"].labels == "train_poly50"
    assert by["nlkd-de50"].teacher == "baseline-de50" and by["baseline-de50"].teacher is None
    assert by["band_kd-de50"].teacher == "baseline-de50"  # teacher maps (extras), not teacher scores
    assert by["nlkd_pixel-de50"].teacher == "baseline-de50" and by["relax-de50"].teacher is None
    assert by["baseline-poly50"].changes == {"data.ignore_index": 255}  # polygon labels need an ignore label
    assert "coteaching-poly50" not in slugs  # a first-kind-only row
    for slug in unavailable:  # rows of strategies this nlkd lacks are listed, not planned
        assert not any(c.slug.startswith(slug + "-") for c in plan.cells)
    assert all(s in {r.slug for r in setting.rows} for s in unavailable)
    plan2, _ = bench_plan(setting, TrainConfig(), None, {"markov50": ("coteaching",)})
    assert "coteaching-markov50" in [c.slug for c in plan2.cells]
    assert [r.slug for r in rows_of_kind(setting, setting.noise[2], ("coteaching",))][-1] == "coteaching"


def _run(seed: int, miou: float) -> RunData:
    return RunData(seed, Path("."), [{"val_miou": miou}])


def test_best_rows_waits_for_every_seed_then_ranks_paired_gains() -> None:
    setting = load_bench_setting("cpu")
    kind = setting.noise[0]
    runs = {"baseline-de50": [_run(0, 0.40), _run(1, 0.50)]}
    candidates = [r for r in rows_of_kind(setting, kind) if r.candidate and r.kinds != "all"]
    gains = {r.slug: 0.01 * i for i, r in enumerate(candidates)}
    for r in candidates:
        runs[r.slug_for(kind)] = [_run(0, 0.40 + gains[r.slug]), _run(1, 0.50 + gains[r.slug])]
    assert best_rows(setting, kind, runs, [0, 1], {}) == [candidates[-1].slug, candidates[-2].slug]
    del runs[candidates[0].slug_for(kind)][1]
    assert best_rows(setting, kind, runs, [0, 1], {}) is None  # a candidate lacks seed 1
    assert best_rows(setting, kind, runs, [0, 1], {candidates[0].slug: "not registered"}) is not None


def test_adopt_key_ignores_threads_and_the_default_encoder() -> None:
    a, b = TrainConfig(), TrainConfig()
    b.threads, b.out, b.model.encoder = 1, "elsewhere", "resnet18"
    assert adopt_key(a) == adopt_key(b)
    b.seed = 1
    assert adopt_key(a) != adopt_key(b)


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def bench_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench") / "data"
    make_synthetic(root, seed=0, n_train=8, n_val=4, n_test=2, size=(32, 48))
    return root


def _argv(data: Path, out: Path, *extra: str) -> list[str]:
    small = ["--epochs", "2", "--size", "32x48", "--set", "batch_size=4", "--set", "bf16=false"]
    small += ["--set", "channels_last=false", "--set", f"model.encoder={SMALL_ENCODER}", "--jobs", "1"]
    return ["reproduce", "noise-bench", "--data", str(data), "--out", str(out), *small, *extra]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 900.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"never happened within {timeout:.0f} s: {what}")
        time.sleep(0.2)


def test_noise_bench_end_to_end_kill_resume_report_adopt(bench_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = _argv(bench_data, out, "--seeds", "0", "1", "--cells", "clean", "baseline-de50")
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "nlkd", *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    first = out / BENCH / "clean" / "seed0"
    _wait(lambda: len(_lines(first / "metrics.jsonl")) >= 1, "the first run logs its first epoch")
    child = int((first / PID_FILE).read_text())
    os.kill(proc.pid, signal.SIGKILL)  # the benchmark dies; its child is told to end with it
    proc.wait()
    killed_at = _lines(first / "metrics.jsonl")
    _wait(lambda: not Path(f"/proc/{child}").exists() or b"nlkd" not in Path(f"/proc/{child}/cmdline").read_bytes(),
          "the orphaned nlkd train ends")  # fmt: skip

    assert main(argv) == 0  # resumes the killed run, trains the rest
    runs = {(slug, s): out / BENCH / slug / f"seed{s}" for slug in ("clean", "baseline-de50") for s in (0, 1)}
    for folder in runs.values():
        records = [json.loads(line) for line in _lines(folder / "metrics.jsonl")]
        assert [r["epoch"] for r in records] == [1, 2] and "val_miou_band" in records[-1]
        assert not (folder / PID_FILE).exists()
    if len(killed_at) == 1:  # killed mid-run: epoch 1 was kept, not retrained
        assert _lines(first / "metrics.jsonl")[0] == killed_at[0]
    logs = _lines(first / "output.log")
    assert sum(line.startswith("$ nlkd train --config") for line in logs) == 1 + (len(killed_at) == 1)

    md = out / f"{BENCH}.md"
    text = md.read_text()
    assert "| clean labels | 2/2 |" in text and "| baseline (plain CE) | 2/2 |" in text
    assert "PARTIAL" in text and "mean of the last 5 epochs" in text and (out / f"{BENCH}.png").stat().st_size > 0
    stamp = {p: p.stat().st_mtime_ns for p in runs.values()}
    md.unlink()
    assert main([*argv, "--report-only"]) == 0  # rebuilt from the runs, nothing trained
    assert md.read_text() == text and all(p.stat().st_mtime_ns == t for p, t in stamp.items())

    # A run trained elsewhere at the same config (other thread count) is linked, not trained again.
    elsewhere = tmp_path / "search" / "m_base_s0"
    cmd = ["train", "--config", "cpu", "--data", str(bench_data), "--labels", "train_markov50", "--size", "32x48"]
    cmd += ["--epochs", "2", "--batch-size", "4", "--set", "threads=2", "--encoder", SMALL_ENCODER]
    cmd += ["--out", str(elsewhere)]
    assert main(cmd) == 0
    assert (
        main(
            [
                *_argv(bench_data, out, "--seeds", "0", "--cells", "baseline-markov50"),
                "--adopt",
                str(tmp_path / "search"),
            ]
        )
        == 0
    )
    adopted = out / BENCH / "baseline-markov50" / "seed0"
    assert (adopted / "metrics.jsonl").stat().st_ino == (elsewhere / "metrics.jsonl").stat().st_ino
    assert not (adopted / "output.log").exists()  # linked, never trained here
