"""``nlkd audit``: rank every annotation of a split by its agreement with a teacher, and show the worst.

    nlkd audit --checkpoint runs/teacher/last.pt --data data/camvid --split train --labels train_coarse \\
        --out runs/audit [--top 8] [--known-bad bad_ids.txt] [--tolerance 2] [--resume]
        [--export label-studio|cvat|fiftyone --top 50]
    nlkd audit --checkpoint runs/teacher/last.pt ... --folds 5 [--epochs 30] [--model unet]

Writes OUT/scores.csv (one row per image, worst first), OUT/teacher_scores.csv (``nlkd score`` format,
for ``nlkd train --teacher-scores``), OUT/classes.csv (per-class IoU and BF@θpx), OUT/gallery/*.png,
OUT/figures/*.png, OUT/audit.json, OUT/report.html and OUT/progress.csv (what ``--resume`` continues
from). With a ``manifest.json`` in the label folder (``nlkd corrupt``) or ``--known-bad``, the report
also scores the ranking as a detector of the bad annotations (ROC, precision-recall, AUROC, AP).
``--folds K`` first trains K teachers (the checkpoint's training config, changed by ``--epochs``,
``--model``, ``--seed``), each on K−1 folds, and judges every image with the one that never saw it.
``--export FORMAT`` writes the K worst annotations (``--top``, default 50) with the teacher's prediction
as a pre-annotation to OUT/FORMAT (``nlkd.audit.exports``).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nlkd.audit.exports import DEFAULT_TOP, EXPORT_FORMATS
from nlkd.audit.exports.label_studio import DEFAULT_IMAGE_URL
from nlkd.commands._common import DEVICE_HELP, add_data_args, checked_data_info, size_arg
from nlkd.config import TrainConfig

if TYPE_CHECKING:
    from nlkd.audit import AuditTable, Detection, Teachers
    from nlkd.data.folder import FolderDataset

__all__ = ["add_fold_args", "fold_config", "register", "run", "run_audit"]


def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {value}")
        return value

    return parse


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of pixels > 0, got {text!r}")
    return value


def add_fold_args(p: argparse.ArgumentParser, default_dir: str) -> None:
    """``--folds K`` and the options of the fold teachers' training (shared with ``nlkd score``)."""
    p.add_argument(
        "--folds",
        type=_int_at_least(2),
        default=None,
        metavar="K",
        help="train K out-of-fold teachers; score each image with the one that never saw it",
    )
    p.add_argument("--folds-dir", default=None, metavar="DIR", help=f"fold data and runs (default: {default_dir})")
    p.add_argument("--epochs", type=_int_at_least(1), default=None, help="fold teachers' epochs")
    p.add_argument("--model", default=None, help="fold teachers' model (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=None, help="fold assignment and training seed")


def fold_config(args: argparse.Namespace) -> TrainConfig:
    """The fold teachers' training config: the checkpoint's (if given) or the defaults, on the split to
    score, changed by the command-line options."""
    from nlkd.checkpoint import checkpoint_config, load_checkpoint
    from nlkd.config import ModelConfig

    cfg = checkpoint_config(load_checkpoint(args.checkpoint)) if args.checkpoint else TrainConfig()
    d = cfg.data
    d.root, d.train_split, d.labels, d.format = args.data, args.split, args.labels, args.format
    if args.num_classes is not None:
        d.num_classes = args.num_classes
    if args.ignore_index is not None:
        d.ignore_index = args.ignore_index
    if args.size is not None:
        d.size = args.size
    if args.epochs is not None:
        cfg.epochs = args.epochs
    if args.model is not None and args.model != cfg.model.name:
        cfg.model = ModelConfig(name=args.model)  # the old model's encoder/options need not apply
    if args.seed is not None:
        cfg.seed = args.seed
    cfg.device = args.device
    return cfg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="rank annotations by agreement with a teacher; gallery and HTML report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", default=None, metavar="CKPT", help="teacher (with --folds: its config)")
    add_data_args(p)
    p.add_argument(
        "--out", required=True, metavar="DIR", help="folder for scores.csv, the gallery and report.html (new or empty)"
    )
    p.add_argument(
        "--top",
        type=_int_at_least(0),
        default=None,
        metavar="K",
        help="worst and best K in the gallery (default 8); with --export, the K worst exported (default 50)",
    )
    p.add_argument(
        "--export",
        action="append",
        choices=EXPORT_FORMATS,
        default=None,
        metavar="FORMAT",
        help=f"relabel queue of the worst annotations with the teacher's prediction, in OUT/FORMAT: "
        f"{' | '.join(EXPORT_FORMATS)} (repeatable)",
    )
    p.add_argument(
        "--image-url",
        default=None,
        metavar="PREFIX",
        help=f"label-studio export: prefix of the tasks' image URLs (default {DEFAULT_IMAGE_URL})",
    )
    p.add_argument(
        "--known-bad",
        default=None,
        metavar="FILE",
        help="ids of bad annotations, one per line (default: the label folder's manifest.json, if any)",
    )
    p.add_argument("--tolerance", type=_tolerance, default=2.0, help="BF tolerance in pixels (default 2)")
    p.add_argument("--size", type=size_arg, default=None, metavar="HxW", help="default: the checkpoint's")
    p.add_argument("--batch-size", type=_int_at_least(1), default=8, help="images per forward pass")
    p.add_argument(
        "--save-every",
        type=_int_at_least(1),
        default=10,
        metavar="N",
        help="rewrite OUT/progress.csv every N batches (default 10)",
    )
    p.add_argument("--resume", action="store_true", help="keep the images already in OUT/progress.csv")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_fold_args(p, "OUT/folds")
    p.set_defaults(func=run)


def _teachers(args: argparse.Namespace, out: Path):
    """(teachers, dataset info, size, description) for the single-checkpoint or the fold case."""
    from nlkd.audit import Teachers
    from nlkd.checkpoint import model_from_checkpoint
    from nlkd.data.notes import data_warnings, print_warnings
    from nlkd.data.validate import check_split
    from nlkd.errors import ConfigError
    from nlkd.runtime import dataset_info, resolve_device

    device = resolve_device(args.device)
    if args.folds:
        from nlkd.folds import fold_teachers, train_fold_teachers

        cfg = fold_config(args)
        folds_dir = Path(args.folds_dir) if args.folds_dir else out / "folds"
        folds, checkpoints = train_fold_teachers(cfg, args.folds, folds_dir)
        what = f"{args.folds} out-of-fold teachers ({cfg.model.name}, {cfg.epochs} epochs) in {folds_dir}"
        info = dataset_info(cfg)
        print_warnings("audit", data_warnings(info, args.data, [(args.split, args.labels)], args.format))
        return fold_teachers(checkpoints, folds, device, info), info, cfg.data.size, what
    if args.checkpoint is None:
        raise ConfigError("pass --checkpoint CKPT (the teacher), or --folds K to train out-of-fold teachers")
    model, cfg, ckpt_info = model_from_checkpoint(args.checkpoint, device)
    info = checked_data_info(args, ckpt_info, args.checkpoint, ignore_index=False)  # a fine teacher judges coarse masks
    if args.format == "folder":
        check_split(args.data, args.split, info.num_classes, info.ignore_index, args.labels)
    teachers = Teachers([model], [Path(args.checkpoint)], device=device)
    return teachers, info, args.size or cfg.data.size, str(args.checkpoint)


def _usable_known_bad(
    known: tuple[set[str], str] | None, ids: list[str]
) -> tuple[tuple[set[str], str] | None, str | None]:
    """``known`` (known-bad ids, their source) when it can score a detection — at least one bad and one
    good image among the audited ``ids`` —, else None and the line that says why there are no such scores."""
    if known is None:
        return None, None
    bad = known[0] & set(ids)
    if 0 < len(bad) < len(ids):
        return known, None
    which = "none" if not bad else "all"
    return None, f"known bad ({known[1]}): {which} of the {len(ids)} images, so no detection scores"


def run(args: argparse.Namespace) -> int:
    from nlkd.audit import PROGRESS_NAME, known_bad_ids
    from nlkd.data.folder import FolderDataset
    from nlkd.data.info import check_data_root
    from nlkd.errors import NLKDError

    check_data_root(args.data)
    out = Path(args.out)
    if args.resume and not (out / PROGRESS_NAME).is_file():
        raise NLKDError(f"{out}: no audit to resume (no {PROGRESS_NAME} there); start it without --resume")
    teachers, info, size, what = _teachers(args, out)
    dataset = FolderDataset(
        args.data,
        args.split,
        args.labels,
        info=info,
        size=tuple(size) if size else None,
        cache=False,
        format=args.format,
    )
    n_export = _export_count(args, len(dataset))
    label_dir = Path(args.data) / "labels" / (args.labels or args.split)
    known, known_note = _usable_known_bad(known_bad_ids(label_dir, args.known_bad), dataset.ids)
    meta = {
        "teacher": what,
        "data": str(args.data),
        "split": args.split,
        "labels": args.labels or args.split,
        "size": "native" if not size else f"{size[0]}x{size[1]}",
        "tolerance": args.tolerance,
    }
    table, found = run_audit(
        teachers,
        dataset,
        out,
        tolerance=args.tolerance,
        batch_size=args.batch_size,
        resume=args.resume,
        save_every=args.save_every,
        top=8 if args.top is None else args.top,
        known_bad=known,
        meta=meta,
    )
    order = [i for i in table.order() if table.quality[i] == table.quality[i]]
    worst = ", ".join(f"{table.ids[i]} ({100 * table.quality[i]:.1f} %)" for i in order[:3])
    print(f"audited {len(table.ids)} images -> {out / 'report.html'}, {out / 'scores.csv'}")
    print(f"lowest quality: {worst or 'none (no image has valid pixels)'}")
    if found is not None:
        print(
            f"known bad ({found.source}): AUROC {found.auroc:.3f}, AP {found.average_precision:.3f} "
            f"({found.n_bad} of {found.n} images)"
        )
    if known_note:
        print(known_note)
    if args.export:
        from nlkd.audit.exports import export_relabel_queue

        url = DEFAULT_IMAGE_URL if args.image_url is None else args.image_url
        folders = export_relabel_queue(args.export, table, dataset, teachers, out, n_export, image_url=url)
        print(f"relabel queue ({n_export} worst annotations) -> {', '.join(str(f) for f in folders)}")
    return 0


def _export_count(args: argparse.Namespace, n_images: int) -> int:
    """How many annotations ``--export`` writes: ``--top`` (1..n_images), else up to DEFAULT_TOP."""
    from nlkd.errors import ConfigError

    if not args.export:
        if args.image_url is not None:
            raise ConfigError("--image-url applies to --export label-studio only")
        return 0
    if args.image_url is not None and "label-studio" not in args.export:
        raise ConfigError("--image-url applies to --export label-studio only")
    if args.top is None:
        return min(DEFAULT_TOP, n_images)
    if not 1 <= args.top <= n_images:
        raise ConfigError(f"--top {args.top}: --export needs 1 <= K <= {n_images} (the images in {args.split!r})")
    return args.top


def run_audit(
    teachers: Teachers,
    dataset: FolderDataset,
    out_dir: Path,
    *,
    tolerance: float = 2.0,
    batch_size: int = 8,
    resume: bool = False,
    save_every: int = 10,
    top: int = 8,
    known_bad: tuple[set[str], str] | None = None,
    meta: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[AuditTable, Detection | None]:
    """Audit ``dataset`` and write ``out_dir``: ``progress.csv``, ``scores.csv`` (worst first),
    ``teacher_scores.csv``, ``classes.csv`` (per-class IoU and BF), ``audit.json``, ``gallery/``,
    ``figures/`` and ``report.html``; returns the table and, when ``known_bad = (ids, source)`` is given,
    the detection scores."""
    import torch

    from nlkd.audit import PROGRESS_NAME, audit_dataset, detection
    from nlkd.audit.classes import class_summary
    from nlkd.audit.report import write_report  # matplotlib is only needed once the numbers exist
    from nlkd.io import atomic_write_text
    from nlkd.teacher import weak_teacher_warning

    out_dir = Path(out_dir)
    key = teachers.key(dataset, tolerance)
    progress = out_dir / PROGRESS_NAME
    if not resume and progress.is_file():
        log(f"starting over: {progress} is replaced (pass --resume to keep its rows)")
        progress.unlink()
    table = audit_dataset(
        teachers,
        dataset,
        tolerance=tolerance,
        batch_size=batch_size,
        partial=progress,
        key=key,
        resume=resume,
        save_every=save_every,
    )
    warning = weak_teacher_warning(torch.from_numpy(table.quality), "quality", f"images of split {dataset.split}")
    if warning:
        log(warning)
    found, others = None, {}
    if known_bad is not None:
        found = detection(table, *known_bad)
        others = {by: detection(table, *known_bad, by=by) for by in ("strict_quality", "labelled")}
    atomic_write_text(out_dir / "scores.csv", table.to_csv())
    atomic_write_text(out_dir / "teacher_scores.csv", table.score_table().to_csv("bfmiou"))
    classes = class_summary(table, tolerance)
    atomic_write_text(out_dir / "classes.csv", classes.to_csv())
    write_report(
        out_dir,
        table,
        dataset,
        teachers,
        top=top,
        found=found,
        found_by_labelled=others.get("labelled"),
        found_by_strict=others.get("strict_quality"),
        meta=meta or {},
        classes=classes,
    )
    record = _audit_record(key, meta or {}, table, found, others)
    atomic_write_text(out_dir / "audit.json", json.dumps(record, indent=2) + "\n")
    return table, found


def _audit_record(
    key: str, meta: Mapping[str, Any], table: AuditTable, found: Detection | None, others: Mapping[str, Detection]
) -> dict[str, Any]:
    """The content of ``audit.json``: settings, image count, mean quality and the detection scores (by
    quality, and ``detection_by_<score>`` for the other rankings)."""
    record = {
        "key": key,
        **meta,
        "n_images": len(table.ids),
        "mean_quality": float(np.nanmean(table.quality)) if np.isfinite(table.quality).any() else None,
    }
    if found is not None:
        record["detection"] = {
            "source": found.source,
            "n": found.n,
            "n_bad": found.n_bad,
            "auroc": _json_float(found.auroc),
            "average_precision": _json_float(found.average_precision),
        }
    for by, d in others.items():
        record[f"detection_by_{by}"] = {
            "auroc": _json_float(d.auroc),
            "average_precision": _json_float(d.average_precision),
        }
    return record


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else x
