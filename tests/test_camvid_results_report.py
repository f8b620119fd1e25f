"""``benchmarks/camvid_results.py``'s report, the part that prints what RESULTS.md quotes (the table, the
teacher's weights of corrupted vs clean masks with their AUROC, the student's weight ratio per epoch), run
on hand-made run folders: the trainings themselves need CamVid and hours (``--help`` runs in test_scripts)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def camvid_results():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import camvid_results

        yield camvid_results
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def _run(folder: Path, records: list[dict]) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_report_prints_the_numbers_results_quotes(camvid_results, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    runs, data = tmp_path / "runs", tmp_path / "data"
    manifest = data / "labels" / "train_de50" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"corrupted": ["a", "b"]}))
    for seed, (m_base, m_nlkd) in enumerate([(0.40, 0.42), (0.44, 0.43)]):
        _run(runs / f"baseline_s{seed}", [{"epoch": 2, "val_miou": m_base, "val_bf": m_base / 2}])
        _run(runs / f"reweight_s{seed}", [{"epoch": 2, "val_miou": 0.5, "val_bf": 0.25}])
        (runs / f"reweight_s{seed}" / "teacher_scores.csv").write_text(
            "# key=x\nid,quality,bf,iou\na,0.2,0,0\nb,0.5,0,0\nc,0.4,0,0\nd,0.8,0,0\n"
        )
        nlkd = [{"epoch": 1, "val_miou": 0.1, "val_bf": 0.1, "w_teacher": 0.5}]  # warm-up: no student weight
        nlkd.append({"epoch": 2, "val_miou": m_nlkd, "val_bf": 0.2, "w_student_coarse": 0.3, "w_student_clean": 0.4})
        _run(runs / f"nlkd_s{seed}", nlkd)
    _run(runs / "clean_s0", [{"epoch": 1, "val_miou": 0.9, "val_bf": 0.9}])  # unfinished (1 of 2 epochs): left out
    args = argparse.Namespace(seeds=[0, 1], epochs=2, work=tmp_path)
    camvid_results.report(args, runs, data, ["clean", "baseline", "reweight", "nlkd"])
    out = capsys.readouterr().out
    assert "| clean |" not in out
    assert "| baseline | 42.00 ± 2.83 | 21.00 ± 1.41 | 2 |" in out  # mean ± sample std of the last epoch, percent
    assert "| nlkd | 42.50 ± 0.71 | 20.00 ± 0.00 | 2 |" in out
    # corrupted a, b: mean 0.35; clean c, d: 0.6; AUROC = P(corrupted < clean) = 3 of 4 pairs
    assert "seed 0: teacher weight corrupted 0.350 vs clean 0.600, detection AUROC 0.750" in out
    assert "nlkd seed 1: student weight corrupted / clean 0.75–0.75 over 1 epochs (λ > 0)" in out
    assert (tmp_path / "teacher_weights.png").is_file()
