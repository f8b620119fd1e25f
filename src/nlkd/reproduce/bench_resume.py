"""Plan the noise benchmark's runs against its archive (``--archive DIR``), so that a new machine trains
only what the archive lacks.

The archive keeps a finished run's small files, not its checkpoint (:mod:`~nlkd.reproduce.bench_archive`).
:func:`plan_from_archive` therefore

* skips a run whose archived copy reached the last epoch, as the report counts it (same cell, same
  seed), unless a run still to train needs its checkpoint as a teacher;
* lets a student whose strategy needs only the teacher's per-image scores (``reweight``, ``nlkd``, their
  transforms, ``discard``, ...) learn from an archived ``teacher_scores.csv`` of the same teacher cell and
  seed, when that teacher has no finished run here: the CSV is copied into the student's run folder and
  given as ``strategy.teacher_scores``, so the baseline need not train again. The weights are the ones
  the checkpoint gave (a teacher run caches and reuses its scores at the same 6 decimals).

A student that needs the teacher's probability maps (``band_kd``, ``nlkd_pixel``, ``band_ignore`` with
the teacher's side, ...) still waits for its teacher's checkpoint, which then trains again here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from nlkd.config import TrainConfig, apply_overrides, load_config
from nlkd.errors import NLKDError
from nlkd.io import atomic_write_bytes
from nlkd.reproduce.bench_plan import teacher_needs
from nlkd.reproduce.bench_runner import Job
from nlkd.reproduce.results import last_epoch_record
from nlkd.reproduce.scales import Log
from nlkd.reproduce.train_command import train_command
from nlkd.teacher import CACHE_NAME as TEACHER_SCORES

__all__ = ["archived_teacher_scores", "needs_only_image_scores", "plan_from_archive"]


def needs_only_image_scores(cfg: TrainConfig) -> bool:
    """Whether the strategy of ``cfg`` needs its teacher only for the per-image scores (so a scores CSV can
    stand in for the checkpoint), not for its probability maps."""
    scores, maps = teacher_needs(cfg)
    return scores and not maps


def _same_scores(student: TrainConfig, other: TrainConfig) -> bool:
    """Whether the teacher scores ``other`` learnt from are the ones ``student`` would compute: same
    training labels, images, resolution, weight metric and BF tolerance."""
    a, b = student, other
    return (a.data.labels, a.data.train_split, list(a.data.size), a.strategy.metric, a.strategy.tolerance) == (
        b.data.labels,
        b.data.train_split,
        list(b.data.size),
        b.strategy.metric,
        b.strategy.tolerance,
    )


def archived_teacher_scores(archive: Path, teacher_slug: str, seed: int, student: TrainConfig) -> Path | None:
    """An archived ``teacher_scores.csv`` (``archive/<slug>/seed<k>/``) of a student taught by the
    finished run ``<teacher_slug>/seed<seed>`` on the same labels, resolution and metric as ``student``,
    or None. Archived students are tried by slug, in order."""
    for folder in sorted(archive.glob(f"*/seed{seed}")):
        csv, config = folder / TEACHER_SCORES, folder / "config.yaml"
        if not (csv.is_file() and config.is_file()):
            continue
        try:
            other = load_config(config)
        except NLKDError:
            continue
        teacher = Path(other.strategy.teacher) if other.strategy.teacher else None
        if teacher is None or (teacher.parent.parent.name, teacher.parent.name) != (teacher_slug, f"seed{seed}"):
            continue
        if _same_scores(student, other):
            return csv
    return None


def _started_on_scores(job: Job) -> bool:
    """Whether ``job``'s run folder holds a run begun on a scores CSV (it resumes on it)."""
    config = job.out / "config.yaml"
    try:
        return config.is_file() and load_config(config).strategy.teacher_scores is not None
    except NLKDError:
        return False


def _taught_by_scores(job: Job, csv: Path, config_path: Path, write: bool) -> Job:
    """``job`` learning from a copy of ``csv`` in its run folder (written when ``write``) instead of its
    teacher's checkpoint; the copy is archived with the run, as a cache of a checkpoint's scores is."""
    copy = job.out.resolve() / TEACHER_SCORES
    if write and csv.resolve() != copy:
        copy.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(copy, csv.read_bytes())
    cfg = apply_overrides(job.cfg, {"strategy.teacher": None, "strategy.teacher_scores": str(copy)})
    cell = dataclasses.replace(job.cell, teacher=None)  # no teacher run to wait for
    return Job(cell, job.seed, cfg, train_command(config_path, cfg))


def plan_from_archive(
    jobs: Sequence[Job], archive: Path, config_path: Path, *, write: bool = True, log: Log = print
) -> list[Job]:
    """The ``jobs`` still to plan here, in their order: runs archived finished are left out unless a
    student still to train needs their checkpoint; students of image scores whose teacher has no
    finished run here learn from an archived ``teacher_scores.csv`` (:func:`archived_teacher_scores`;
    a run begun that way resumes that way). ``config_path`` is the scale's config file the commands start
    from; ``write=False`` (a dry run) plans without copying a CSV."""

    def archived(job: Job) -> bool:
        folder = archive / job.cell.slug / f"seed{job.seed}"
        return not job.finished() and last_epoch_record(folder, job.cfg.epochs) is not None

    by_key = {(j.cell.slug, j.seed): j for j in jobs}
    planned: dict[tuple[str, int], Job] = {}
    needed: set[tuple[str, int]] = set()  # teachers whose checkpoint a student needs
    for job in jobs:
        key = (job.cell.slug, job.seed)
        if job.cell.teacher is None:
            continue
        if archived(job):
            log(f"== {job.cell.slug} seed {job.seed}: archived finished, not trained again")
            continue
        if job.finished():  # finished here: the runner skips it, and it needs no teacher any more
            planned[key] = job
            continue
        teacher = by_key.get((job.cell.teacher, job.seed))
        csv = None
        if _started_on_scores(job):
            csv = job.out / TEACHER_SCORES
        elif (teacher is None or not teacher.finished()) and needs_only_image_scores(job.cfg):
            csv = archived_teacher_scores(archive, job.cell.teacher, job.seed, job.cfg)
        if csv is not None:
            log(f"== {job.cell.slug} seed {job.seed}: learns the teacher scores of {csv} (no teacher run here)")
            planned[key] = _taught_by_scores(job, csv, config_path, write)
        else:
            planned[key] = job
            needed.add((job.cell.teacher, job.seed))
    kept = []
    for job in jobs:
        key = (job.cell.slug, job.seed)
        if job.cell.teacher is not None:
            if key in planned:
                kept.append(planned[key])
        elif archived(job) and key not in needed:
            log(f"== {job.cell.slug} seed {job.seed}: archived finished, not trained again")
        else:
            kept.append(job)
    return kept
