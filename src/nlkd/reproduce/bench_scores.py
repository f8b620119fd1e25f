"""The numbers of the noise benchmark: each finished run's score per metric (mean of its last K
epochs' validation evaluations, or a post-hoc evaluation of its ``last.pt`` when a run did not log the
metric) and the best rows of the first noise kind.

Within one table every run of a metric is scored the same way: the last-K mean when every run logged
the metric in its last K epochs, otherwise the post-hoc evaluation of ``last.pt`` for every run
(cached in ``RUN/posthoc_eval.json``, keyed by the checkpoint's size and modification time).

Runs also come from an archive (``--archive DIR``, :mod:`~nlkd.reproduce.bench_archive`): the small files
of finished runs in the same ``<slug>/seed<k>/`` layout, without checkpoints. A (slug, seed) with no
finished run folder counts as finished from its archived copy once its ``metrics.jsonl`` reached the last
epoch; its post-hoc evaluation is the cached one, taken as it is (there is no ``last.pt`` to check).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlkd.errors import DataError
from nlkd.io import atomic_write_text
from nlkd.reproduce.bench_plan import BenchSetting, NoiseKind, rows_of_kind
from nlkd.reproduce.results import finished_record, last_epoch_record
from nlkd.reproduce.stats import last_k_mean, paired_difference

__all__ = [
    "METRICS",
    "POSTHOC",
    "RunData",
    "archived_posthoc",
    "best_rows",
    "collect_runs",
    "posthoc_eval",
    "score_runs",
]

#: (column label, per-epoch key in metrics.jsonl, key of a post-hoc evaluation)
METRICS: tuple[tuple[str, str, str], ...] = (
    ("mIoU", "val_miou", "miou"),
    ("BF θ=1", "val_bf_1", "bf_1"),
    ("BF θ=2", "val_bf_2", "bf_2"),
    ("band mIoU", "val_miou_band", "miou_band"),
    ("interior mIoU", "val_miou_interior", "miou_interior"),
)
POSTHOC = "posthoc_eval.json"


@dataclass
class RunData:
    """A finished run: its seed, folder and ``metrics.jsonl`` records (one per epoch); ``archived``: the
    folder is an archived copy (no ``last.pt``)."""

    seed: int
    folder: Path
    records: list[dict[str, Any]]
    archived: bool = False

    def posthoc(self) -> dict[str, Any]:
        """The run's post-hoc evaluation: :func:`archived_posthoc` for an archived copy, else
        :func:`posthoc_eval` of its ``last.pt``."""
        return archived_posthoc(self.folder) if self.archived else posthoc_eval(self.folder)


def read_records(folder: Path) -> list[dict[str, Any]]:
    """``folder/metrics.jsonl``, one dict per epoch; an older run's ``val_bf`` (BF at 2 px) also as ``val_bf_2``."""
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    for r in records:  # runs of older nlkd: val_bf is BF at eval_tolerance, 2 px in every scale
        if "val_bf_2" not in r and "val_bf" in r and _eval_tolerance(folder) == 2.0:
            r["val_bf_2"] = r["val_bf"]
    return records


def _eval_tolerance(folder: Path) -> float | None:
    import yaml

    try:
        return float(yaml.safe_load((folder / "config.yaml").read_text())["eval_tolerance"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def seed_folders(folder: Path) -> list[tuple[int, Path]]:
    """``(seed, folder/seed<k>/)`` for every such entry, by name."""
    return [(int(p.name[4:]), p) for p in sorted(folder.glob("seed*")) if p.name[4:].isdigit()]


def collect_runs(out: Path, slugs: Sequence[str], epochs: int, archive: Path | None = None) -> dict[str, list[RunData]]:
    """Cell slug -> its finished runs under ``out/<slug>/seed<k>/`` (every seed found), by seed; a seed
    without a finished run there is taken from ``archive/<slug>/seed<k>/`` when that copy reached
    ``epochs``."""
    runs: dict[str, list[RunData]] = {}
    for slug in slugs:
        done = [(s, f) for s, f in seed_folders(out / slug) if finished_record(f, epochs) is not None]
        found = [RunData(s, f, read_records(f)) for s, f in done]
        have = {r.seed for r in found}
        for seed, folder in seed_folders(archive / slug) if archive is not None else []:
            if seed not in have and last_epoch_record(folder, epochs) is not None:
                found.append(RunData(seed, folder, read_records(folder), archived=True))
                have.add(seed)
        runs[slug] = sorted(found, key=lambda r: r.seed)
    return runs


def posthoc_eval(folder: Path) -> dict[str, Any]:
    """Validation metrics of ``folder/last.pt`` (:func:`nlkd.evaluate.evaluate` at the run's size),
    computed once and cached in ``folder/posthoc_eval.json``."""
    ckpt, cache = folder / "last.pt", folder / POSTHOC
    stamp = [ckpt.stat().st_size, ckpt.stat().st_mtime_ns]
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("last_pt") == stamp:
            return saved["result"]
    import torch

    from nlkd.checkpoint import model_from_checkpoint
    from nlkd.evaluate import evaluate
    from nlkd.train import build_datasets

    model, cfg, info = model_from_checkpoint(ckpt, "cpu")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    val_ds = build_datasets(cfg, info, check=False)[1]
    result = {k: v for k, v in evaluate(model, val_ds, "cpu", cfg.eval_tolerance).items() if k != "class_names"}
    atomic_write_text(cache, json.dumps({"last_pt": stamp, "result": result}) + "\n")
    return result


def archived_posthoc(folder: Path) -> dict[str, Any]:
    """The post-hoc evaluation cached in an archived run's ``posthoc_eval.json``, as it is."""
    cache = folder / POSTHOC
    if not cache.is_file():
        raise DataError(f"{folder}: archived run without {POSTHOC} (no last.pt to evaluate); score its run folder "
                        "with the report, then archive it again")  # fmt: skip
    return json.loads(cache.read_text())["result"]


def score_runs(
    runs: Mapping[str, Sequence[RunData]], last_k: int, extra_keys: Sequence[str] = ()
) -> tuple[dict[str, dict[str, dict[int, float]]], dict[str, str]]:
    """Scores of every run of one table: ``{slug: {metric label: {seed: value}}}`` and, per metric,
    how it was scored (the same for every run of the table). ``extra_keys`` (per-epoch keys, e.g. the
    detection AUROC) are scored by their last-K mean where present and left out elsewhere."""
    everything = [r for rs in runs.values() for r in rs]
    scores: dict[str, dict[str, dict[int, float]]] = {slug: {} for slug in runs}
    sources: dict[str, str] = {}
    for label, key, post in METRICS:
        logged = all(last_k_mean(r.records, key, last_k) is not None for r in everything)
        sources[label] = f"mean of the last {last_k} epochs" if logged else "post-hoc evaluation of last.pt"
        for slug, rs in runs.items():
            if logged:
                scores[slug][label] = {r.seed: last_k_mean(r.records, key, last_k) for r in rs}  # type: ignore[misc]
            else:
                scores[slug][label] = {r.seed: float(r.posthoc()[post]) for r in rs}
    for key in extra_keys:
        for slug, rs in runs.items():
            values = {r.seed: last_k_mean(r.records, key, last_k) for r in rs}
            scores[slug][key] = {s: v for s, v in values.items() if v is not None}
    return scores, sources


def best_rows(
    setting: BenchSetting,
    kind: NoiseKind,
    runs: Mapping[str, Sequence[RunData]],
    seeds: Sequence[int],
    unavailable: Mapping[str, str],
) -> list[str] | None:
    """The ``setting.best_of_first`` candidate rows of the first kind's table with the largest mean
    paired mIoU gain over its baseline (last-K scores), among rows the other kinds do not run anyway;
    None until every such row and the baseline finished every seed in ``seeds``."""
    rows = [r for r in rows_of_kind(setting, kind) if r.candidate and r.kinds != "all" and r.slug not in unavailable]
    base = _miou(runs.get(f"baseline-{kind.key}", []), setting.last_k)
    slugs = [r.slug_for(kind) for r in rows]
    if not rows or any({r.seed for r in runs.get(s, [])} < set(seeds) for s in [*slugs, f"baseline-{kind.key}"]):
        return None
    gains = {}
    for row, slug in zip(rows, slugs):
        diff = paired_difference(_miou(runs[slug], setting.last_k), base)
        gains[row.slug] = diff.mean if diff is not None else float("-inf")
    return sorted(gains, key=lambda s: -gains[s])[: setting.best_of_first]


def _miou(runs: Sequence[RunData], last_k: int) -> dict[int, float]:
    values = {r.seed: last_k_mean(r.records, "val_miou", last_k) for r in runs}
    return {s: v for s, v in values.items() if v is not None}


def mean_of(values: Mapping[int, float]) -> float | None:
    return statistics.fmean(values.values()) if values else None
