"""Late rows continue their baseline's checkpoint (:mod:`nlkd.branch`) instead of training its epochs again.

A row whose strategy starts late (``strategy.start: 0.5``) is, until then, the baseline run of the same
labels and seed, which the plan makes its teacher (:func:`~nlkd.reproduce.bench_plan.bench_plan`).
:func:`continue_late_students` has that baseline keep its checkpoint of the start epoch (``keep_epochs``)
and the late run start from it (``init_from``): half a run saved per late run, and the same numbers
(tests/test_late_start.py). A late run keeps training from scratch when its baseline cannot
give that checkpoint: finished or past the start epoch without it, or not trained here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from nlkd.branch import differences, strategy_start_epoch
from nlkd.config import apply_overrides, load_config
from nlkd.reproduce.bench_runner import Job, running_elsewhere
from nlkd.reproduce.train_command import train_command

__all__ = ["continue_late_students", "epochs_done", "kept_checkpoint"]


def kept_checkpoint(run: Path, epoch: int) -> Path:
    """Where a run keeps its checkpoint after ``epoch`` (``keep_epochs``)."""
    return run / f"epoch{epoch}" / "last.pt"


def epochs_done(run: Path) -> int:
    """Epochs a run folder has finished (lines of its ``metrics.jsonl``; 0 when it has none)."""
    path = run / "metrics.jsonl"
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0


def _continues(job: Job, baseline: Job | None) -> int:
    """The epoch of ``baseline``'s checkpoint that ``job`` can continue from, or 0."""
    start = strategy_start_epoch(job.cfg)
    if start == 0 or baseline is None or job.finished() or (job.out / "last.pt").is_file():
        return 0
    if differences(baseline.cfg, job.cfg):
        return 0
    will_keep = not baseline.finished() and epochs_done(baseline.out) < start
    if will_keep and running_elsewhere(baseline) is not None:  # trained by another process: as it was started
        will_keep = start in load_config(baseline.out / "config.yaml").keep_epochs
    return start if kept_checkpoint(baseline.out, start).is_file() or will_keep else 0


def continue_late_students(jobs: Sequence[Job], config_path: Path) -> list[Job]:
    """``jobs`` with every late row that can continue its baseline's checkpoint of its start epoch set to
    (``init_from``), and those baselines set to keep it (``keep_epochs``); ``config_path`` is the scale's
    config file."""
    by_key = {(j.cell.slug, j.seed): j for j in jobs}
    starts = {}
    keeps: dict[tuple[str, int], set[int]] = {}
    for job in jobs:
        base_key = (f"baseline-{job.cell.column}", job.seed)
        if job.cell.column and (epoch := _continues(job, by_key.get(base_key))):
            starts[(job.cell.slug, job.seed)] = kept_checkpoint(by_key[base_key].out, epoch)
            keeps.setdefault(base_key, set()).add(epoch)
    out = []
    for job in jobs:
        key = (job.cell.slug, job.seed)
        changes: dict[str, object] = {}
        if key in starts:
            changes["init_from"] = str(starts[key])
        if key in keeps:
            changes["keep_epochs"] = sorted(set(job.cfg.keep_epochs) | keeps[key])
        if changes:
            cfg = apply_overrides(job.cfg, changes)
            job = dataclasses.replace(job, cfg=cfg, command=train_command(config_path, cfg))
        out.append(job)
    return out
