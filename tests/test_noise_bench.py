"""`nlkd reproduce noise-bench`: the plan, the best rows, the report, and the whole harness end to end
on a tiny synthetic set (2 epochs, 2 rows, 2 seeds; killed and resumed; --report-only; --adopt); the
archive of finished runs (--archive) on run folders made by hand, without training."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from conftest import SMALL_ENCODER
from nlkd.cli import main
from nlkd.config import TrainConfig, config_to_dict
from nlkd.errors import DataError
from nlkd.reproduce.bench_figures import gain_axis_limits, mean_curve
from nlkd.reproduce.bench_plan import BENCH, BenchRow, NoiseKind, bench_plan, load_bench_setting, rows_of_kind
from nlkd.reproduce.bench_runner import PID_FILE, adopt_key
from nlkd.reproduce.bench_scores import RunData, best_rows, collect_runs
from nlkd.reproduce.bench_table import DECIDING, KindTable

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
    assert by["band_ignore-de50"].teacher == "baseline-de50" and by["band_ignore-all-de50"].teacher is None
    assert by["band_ignore-side-de50"].teacher == "baseline-de50"  # teacher maps and scores
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
    assert (out / f"{BENCH}-curves.png").stat().st_size > 0
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


# ----------------------------------------------------------------------------- the archive (--archive)

METRIC_KEYS = ("val_miou", "val_bf_1", "val_bf_2", "val_miou_band", "val_miou_interior")
POSTHOC_KEYS = ("miou", "bf_1", "bf_2", "miou_band", "miou_interior")


def _fake_run(
    folder: Path,
    level: float,
    epochs: int = 2,
    *,
    posthoc: bool = False,
    last_pt: bool = True,
    logged: dict[str, list[float]] | None = None,
) -> None:
    """A run folder as ``nlkd train`` leaves it, without training: ``epochs`` records of made-up metrics
    (``level`` + a per-key offset; ``logged``: further keys, one value per epoch), config, logs and a
    stand-in ``last.pt``; with ``posthoc`` the records lack band mIoU (so every run is scored post-hoc)
    and ``posthoc_eval.json`` caches it, stamped with ``last.pt``'s size and mtime as :func:`posthoc_eval` does."""
    folder.mkdir(parents=True)
    records = [{k: level + 0.01 * (i + e) for i, k in enumerate(METRIC_KEYS)} for e in range(1, epochs + 1)]
    for key, values in (logged or {}).items():
        for r, v in zip(records, values, strict=True):
            r[key] = v
    records = [{"epoch": e, **r} for e, r in enumerate(records, start=1)]
    for r in records if posthoc else []:
        del r["val_miou_band"]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "config.yaml").write_text(f"epochs: {epochs}\neval_tolerance: 2.0\nseed: {folder.name[4:]}\n")
    (folder / "train.log").write_text("epoch 1 ...\n")
    (folder / "output.log").write_text("$ nlkd train ...\n")
    if last_pt:
        (folder / "last.pt").write_bytes(b"not a checkpoint, never loaded" * 100)
    if posthoc and last_pt:
        ckpt = folder / "last.pt"
        result = {k: level + 0.005 * i for i, k in enumerate(POSTHOC_KEYS)}
        stamp = [ckpt.stat().st_size, ckpt.stat().st_mtime_ns]
        (folder / "posthoc_eval.json").write_text(json.dumps({"last_pt": stamp, "result": result}) + "\n")


def _fake_bench(out: Path, *, posthoc: bool = False) -> dict[tuple[str, int], Path]:
    """Finished runs of clean, baseline-de50 and nlkd-de50 at seeds 0 and 1 under ``out/noise-bench``."""
    runs = {}
    for i, slug in enumerate(("baseline-de50", "nlkd-de50", "clean")):
        for seed in (0, 1):
            runs[(slug, seed)] = out / BENCH / slug / f"seed{seed}"
            _fake_run(runs[(slug, seed)], 0.40 + 0.03 * i + 0.02 * seed, posthoc=posthoc)
    return runs


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_archive_keeps_the_small_files_of_finished_runs_only(
    bench_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, archive = tmp_path / "out", tmp_path / "results" / "noise-bench"
    runs = _fake_bench(out)
    student = runs[("nlkd-de50", 0)]
    (student / "teacher_scores.csv").write_text("# key=k\nid,quality,bf,iou\na,0.500000,0.400000,0.600000\n")
    (student / "teacher_prob.npy").write_bytes(bytes(1000))  # the teacher's probability maps: too big to keep
    _fake_run(out / BENCH / "relax-de50" / "seed0", 0.5, epochs=1)  # stopped after epoch 1 of 2
    _fake_run(out / BENCH / "relax-de50" / "seed1", 0.5, last_pt=False)  # last epoch logged, no last.pt yet
    argv = _argv(bench_data, out, "--seeds", "0", "1", "--report-only", "--archive", str(archive))
    assert main(argv) == 0
    assert "== archive" in capsys.readouterr().out
    assert sorted(p.relative_to(archive) for p in archive.glob("*/*")) == sorted(
        Path(slug, f"seed{seed}") for slug, seed in runs
    )  # the unfinished relax runs are not archived
    for (slug, seed), run in runs.items():
        kept = _files(archive / slug / f"seed{seed}")
        scores = {"teacher_scores.csv"} if run == student else set()  # a teacher's scores of its student's images
        assert set(kept) == {"metrics.jsonl", "config.yaml", *scores}  # no checkpoint, no logs, no posthoc here
        assert kept == {name: (run / name).read_bytes() for name in kept}
    stamps = {p: p.stat().st_mtime_ns for p in archive.rglob("*")}
    assert main(argv) == 0  # identical copies are left alone
    assert "0 runs added, 0 replaced, 6 unchanged" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in archive.rglob("*")} == stamps


@pytest.mark.parametrize("posthoc", [False, True], ids=["last-k", "posthoc"])
def test_report_from_the_archive_alone_equals_the_report_from_the_runs(
    bench_data: Path, tmp_path: Path, posthoc: bool
) -> None:
    out, archive = tmp_path / "out", tmp_path / "results" / "noise-bench"
    _fake_bench(out, posthoc=posthoc)
    argv = _argv(bench_data, out, "--seeds", "0", "1", "--report-only", "--archive", str(archive))
    assert main(argv) == 0
    md = out / f"{BENCH}.md"
    text = md.read_text()
    assert "| clean labels | 2/2 |" in text and "| NLKD (paper) | 2/2 |" in text
    assert "| label relaxation |" not in text  # a row with no finished run is named once, under its table
    idle = next(line for line in text.splitlines() if line.startswith("Not run yet: "))
    assert "label relaxation" in idle and "NLKD (paper)" not in idle and "baseline" not in idle
    assert ("post-hoc evaluation of last.pt" in text) == posthoc
    if posthoc:
        assert all(set(_files(p)) == {"metrics.jsonl", "config.yaml", "posthoc_eval.json"} for p in archive.glob("*/*"))
    shutil.rmtree(out / BENCH)  # the machine was reset: only the archive is left
    md.unlink()
    assert main(argv) == 0  # no last.pt anywhere: the archived post-hoc results are used as they are
    assert md.read_text() == text
    assert not (out / BENCH).exists() or not any((out / BENCH).rglob("*"))  # nothing is written back into OUT


def test_gap_closed_of_a_row_counts_only_the_seeds_it_has(bench_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for slug, levels in {"baseline-de50": (0.40, 0.40), "clean": (0.44, 0.50), "oracle_pixel-de50": (0.42,)}.items():
        for seed, level in enumerate(levels):
            _fake_run(out / BENCH / slug / f"seed{seed}", level)
    assert main(_argv(bench_data, out, "--seeds", "0", "1", "--report-only")) == 0
    text = (out / f"{BENCH}.md").read_text()
    oracle = next(line for line in text.splitlines() if line.startswith("| oracle, pixel level | 1/2 |"))
    assert "| 50 % / 50 % |" in oracle  # its gain 2 of seed 0's gap 4; the 2-seed mean gap (7) would say 29 %


def test_report_lists_each_rows_paired_difference_seed_by_seed(bench_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    levels = {
        "baseline-de50": (0.40, 0.45),
        "clean": (0.44, 0.50),
        "oracle_pixel-de50": (0.42,),
        "nlkd-de50": (0.39, 0.46),
    }
    for slug, per_seed in levels.items():
        for seed, level in enumerate(per_seed):
            _fake_run(out / BENCH / slug / f"seed{seed}", level)
    assert main(_argv(bench_data, out, "--seeds", "0", "1", "--report-only")) == 0
    lines = (out / f"{BENCH}.md").read_text().splitlines()
    start = lines.index("Δ to the baseline of the same seed, per seed (mIoU / BF θ=2):")
    table = lines[start + 2 : start + 7]
    assert table[0] == "| method | seed 0 | seed 1 |"
    assert "| clean labels | +4.00 / +4.00 | +5.00 / +5.00 |" in table  # the gap of each seed
    assert "| oracle, pixel level | +2.00 / +2.00 | — |" in table  # a seed it has not run yet
    assert "| NLKD (paper) | -1.00 / -1.00 | +1.00 / +1.00 |" in table
    assert not any(row.startswith("| baseline") for row in table)


def test_a_row_named_on_another_kind_runs_there_before_the_first_table_is_complete(
    bench_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    _fake_bench(out)  # the first kind's table is far from complete: no best rows yet
    named = "reweight-rank-late-markov50"
    assert main(_argv(bench_data, out, "--seeds", "0", "--cells", named, "--dry-run")) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("-- ")]
    assert [line.split()[1] for line in printed] == ["baseline-markov50", named]  # its teacher first
    assert main(_argv(bench_data, out, "--seeds", "0", "--cells", "reweight-rank-late-*", "--dry-run")) == 0
    assert named not in capsys.readouterr().out  # a pattern picks only planned cells, as before
    assert main(_argv(bench_data, out, "--seeds", "0", "--cells", "reweight-rank-late-polygon50", "--dry-run")) == 2
    [line] = capsys.readouterr().err.strip().splitlines()  # a misspelt kind: the error says how to name one
    assert "matches no cell of noise-bench" in line and "ROW-KIND, with KIND one of poly50, markov50" in line
    for seed in (0, 1):
        _fake_run(out / BENCH / "baseline-markov50" / f"seed{seed}", 0.40 + 0.02 * seed)
    _fake_run(out / BENCH / named / "seed0", 0.43)
    assert main(_argv(bench_data, out, "--seeds", "0", "1", "--report-only")) == 0  # no --cells: the run counts
    markov = (out / f"{BENCH}.md").read_text().split("### Markov boundary noise 50 %")[1].split("\n### ")[0]
    assert "| reweight (rank), second half only | 1/2 |" in markov and "| +3.00 (1 seed) |" in markov
    assert "| reweight (raw) |" not in markov  # a first-kind row without a run there stays off


def _decision(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index("### The decision")
    return lines[start : next(i for i in range(start + 1, len(lines)) if lines[i].startswith("### "))]


def test_decision_recommends_plain_ce_until_a_usable_row_beats_it_on_every_kind(
    bench_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    base = (0.40, 0.45, 0.42)
    gains = {"baseline-de50": 0.0, "clean": 0.04, "oracle_pixel-de50": 0.035, "nlkd-de50": 0.025}
    for slug, gain in gains.items():
        for seed, level in enumerate(base):
            _fake_run(out / BENCH / slug / f"seed{seed}", level + gain + (0.005 * seed if slug == "nlkd-de50" else 0))
    assert main(_argv(bench_data, out, "--seeds", "0", "1", "2", "--report-only")) == 0
    block = _decision((out / f"{BENCH}.md").read_text())
    assert block[2] == (
        "**Run plain CE**: no strategy that needs only your labels beats it on every noise kind yet. Beats it on "
        "some kinds only, so far: NLKD (paper) (beats on dilate/erode 50 %; not run on polygon-coarse 50 %, "
        "Markov boundary noise 50 %)."
    )  # the oracle beats it too, but is not usable
    assert "nlkd train --data ROOT --labels LABELS --strategy baseline" in block
    rows = [line for line in block if line.startswith("| ") and not line.startswith("| method")]
    assert rows[0].startswith("| oracle, pixel level | no (oracle")  # sorted by mean gain: 3.5 > 3
    assert rows[1] == "| NLKD (paper) | yes | +3.00 / +3.00 (3 seeds): beats | not run | not run | 75 % / 75 % |"
    assert block[-2].endswith("not met (no usable strategy beats plain CE on every kind).")  # 2 kinds not run
    short = "Seeds still short (5 for plain CE and NLKD; 3 for the rest): baseline (plain CE) 3/5; NLKD (paper) 3/5."
    assert short in (out / f"{BENCH}.md").read_text().splitlines()
    # diffs: clean 4, 4, 4; oracle 3.5 x3; NLKD 2.5, 3, 3.5 (std 0.5) -> pooled sqrt(2 · 0.25 / 6) = 0.2887,
    # t(0.975, 2) · 0.2887 / sqrt(3) = 0.7171; half the gap (2.00) is resolved from 3 seeds on
    resolution = (
        "Resolution: a row's paired difference to plain CE varies from seed to seed by 0.29 mIoU / 0.29 BF θ=2 "
        "(pooled std over the rows with ≥ 3 paired seeds, 6 degrees of freedom), so a 95 % interval over 3 seeds "
        "is ±0.72 / ±0.72: a smaller mean gain cannot be told from 0. The interval is narrower than half the gap "
        "(2.00 / 2.00) from 3 / 3 seeds on; a row that closes half the gap then clears 0 about half the time."
    )
    assert resolution in (out / f"{BENCH}.md").read_text().splitlines()

    for key in ("poly50", "markov50"):  # the same gain on the other two kinds: now it wins
        for slug, gain in (("baseline", 0.0), ("nlkd", 0.025)):
            for seed, level in enumerate(base):
                _fake_run(out / BENCH / f"{slug}-{key}" / f"seed{seed}", level + gain + 0.005 * seed * (slug == "nlkd"))
    assert main(_argv(bench_data, out, "--seeds", "0", "1", "2", "--report-only")) == 0
    block = _decision((out / f"{BENCH}.md").read_text())
    assert block[2] == "**Run NLKD (paper)**: it beats plain CE on every noise kind."
    assert "nlkd train --data ROOT --labels LABELS --strategy nlkd --teacher BASELINE_RUN/last.pt" in block
    assert block[-2].endswith("met, stretch too (it closes 75 % / 75 %).")


def test_gain_axis_leaves_out_two_seed_intervals_and_the_gaps_interval() -> None:
    kind = NoiseKind("de50", "dilate/erode 50 %", "train_de50", "dilate_erode", 0.5)
    rows = [
        BenchRow("clean", "clean", clean=True),
        BenchRow("baseline", "plain CE"),
        BenchRow("a", "A"),
        BenchRow("b", "B"),
    ]
    base = {0: 0.40, 1: 0.45, 2: 0.42}
    per_seed = {  # mIoU and BF θ=2 alike
        "clean": {0: 0.50, 1: 0.47, 2: 0.45},  # gap mean 5 points, its interval wider
        "baseline": base,
        "a": {0: 0.30, 1: 0.55},  # two seeds: -10, +10 -> interval about ±127 points
        "b": {0: 0.41, 1: 0.47, 2: 0.42},  # three seeds: +1, +2, 0 -> interval [-1.48, +3.48]
    }
    scores = {slug: {label: v for label in DECIDING} for slug, v in per_seed.items()}
    t = KindTable(kind, rows, {r.slug: r.slug for r in rows}, {}, scores, {})
    lo, hi = gain_axis_limits(t, rows[2:], pad=1.0)
    assert lo == pytest.approx(-1.0 - 1.4843, abs=1e-3) and hi == pytest.approx(5.0 + 1.0)


def test_seed_shortfall_needs_five_seeds_of_the_key_rows_and_three_of_the_rest(tmp_path: Path) -> None:
    kind = NoiseKind("de50", "dilate/erode 50 %", "train_de50", "dilate_erode", 0.5)
    rows = [
        BenchRow("clean", "clean", clean=True),
        BenchRow("baseline", "plain CE"),
        BenchRow("oracle", "O"),  # not a candidate: never a key row, however large its gain
        BenchRow("nlkd", "NLKD", candidate=True),
        BenchRow("a", "A", candidate=True),
        BenchRow("b", "B", candidate=True),
        BenchRow("c", "C", candidate=True),
        BenchRow("d", "D", candidate=True),  # no run yet
    ]
    gain = {"clean": 0.05, "baseline": 0.0, "oracle": 0.04, "nlkd": -0.01, "a": 0.01, "b": 0.03, "c": 0.02}
    seeds = {"clean": 5, "baseline": 5, "oracle": 2, "nlkd": 4, "a": 3, "b": 5, "c": 3}
    scores = {s: {label: {k: 0.4 + g for k in range(seeds[s])} for label in DECIDING} for s, g in gain.items()}
    runs = {s: [RunData(k, tmp_path, []) for k in range(n)] for s, n in seeds.items()}
    t = KindTable(kind, rows, {r.slug: r.slug for r in rows}, runs, scores, {})
    assert [r.slug for r in t.key_rows()] == ["baseline", "nlkd", "b", "c"]  # the two best usable rows: +3, +2
    short = [(r.slug, have, need) for r, have, need in t.seed_shortfall()]
    assert short == [("oracle", 2, 3), ("nlkd", 4, 5), ("c", 3, 5), ("d", 0, 3)]  # a: 3 of 3, not a key row
    assert [r.slug for r, _, _ in t.seed_shortfall(skip=["d", "oracle"])] == ["nlkd", "c"]


def test_mean_curve_averages_each_epoch_over_the_runs_that_logged_it(tmp_path: Path) -> None:
    a = RunData(0, tmp_path, [{"val_miou": 0.2}, {"val_miou": 0.4}, {"val_miou": 0.5}])
    b = RunData(1, tmp_path, [{"val_miou": 0.4}, {}, {"val_miou": 0.7}])
    c = RunData(2, tmp_path, [{"val_miou": 0.6}, {"val_miou": None}, {"val_miou": 0.9}, {"val_miou": 1.0}])
    assert mean_curve([a, b, c], "val_miou") == pytest.approx([0.4, 0.4, 0.7])  # up to the shortest run
    assert math.isnan(mean_curve([b], "val_miou")[1]) and mean_curve([], "val_miou") == []


def test_weight_auroc_column_is_blank_for_rows_that_weigh_every_image_alike(bench_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    alike = {"weight_auroc": [0.5, 0.5], "loss_share_corrupted_pixels": [0.07, 0.07]}
    logged = {
        "baseline-de50": alike,
        "oracle_pixel-de50": {"weight_auroc": [0.5, 0.5], "loss_share_corrupted_pixels": [0.0, 0.0]},
        "nlkd-de50": {"weight_auroc": [0.9, 0.92], "loss_share_corrupted_pixels": [0.06, 0.06]},
        "reweight-de50": {"weight_auroc": [0.5, 0.6], "loss_share_corrupted_pixels": [0.05, 0.05]},
    }
    for slug, keys in logged.items():
        _fake_run(out / BENCH / slug / "seed0", 0.4, logged=keys)
    assert main(_argv(bench_data, out, "--seeds", "0", "--report-only")) == 0
    lines = (out / f"{BENCH}.md").read_text().splitlines()
    rows = {line.split(" | ")[0]: line for line in lines if " | 1/1 | " in line}  # the dilate/erode table
    assert rows["| baseline (plain CE)"].endswith("| — | 7.00 |")  # equal weights: no detector to score
    assert rows["| oracle, pixel level"].endswith("| — | 0.00 |")
    assert rows["| NLKD (paper)"].endswith("| 91.00 | 6.00 |")
    assert rows["| reweight (raw)"].endswith("| 55.00 | 5.00 |")  # one epoch at ½ is not equal weights


def test_archived_runs_fill_missing_seeds_and_use_their_cached_posthoc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nlkd.checkpoint

    out, archive = tmp_path / "out", tmp_path / "archive"
    _fake_run(out / "baseline-de50" / "seed0", 0.40, posthoc=True)
    _fake_run(archive / "baseline-de50" / "seed0", 0.70, posthoc=True)  # OUT's finished run wins
    _fake_run(archive / "baseline-de50" / "seed1", 0.50, posthoc=True)
    _fake_run(archive / "baseline-de50" / "seed2", 0.60, epochs=1)  # archived before its last epoch: not counted
    (archive / "baseline-de50" / "seed1" / "last.pt").unlink()  # an archive holds no checkpoint
    runs = collect_runs(out, ["baseline-de50"], 2, archive)["baseline-de50"]
    assert [(r.seed, r.archived) for r in runs] == [(0, False), (1, True)]
    assert runs[0].records[-1]["val_miou"] == pytest.approx(0.42)
    assert collect_runs(out, ["baseline-de50"], 2)["baseline-de50"] == runs[:1]  # without an archive: as before
    assert runs[1].posthoc() == pytest.approx({k: 0.50 + 0.005 * i for i, k in enumerate(POSTHOC_KEYS)})

    class Evaluated(Exception):
        pass

    def evaluate_checkpoint(*args: object, **kwargs: object) -> None:
        raise Evaluated

    monkeypatch.setattr(nlkd.checkpoint, "model_from_checkpoint", evaluate_checkpoint)
    assert runs[0].posthoc()["miou"] == pytest.approx(0.40)  # a run folder's cache matches its last.pt
    os.utime(runs[0].folder / "last.pt", ns=(1, 1))  # a new last.pt: its cache is stale, evaluated again
    with pytest.raises(Evaluated):
        runs[0].posthoc()
    (runs[1].folder / "posthoc_eval.json").unlink()
    with pytest.raises(DataError, match=r"archived run without posthoc_eval\.json"):
        runs[1].posthoc()


def test_archive_replaces_a_differing_copy_only_from_a_finished_run(
    bench_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, archive = tmp_path / "out", tmp_path / "archive"
    runs = _fake_bench(out)
    stale = archive / "clean" / "seed0"
    _fake_run(stale, 0.99, last_pt=False)  # an older run of the same cell: other metrics, a stale post-hoc result
    (stale / "posthoc_eval.json").write_text('{"last_pt": [1, 1], "result": {"miou": 0.99}}\n')
    _fake_run(out / BENCH / "relax-de50" / "seed0", 0.5, epochs=1)  # unfinished in OUT ...
    _fake_run(archive / "relax-de50" / "seed0", 0.6, last_pt=False)  # ... but finished in the archive
    kept = _files(archive / "relax-de50" / "seed0")
    assert main(_argv(bench_data, out, "--seeds", "0", "1", "--report-only", "--archive", str(archive))) == 0
    printed = capsys.readouterr().out
    assert [ln for ln in printed.splitlines() if "differed" in ln] == [
        f"== archive: clean seed0 differed from {stale}; replaced by the finished run {runs[('clean', 0)]}"
    ]
    assert "5 runs added, 1 replaced, 0 unchanged" in printed
    small = ("metrics.jsonl", "config.yaml")  # OUT's run has no posthoc_eval.json: the stale one is gone
    assert _files(stale) == {name: (runs[("clean", 0)] / name).read_bytes() for name in small}
    assert _files(archive / "relax-de50" / "seed0") == kept  # an unfinished run never replaces a copy
    assert "| label relaxation | 1/2 |" in (out / f"{BENCH}.md").read_text()  # the archived seed counts


def test_archive_refuses_overlapping_folders_and_other_tables(
    bench_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    for archive in (out / BENCH, out / BENCH / "clean", tmp_path):
        assert main(_argv(bench_data, out, "--report-only", "--archive", str(archive))) == 2
        assert "must lie outside" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(_argv(bench_data, out, "--report-only", "--archive", str(tmp_path / "file"))) == 2
    assert "not a folder" in capsys.readouterr().err
    table2 = ["reproduce", "table2", "--data", str(bench_data), "--out", str(out), "--archive", str(tmp_path / "a")]
    assert main(table2) == 2
    assert "apply to noise-bench only" in capsys.readouterr().err


def test_a_late_row_continues_its_baselines_checkpoint_of_the_start_epoch(
    bench_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2 epochs, ``strategy.start: 0.5``: the baseline keeps epoch 1 and the late row continues it (the same
    run as from scratch: tests/test_late_start.py); with a finished baseline that kept nothing, from scratch."""
    out, named = tmp_path / "out", "reweight-rank-late-markov50"
    base, late = out / BENCH / "baseline-markov50" / "seed0", out / BENCH / named / "seed0"
    argv = _argv(bench_data, out, "--seeds", "0", "--cells", named)
    assert main([*argv, "--dry-run"]) == 0
    commands = [line.strip() for line in capsys.readouterr().out.splitlines() if line.startswith("   nlkd train")]
    assert "'--set=keep_epochs=[1]'" in commands[0] and "init_from" not in commands[0]
    assert f"--set=init_from={base / 'epoch1' / 'last.pt'}" in commands[1]
    assert main(argv) == 0
    assert "continuing the plain-CE run" in (late / "train.log").read_text()
    first = [json.loads(_lines(run / "metrics.jsonl")[0]) for run in (base, late)]
    assert first[0] == first[1]  # epoch 1 is the baseline's
    assert json.loads(_lines(late / "metrics.jsonl")[1])["w_teacher"] == pytest.approx(1.0)  # rank, batch mean 1

    fresh = tmp_path / "fresh"
    _fake_run(fresh / BENCH / "baseline-markov50" / "seed0", 0.40)  # finished, no epoch1/ kept
    capsys.readouterr()
    assert main(_argv(bench_data, fresh, "--seeds", "0", "--cells", named, "--dry-run")) == 0
    assert "init_from" not in capsys.readouterr().out
    # a late row without a teacher (the pixel oracle) continues the baseline's checkpoint as well
    assert main(_argv(bench_data, fresh, "--seeds", "0", "--cells", "oracle_pixel-late-de50", "--dry-run")) == 0
    printed = capsys.readouterr().out
    assert f"--set=init_from={fresh / BENCH / 'baseline-de50' / 'seed0' / 'epoch1' / 'last.pt'}" in printed


def test_report_gives_a_rows_paired_difference_to_its_control(bench_data: Path, tmp_path: Path) -> None:
    """The control row (shuffled scores) names the row it controls; the report pairs the two by seed."""
    out = tmp_path / "out"
    late, control = "reweight-rank-late-de50", "reweight-rank-late-shuffled-de50"
    levels = {"baseline-de50": (0.40, 0.45, 0.42), late: (0.42, 0.46, 0.45), control: (0.40, 0.44, 0.43)}
    for slug, per_seed in levels.items():
        for seed, level in enumerate(per_seed):
            _fake_run(out / BENCH / slug / f"seed{seed}", level)
    assert main(_argv(bench_data, out, "--seeds", "0", "1", "2", "--report-only")) == 0
    text = (out / f"{BENCH}.md").read_text()
    [line] = [x for x in text.splitlines() if "paired by seed" in x]
    # late − control per seed: +2, +2, +2 (points): an interval of width 0 above 0
    expected = "+2.00 [+2.00, +2.00] mIoU / +2.00 [+2.00, +2.00] BF θ=2: beats (mIoU, BF θ=2)."
    title = "reweight (rank), second half only"
    assert line == f"{title} − {title}, shuffled scores (control), paired by seed: {expected}"
    shutil.rmtree(out / BENCH / late)
    assert main(_argv(bench_data, out, "--seeds", "0", "1", "2", "--report-only")) == 0
    assert "paired by seed" not in (out / f"{BENCH}.md").read_text()  # no row to control: no line


def test_decision_needs_a_row_with_a_control_to_beat_its_control_too(bench_data: Path, tmp_path: Path) -> None:
    """reweight-rank-late beats plain CE on all three kinds; it is recommended only once it also beats its
    control (the same weights shuffled across images) on dilate/erode."""
    out, late, control = tmp_path / "out", "reweight-rank-late", "reweight-rank-late-shuffled-de50"
    base, steady = (0.40, 0.45, 0.42), (0.0, 0.002, 0.004)  # the row: +2.0, +2.2, +2.4 points over plain CE
    for key in ("de50", "poly50", "markov50"):
        for seed, level in enumerate(base):
            _fake_run(out / BENCH / f"baseline-{key}" / f"seed{seed}", level)
            _fake_run(out / BENCH / f"{late}-{key}" / f"seed{seed}", level + 0.02 + steady[seed])
    argv = _argv(bench_data, out, "--seeds", "0", "1", "2", "--report-only")

    def first_line() -> str:
        assert main(argv) == 0
        return _decision((out / f"{BENCH}.md").read_text())[2]

    assert (
        first_line().startswith("**Run plain CE**")
        and "against its control on dilate/erode 50 %: control not run" in first_line()
    )
    for seed, level in enumerate(base):  # a control as good as the row: the weights' information does nothing
        _fake_run(out / BENCH / control / f"seed{seed}", level + 0.02 + steady[2 - seed])
    assert "against its control on dilate/erode 50 %: no measurable difference)." in first_line()
    shutil.rmtree(out / BENCH / control)
    for seed, level in enumerate(base):  # a control no better than plain CE
        _fake_run(out / BENCH / control / f"seed{seed}", level + steady[2 - seed] / 2)
    assert first_line() == "**Run reweight (rank), second half only**: it beats plain CE on every noise kind."


def test_a_late_row_waits_on_a_baseline_trained_elsewhere_only_if_it_keeps_the_checkpoint(
    bench_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A baseline another process is training keeps the start epoch's checkpoint only if it was started so
    (its config.yaml); otherwise its late row trains from scratch rather than wait for a file never written."""
    out, named = tmp_path / "out", "reweight-rank-late-markov50"
    base = out / BENCH / "baseline-markov50" / "seed0"
    base.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "nlkd"])  # "nlkd" in its cmdline
    try:
        (base / PID_FILE).write_text(str(other.pid))
        argv = _argv(bench_data, out, "--seeds", "0", "--cells", named, "--dry-run")
        for keep, continues in (([], False), ([1], True)):
            (base / "config.yaml").write_text(yaml.safe_dump(config_to_dict(TrainConfig(keep_epochs=keep))))
            capsys.readouterr()
            assert main(argv) == 0
            printed = capsys.readouterr().out
            assert f"running (pid {other.pid})" in printed
            assert ("--set=init_from=" in printed) is continues, keep
    finally:
        other.kill()
        other.wait()
