"""The demo and every script in benchmarks/ run: ``nlkd demo --quick``, each ``bench_*.py --quick``, the
other scripts' ``--help``. The printed numbers are checked where the test can recompute them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nlkd.cli import main
from nlkd.models import list_models
from nlkd.noise import load_manifest
from nlkd.teacher import read_scores_csv

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py"))
#: every bench_*.py has --quick; the ones without a test of their own below (or elsewhere) run here
QUICK = [s for s in SCRIPTS if s.startswith("bench_")]
OWN_TEST = {"bench_audit.py", "bench_metrics.py", "bench_models.py", "bench_extras.py"}


def run_script(name: str, *args: str, timeout: float = 900) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, str(BENCH / name), *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT
    )
    assert proc.returncode == 0, f"{name} {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_every_script_is_covered() -> None:
    assert {"bench_audit.py", "bench_metrics.py", "bench_models.py", "camvid_results.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_help(name: str) -> None:
    assert run_script(name, "--help").startswith("usage:")


@pytest.mark.parametrize("name", [s for s in QUICK if s not in OWN_TEST])
def test_other_bench_quick(name: str) -> None:
    assert "|" in run_script(name, "--quick")


def _table(out: str, header_start: str) -> list[list[str]]:
    """Rows of the markdown table whose header begins with ``header_start``."""
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(header_start))
    rows = []
    for ln in lines[start + 2 :]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split("|")])
    return rows


def test_bench_metrics_quick() -> None:
    out = run_script("bench_metrics.py", "--quick", "--threads", "1")
    (speed,) = _table(out, "| batch | classes")
    assert float(speed[-1]) < 1e-9  # nlkd against the exact reference
    (values,) = _table(out, "| batch | θ")
    lo, hi = (float(v) for v in re.findall(r"[-+]\d\.\d+", values[6]))
    assert lo <= hi < 0  # nlkd's BF is lower on every image (tests/test_bf_conventions.py says why)
    assert float(values[7]) < 1e-9 and float(values[8]) < 1e-9  # IoU; BF without frame/duplicate points


def test_bench_models_quick() -> None:
    out = run_script("bench_models.py", "--quick", "--threads", "1")
    rows = _table(out, "| model |")
    assert [r[0] for r in rows] == list_models()
    for r in rows:
        assert float(r[1]) > 0 and float(r[2]) > 0 and float(r[3]) > 0


def test_bench_audit_quick() -> None:
    pytest.importorskip("cleanlab")
    out = run_script("bench_audit.py", "--quick")
    rows = _table(out, "| scorer |")
    assert [r[0] for r in rows] == [
        "BFmIoU quality (nlkd)",
        "BFmIoU, unlabelled pixels = disagreement",
        "BFmIoU × labelled share",
        "cleanlab get_label_quality_scores (softmin)",
        "mean pixel cross-entropy",
        "share of labelled pixels (no teacher)",
        "chance",
    ]
    assert rows[-1][3] == "0.500"  # 8 of the 16 synthetic training masks are corrupted
    assert re.search(r"Mean BFmIoU quality: \d\.\d{3} for the corrupted masks vs \d\.\d{3} for the clean ones", out)


def test_nlkd_demo_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The whole demo on 16 images at 32x48, one epoch per run; what it prints about the teacher's weights is
    recomputed here from the files it wrote."""
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = (out / "results.md").read_text()
    for method in ("clean", "baseline", "reweight", "nlkd"):
        assert re.search(rf"^{method} +\d+\.\d\d +\d+\.\d\d$", table, re.M), method
        assert (out / method / "last.pt").is_file()
    assert (out / "predictions.png").is_file() and (out / "teacher_weights.png").is_file()
    assert json.loads(table.split("```")[2])["nlkd"]["miou"] >= 0

    corrupted = set(load_manifest(out / "data" / "labels" / "train_coarse")["corrupted"])
    assert len(corrupted) == 8
    scores = read_scores_csv(out / "reweight" / "teacher_scores.csv")
    bad = np.array([v for k, v in scores.items() if k in corrupted])
    good = np.array([v for k, v in scores.items() if k not in corrupted])
    expected = (
        f"teacher weights (BFmIoU): corrupted mean {bad.mean():.3f}, median {np.median(bad):.3f}; "
        f"clean mean {good.mean():.3f}, median {np.median(good):.3f}, ratio of means {bad.mean() / good.mean():.2f}"
    )
    assert expected in printed and expected in table
    assert re.search(r"coarse labels: 8 of 16 training masks corrupted; per-image IoU against the clean masks", table)
    assert "reweight - baseline on mIoU:" in table and "of the clean/baseline gap" in table
    assert "beats" not in table  # one seed per method: no verdict


def test_demo_bad_epochs_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--quick", "--epochs", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nlkd demo: error: --epochs must be >= 1, got 0"]


def test_bench_step_speed_options_quick() -> None:
    out = run_script("bench_step.py", "--speed-options", "--quick", "--no-compile", "--threads", "1")
    rows = [ln for ln in out.splitlines() if ln.startswith("| step")]
    assert [r.split(" | ")[1] for r in rows] == [
        "fp32 eager (today's default)",
        "channels_last",
        "bf16 autocast",
        "bf16 + channels_last (bf16=true channels_last=true)",
    ]
    assert rows[0].endswith("| 1.00× |")  # the reference against itself


def test_noise_setting_search_gap(tmp_path: Path) -> None:
    """The printed gap is clean − baseline of the mean of each run's last epochs, per setting."""

    def run(name: str, mious: list[float], labels: str) -> None:
        folder = tmp_path / name
        folder.mkdir()
        lines = [json.dumps({"epoch": i + 1, "val_miou": m, "val_bf": m / 2}) for i, m in enumerate(mious)]
        (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        (folder / "config.yaml").write_text(f"epochs: {len(mious)}\ndata:\n  size: [12, 16]\n  labels: {labels}\n")

    run("X_clean_s0", [0.1, 0.5, 0.7], "train")  # last 2: 0.6
    run("X_clean_s1", [0.1, 0.6, 0.6], "train")  # 0.6
    run("X_base_s0", [0.1, 0.3, 0.5], "coarse")  # 0.4
    run("X_nlkd_s0", [0.2, 0.2, 0.8], "coarse")  # 0.5
    out = run_script("noise_setting_search.py", "--runs", str(tmp_path), "--last", "2")
    row = next(ln for ln in out.splitlines() if ln.startswith("| X |"))
    assert row.split(" | ")[1:] == [
        "3 epochs, 12×16",
        "coarse",
        "60.00 ± 0.00 / 30.00 ± 0.00 (0, 1)",
        "40.00 ± 0.00 / 20.00 ± 0.00 (0)",
        "20.00 / 10.00 |",
    ]
    assert "| X_nlkd_s0 | 50.00 | 25.00 | 3 |" in out


def test_noise_bench_curves_gap_by_phase_and_late_decline(tmp_path: Path) -> None:
    """The printed phase ranges are the min and max of the per-epoch mean gap over the paired seeds; the
    per-seed line is the best epoch against the last-K mean; a row is said to share with plain CE the
    leading epochs whose train loss and val mIoU are the baseline's."""

    def run(cell: str, seed: int, mious: list[float]) -> None:
        folder = tmp_path / cell / f"seed{seed}"
        folder.mkdir(parents=True)
        records = [{"epoch": i + 1, "val_miou": m, "val_bf_2": m / 2, "train_loss": 1 - m} for i, m in enumerate(mious)]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    run("clean", 0, [0.10, 0.20, 0.50, 0.60, 0.70, 0.70])
    run("clean", 1, [0.10, 0.30, 0.50, 0.50, 0.60, 0.80])
    run("baseline-de50", 0, [0.10, 0.20, 0.40, 0.50, 0.40, 0.40])  # best 0.50 at epoch 4; last 2: 0.40
    run("baseline-de50", 1, [0.20, 0.20, 0.30, 0.30, 0.40, 0.40])
    run("baseline-de50", 2, [0.20, 0.20, 0.30, 0.30, 0.40, 0.40])  # no clean run: not in the gap
    run("late-de50", 0, [0.10, 0.20, 0.40, 0.55, 0.40, 0.40])  # plain CE's epochs 1-3, then its own
    run("late-de50", 2, [0.30, 0.20, 0.30, 0.30, 0.40, 0.40])  # epoch 1 differs: nothing shared
    out = run_script("noise_bench_curves.py", "--archive", str(tmp_path), "--split", "2", "--last-k", "2")
    # mean mIoU gap per epoch over seeds 0 and 1, in points: -5, +5, +15, +15, +25, +35
    assert "mean over seeds [0, 1], 6 epochs" in out
    assert "  mIoU: epochs 1–2 -5.0 to +5.0; epochs 5–6 +25.0 to +35.0" in out
    assert "  BF θ=2: epochs 1–2 -2.5 to +2.5; epochs 5–6 +12.5 to +17.5" in out
    assert "  seed 0: best 50.00 at epoch 4, last-2 40.00, 10.00 below" in out
    assert "  seed 2: best 40.00 at epoch 5, last-2 40.00, 0.00 below" in out
    # last 2 epochs' mIoU: clean 70/70 and 60/80, 40/40 five times -> std 0, 14.14, 0, 0, 0, 0, 0
    noise = "evaluation noise: std of val mIoU over the last 2 epochs of 7 archived runs: median 0.00, largest 14.14"
    assert noise in out
    assert "  late-de50: seed 0 3, seed 2 0" in out.splitlines()
