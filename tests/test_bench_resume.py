"""Planning the noise benchmark against its archive (``--archive``): archived runs are not trained again
unless a student needs their checkpoint, and a student of per-image teacher scores learns from an archived
``teacher_scores.csv`` instead of waiting for its teacher to train again. Run folders are made by hand."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from conftest import SMALL_ENCODER
from nlkd.cli import build_parser, main
from nlkd.config import TrainConfig, apply_overrides, config_to_dict
from nlkd.reproduce.bench import bench_setup
from nlkd.reproduce.bench_plan import BENCH, bench_plan
from nlkd.reproduce.bench_resume import archived_teacher_scores, needs_only_image_scores, plan_from_archive
from nlkd.reproduce.bench_runner import Job, plan_jobs
from nlkd.reproduce.cells import select_cells

CELLS = ("nlkd-de50", "reweight-de50", "band_kd-de50")
SCORES = "# key=abc\nid,quality,bf,iou\nimg0,0.500000,0.400000,0.600000\n"


def _argv(data: Path, out: Path, *extra: str) -> list[str]:
    small = ["--epochs", "2", "--size", "32x48", "--set", "bf16=false", "--set", f"model.encoder={SMALL_ENCODER}"]
    return ["reproduce", "noise-bench", "--data", str(data), "--out", str(out), *small, "--seeds", "0", "1", *extra]


def _jobs(bench_data: Path, out: Path) -> tuple[list[Job], Path]:
    """The benchmark's jobs of :data:`CELLS` (and their teacher) at seeds 0 and 1, and the scale's config."""
    setting, setup, seeds = bench_setup(build_parser().parse_args(_argv(bench_data, out)))
    plan, _ = bench_plan(setting, setup.base, setup.info.ignore_index)
    return plan_jobs(setup, plan, select_cells(plan, CELLS), seeds), setup.scale.config_path


def _finished(folder: Path, cfg: TrainConfig, scores: str | None = None) -> None:
    """A finished run's archived files: its config, ``cfg.epochs`` metric records, a teacher's scores."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg)))
    keys = ("val_miou", "val_bf_1", "val_bf_2", "val_miou_band", "val_miou_interior")  # what the report scores
    records = [{"epoch": e, **dict.fromkeys(keys, 0.5)} for e in range(1, cfg.epochs + 1)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if scores is not None:
        (folder / "teacher_scores.csv").write_text(scores)


def _seed0_archived(bench_data: Path, tmp_path: Path, scores: str) -> tuple[Path, Path]:
    """``(OUT, ARCHIVE)`` where the archive holds seed 0's baseline and its NLKD student with ``scores``."""
    out, archive = tmp_path / "out", tmp_path / "results" / "noise-bench"
    by = _by_key(_jobs(bench_data, out)[0])
    _finished(archive / "baseline-de50" / "seed0", by[("baseline-de50", 0)].cfg)
    _finished(archive / "nlkd-de50" / "seed0", by[("nlkd-de50", 0)].cfg, scores)
    return out, archive


def _by_key(jobs: Sequence[Job]) -> dict[tuple[str, int], Job]:
    return {(j.cell.slug, j.seed): j for j in jobs}


def test_only_image_score_strategies_can_learn_from_a_scores_file(bench_data: Path, tmp_path: Path) -> None:
    jobs, _ = _jobs(bench_data, tmp_path / "out")
    by = _by_key(jobs)
    assert needs_only_image_scores(by[("nlkd-de50", 0)].cfg) and needs_only_image_scores(by[("reweight-de50", 0)].cfg)
    assert not needs_only_image_scores(by[("band_kd-de50", 0)].cfg)  # needs the teacher's probability maps
    assert not needs_only_image_scores(by[("baseline-de50", 0)].cfg)


def test_archive_plans_what_is_missing_and_lends_teacher_scores(bench_data: Path, tmp_path: Path) -> None:
    out, archive = tmp_path / "out", tmp_path / "results" / "noise-bench"
    jobs, config_path = _jobs(bench_data, out)
    by = _by_key(jobs)
    for seed in (0, 1):  # both baselines and both NLKD students finished on an earlier machine
        _finished(archive / "baseline-de50" / f"seed{seed}", by[("baseline-de50", seed)].cfg)
        lent = SCORES.replace("0.5", f"0.{seed}")
        _finished(archive / "nlkd-de50" / f"seed{seed}", by[("nlkd-de50", seed)].cfg, lent)
    _finished(archive / "band_kd-de50" / "seed1", by[("band_kd-de50", 1)].cfg)  # seed 0's band_kd is missing

    log: list[str] = []
    planned = _by_key(plan_from_archive(jobs, archive, config_path, log=log.append))
    # seed 0: band_kd needs the baseline's checkpoint, so the archived baseline trains again; seed 1: nobody does
    assert set(planned) == {("baseline-de50", 0), ("band_kd-de50", 0), ("reweight-de50", 0), ("reweight-de50", 1)}
    assert planned[("band_kd-de50", 0)] is by[("band_kd-de50", 0)]  # unchanged: waits for its teacher
    for seed in (0, 1):
        job = planned[("reweight-de50", seed)]
        copy = job.out.resolve() / "teacher_scores.csv"
        assert job.cell.teacher is None and job.cfg.strategy.teacher is None
        assert job.cfg.strategy.teacher_scores == str(copy)
        assert copy.read_text() == SCORES.replace("0.5", f"0.{seed}")  # its own seed's teacher
        assert "--set=strategy.teacher_scores=" in job.command and "strategy.teacher=" not in job.command
        assert job.cfg.strategy.name == "reweight" and job.cfg.seed == seed
    assert sum("archived finished, not trained again" in line for line in log) == 4  # nlkd x2, band_kd 1, baseline 1

    # a run begun on the scores resumes on them, even once its teacher has a checkpoint here
    begun = planned[("reweight-de50", 0)]
    (begun.out / "config.yaml").write_text(yaml.safe_dump(config_to_dict(begun.cfg)))
    teacher_out = by[("baseline-de50", 0)].out
    teacher_out.mkdir(parents=True)
    (teacher_out / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e}) + "\n" for e in (1, 2)))
    (teacher_out / "last.pt").write_bytes(b"stand-in")
    again = _by_key(plan_from_archive(jobs, archive, config_path, log=log.append))
    assert again[("reweight-de50", 0)].cfg == begun.cfg
    assert again[("baseline-de50", 0)] is by[("baseline-de50", 0)]  # finished here: kept, the runner skips it


def test_teacher_scores_of_other_labels_or_metric_are_not_lent(bench_data: Path, tmp_path: Path) -> None:
    out, archive = tmp_path / "out", tmp_path / "archive"
    jobs, config_path = _jobs(bench_data, out)
    by = _by_key(jobs)
    nlkd = by[("nlkd-de50", 0)].cfg
    _finished(archive / "nlkd-de50" / "seed0", apply_overrides(nlkd, {"strategy.tolerance": 1.0}), SCORES)
    _finished(archive / "nlkd-de50" / "seed1", nlkd, SCORES)  # seed 0's teacher, filed under seed 1: not seed 1's
    student = by[("reweight-de50", 0)].cfg
    assert archived_teacher_scores(archive, "baseline-de50", 0, student) is None
    assert archived_teacher_scores(archive, "baseline-de50", 1, by[("reweight-de50", 1)].cfg) is None
    planned = _by_key(plan_from_archive(jobs, archive, config_path, log=lambda _: None))
    assert planned[("reweight-de50", 0)] is by[("reweight-de50", 0)]  # waits for its teacher, which trains
    assert ("baseline-de50", 0) in planned


def test_dry_run_with_an_archive_prints_the_plan_and_writes_nothing(
    bench_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, archive = _seed0_archived(bench_data, tmp_path, SCORES)
    argv = _argv(bench_data, out, "--cells", "reweight-de50", "--archive", str(archive), "--dry-run")
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "reweight-de50 seed 0: learns the teacher scores of" in text
    assert "baseline-de50 seed 0: archived finished, not trained again" in text
    assert "-- baseline-de50 seed 1:" in text and "-- baseline-de50 seed 0:" not in text  # seed 1 has no archive
    assert not (out / BENCH).exists() or not any((out / BENCH).rglob("*.csv"))


def test_a_student_trains_on_lent_scores_without_its_teacher_and_archives_them(
    bench_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = sorted(p.stem for p in (bench_data / "images" / "train").glob("*.png"))
    scores = "# key=abc\nid,quality,bf,iou\n" + "".join(f"{i},0.{k + 2}00000,0.5,0.5\n" for k, i in enumerate(ids))
    out, archive = _seed0_archived(bench_data, tmp_path, scores)
    argv = _argv(bench_data, out, "--cells", "reweight-de50", "--archive", str(archive), "--set", "threads=1")
    argv[argv.index("1", argv.index("--seeds"))] = "0"  # seed 0 only: "--seeds 0 0"
    assert main(argv) == 0, capsys.readouterr().err
    run = out / BENCH / "reweight-de50" / "seed0"
    assert (run / "last.pt").is_file() and not (out / BENCH / "baseline-de50").exists()  # the teacher never trained
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    lent_mean = sum(0.2 + k / 10 for k in range(len(ids))) / len(ids)
    assert first["w_teacher"] == pytest.approx(lent_mean)  # the training weights are the lent scores
    kept = archive / "reweight-de50" / "seed0"
    assert (kept / "teacher_scores.csv").read_text() == scores  # archived again: the next student can borrow it
    assert yaml.safe_load((kept / "config.yaml").read_text())["strategy"]["teacher"] is None


def test_a_student_finished_here_does_not_bring_back_its_archived_teacher(bench_data: Path, tmp_path: Path) -> None:
    out, archive = _seed0_archived(bench_data, tmp_path, SCORES)  # seed 0's reweight borrows NLKD's scores
    jobs, config_path = _jobs(bench_data, out)
    by = _by_key(jobs)
    done = by[("band_kd-de50", 0)].out  # a pixel-level student, finished on this machine
    _finished(done, by[("band_kd-de50", 0)].cfg)
    (done / "last.pt").write_bytes(b"stand-in")
    planned = _by_key(plan_from_archive(jobs, archive, config_path, log=lambda _: None))
    assert ("baseline-de50", 0) not in planned  # nobody still to train needs its checkpoint
    assert planned[("band_kd-de50", 0)] is by[("band_kd-de50", 0)]  # kept; the runner skips a finished run
