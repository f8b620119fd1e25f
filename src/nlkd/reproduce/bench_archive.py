"""The archive of finished noise-benchmark runs (``nlkd reproduce noise-bench ... --archive DIR``).

Run folders hold checkpoints and logs (too big for git); the report needs only three small files of a
run: ``metrics.jsonl``, ``config.yaml`` and ``posthoc_eval.json``. A student of a teacher also keeps
``teacher_scores.csv``: the teacher's score of every training image (~15 KB for CamVid), which only the
teacher's checkpoint could recompute. After each report, every finished run under
``OUT/noise-bench/<slug>/seed<k>/`` has those files copied into ``DIR/<slug>/seed<k>/``, a folder that
appears whole or not at all (:func:`nlkd.io.atomic_folder`). A copy with the same files is left alone;
one that differs is replaced by the finished run's files (logged in one line). The report reads the
archive too (:func:`~nlkd.reproduce.bench_scores.collect_runs`), and so does the planning of the runs to
train (:mod:`~nlkd.reproduce.bench_resume`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nlkd.errors import ConfigError
from nlkd.io import atomic_folder, atomic_write_bytes
from nlkd.reproduce.bench_scores import POSTHOC
from nlkd.reproduce.results import finished_record
from nlkd.reproduce.scales import Log
from nlkd.teacher import CACHE_NAME as TEACHER_SCORES

__all__ = ["ARCHIVED", "ArchiveCounts", "archive_run", "archive_runs", "check_archive"]

#: the small files of a run that are archived (never a checkpoint, never the teacher's probability maps)
ARCHIVED = ("config.yaml", POSTHOC, "metrics.jsonl", TEACHER_SCORES)


@dataclass
class ArchiveCounts:
    """What one :func:`archive_runs` did: runs newly archived, copies replaced, copies left alone."""

    added: int = 0
    replaced: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        return f"{self.added} runs added, {self.replaced} replaced, {self.unchanged} unchanged"


def check_archive(archive: Path, bench: Path) -> None:
    """Refuse an archive that is not a folder or that overlaps the run folders ``bench``
    (``OUT/noise-bench``): replacing an archived copy there would delete a run's checkpoint."""
    if archive.exists() and not archive.is_dir():
        raise ConfigError(f"--archive {archive}: not a folder")
    a, b = archive.resolve(), bench.resolve()
    if a == b or a.is_relative_to(b) or b.is_relative_to(a):
        raise ConfigError(f"--archive {archive}: must lie outside {bench} and not contain it")


def _small_files(run: Path) -> dict[str, bytes]:
    """File name -> content of the :data:`ARCHIVED` files ``run`` has."""
    return {name: (run / name).read_bytes() for name in ARCHIVED if (run / name).is_file()}


def _files(folder: Path) -> dict[str, bytes] | None:
    """File name -> content of every file in ``folder``; None if there is no such folder."""
    if not folder.is_dir():
        return None
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def archive_run(run: Path, dest: Path) -> str:
    """Make ``dest`` hold exactly ``run``'s small files: ``"added"`` (no copy yet), ``"replaced"`` (the
    copy differed) or ``"unchanged"`` (the same files, left alone)."""
    files, before = _small_files(run), _files(dest)
    if before == files:
        return "unchanged"
    with atomic_folder(dest) as tmp:
        for name, data in files.items():
            atomic_write_bytes(tmp / name, data)
    return "added" if before is None else "replaced"


def finished_runs(bench: Path, epochs: int) -> list[Path]:
    """The finished run folders ``bench/<slug>/seed<k>/`` (last epoch logged, ``last.pt`` present)."""
    folders = sorted(bench.glob("*/seed*"))
    return [f for f in folders if f.name[4:].isdigit() and finished_record(f, epochs) is not None]


def archive_runs(bench: Path, archive: Path, epochs: int, log: Log = print) -> ArchiveCounts:
    """Archive every finished run under ``bench`` (``OUT/noise-bench``) into ``archive/<slug>/seed<k>/``
    (:func:`archive_run`); an unfinished run is never archived, so it never replaces a copy."""
    counts = ArchiveCounts()
    for run in finished_runs(bench, epochs):
        dest = archive / run.parent.name / run.name
        state = archive_run(run, dest)
        setattr(counts, state, getattr(counts, state) + 1)
        if state == "replaced":
            log(f"== archive: {run.parent.name} {run.name} differed from {dest}; replaced by the finished run {run}")
    return counts
