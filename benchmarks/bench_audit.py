"""Finding corrupted annotations with one teacher: BFmIoU quality (nlkd) vs cleanlab vs cross-entropy.

Run from the repository root (needs ``pip install cleanlab``, the ``bench`` extra)::

    .venv/bin/python benchmarks/bench_audit.py --data data/camvid --checkpoint runs/teacher/last.pt \
        --labels train_coarse --split train

Ground truth: the ``manifest.json`` that ``nlkd corrupt`` wrote into the label folder (its ``corrupted``
ids are the bad annotations). One pass over the split at the teacher's training resolution (or
``--size``), batch by batch, scores every image three ways from the same teacher logits:

* **BFmIoU (nlkd)**: (BF + IoU) / 2 of the teacher's argmax against the annotation; low = bad.
* **cleanlab**: ``cleanlab.segmentation.rank.get_label_quality_scores(labels, pred_probs)`` with its
  default ``softmin`` method on the teacher's softmax probabilities; low = bad. A softmin image score
  depends on that image alone, so calling it batch by batch gives exactly the whole-split result while
  only one batch of probabilities (B × C × H × W) is ever in memory.
* **cross-entropy**: mean pixel cross-entropy of the teacher's logits against the annotation over the
  valid pixels (``nlkd.weighting.per_image_cross_entropy``); high = bad.
* **labelled share**: the share of pixels the annotation labels (not ``ignore_index``); low = bad. No
  teacher at all: the yardstick for corruptions that leave pixels unlabelled (polygon-coarse).

cleanlab has no ignore index: ignored pixels are given the teacher's own argmax as their label, so they
count as agreeing pixels (pixel score = the teacher's top probability) rather than as label errors.
Prints a markdown table of AUROC and average precision per scorer, the mean BFmIoU quality of the
corrupted and the clean masks, the command and the machine.

``--quick`` (no other input needed) writes a tiny synthetic data set with half of its training masks
dilated/eroded, trains a one-epoch teacher on them and scores them: seconds, for the tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nlkd.audit import audit_batch, auroc, average_precision, strict_bf_iou
from nlkd.checkpoint import model_from_checkpoint
from nlkd.config import parse_size
from nlkd.data.folder import FolderDataset, make_loader
from nlkd.data.info import load_dataset_info
from nlkd.data.validate import check_split
from nlkd.errors import NLKDError
from nlkd.io import read_mask
from nlkd.noise import load_manifest
from nlkd.runtime import resolve_device
from nlkd.weighting import per_image_cross_entropy


def _load() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # not available on this platform
        return "n/a"


@torch.no_grad()
def score_split(model, dataset: FolderDataset, device: torch.device, batch_size: int, tolerance: float):
    """Stream the split once; returns ``(scores: name -> (N,) suspicion, higher = worse), seconds per
    scorer, forward seconds, number of ignored pixels relabelled for cleanlab)``."""
    from cleanlab.segmentation.rank import get_label_quality_scores

    info = dataset.info
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("bfmiou", "strict", "x_labelled", "cleanlab", "ce", "labelled")}
    seconds = dict.fromkeys(("bfmiou", "cleanlab", "ce"), 0.0)
    forward, relabelled = 0.0, 0
    for batch in make_loader(dataset, batch_size=batch_size, shuffle=False, seed=0):
        t0 = time.perf_counter()
        logits = model(batch["image"].to(device)).float()
        target = batch["mask"].to(device)
        pred = logits.argmax(1)
        forward += time.perf_counter() - t0

        t0 = time.perf_counter()
        s = audit_batch(pred, target, info.num_classes, tolerance, info.ignore_index)
        out["bfmiou"].append(-(s.bf + s.iou) / 2)
        seconds["bfmiou"] += time.perf_counter() - t0
        out["labelled"].append(-s.labelled)  # computed by audit_batch as well: its seconds are bfmiou's
        out["x_labelled"].append(-(s.bf + s.iou) / 2 * s.labelled)
        strict_bf, strict_iou = strict_bf_iou(pred, target, info.num_classes, tolerance, info.ignore_index)
        out["strict"].append(-((strict_bf + strict_iou) / 2).cpu().numpy())

        t0 = time.perf_counter()
        labels = target
        if info.ignore_index is not None:  # cleanlab has no ignore index: ignored pixels agree with the teacher
            ignored = target == info.ignore_index
            relabelled += int(ignored.sum())
            labels = torch.where(ignored, pred, target)
        probs = torch.softmax(logits, 1).cpu().numpy()
        quality, _ = get_label_quality_scores(labels.cpu().numpy(), probs, verbose=False)
        out["cleanlab"].append(-np.asarray(quality, dtype=np.float64))
        seconds["cleanlab"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        out["ce"].append(per_image_cross_entropy(logits, target, info.ignore_index).double().cpu().numpy())
        seconds["ce"] += time.perf_counter() - t0
    return {k: np.concatenate(v) for k, v in out.items()}, seconds, forward, relabelled


def _classes_per_corrupted_mask(manifest: dict, label_dir: Path, ignore: int | None) -> tuple[float, float] | None:
    """Mean number of classes in the corrupted masks before (the manifest's ``source``) and after."""
    ids = manifest["corrupted"]
    if not ids or not manifest.get("source") or not Path(manifest["source"]).is_dir():
        return None  # a hand-written manifest without the clean source
    source = Path(manifest["source"])
    counts = []
    for folder in (source, label_dir):
        present = [set(np.unique(read_mask(folder / f"{i}.png")).tolist()) - {ignore} for i in ids]
        counts.append(float(np.mean([len(p) for p in present])))
    return counts[0], counts[1]


def quick_inputs(work: Path) -> list[str]:
    """``--quick``: a tiny synthetic set (16 training images at 32x48, ``train_coarse`` half dilated/eroded)
    and a one-epoch teacher trained on it; returns the arguments that score it."""
    from nlkd.config import TrainConfig
    from nlkd.data.synth import make_synthetic
    from nlkd.train import train

    data = make_synthetic(work / "data", seed=0, n_train=16, n_val=4, n_test=4, size=(32, 48))
    cfg = TrainConfig(epochs=1, batch_size=4, seed=0, out=str(work / "teacher"), device="cpu")
    cfg.data.root, cfg.data.labels, cfg.data.size = str(data), "train_coarse", [32, 48]
    cfg.model.encoder = "resnet18"
    train(cfg, log=lambda *a, **k: None)
    return ["--data", str(data), "--checkpoint", str(work / "teacher" / "last.pt"), "--labels", "train_coarse"]


def main(argv: list[str] | None = None) -> int:
    """Parse the options, score the split three ways, print the markdown report; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", metavar="ROOT", help="required unless --quick")
    parser.add_argument("--checkpoint", metavar="CKPT", help="the teacher (required unless --quick)")
    parser.add_argument("--labels", metavar="NAME", help="label folder with a manifest.json (required unless --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny synthetic data and a one-epoch teacher (seconds)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--size", default=None, metavar="HxW", help="default: the teacher's training size")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tolerance", type=float, default=2.0, help="BF tolerance in pixels")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if not args.quick and not (args.data and args.checkpoint and args.labels):
        parser.error("--data, --checkpoint and --labels are required (or --quick)")
    try:
        import cleanlab
    except ImportError:
        print(
            "bench_audit: cleanlab is not installed; pip install cleanlab (or pip install -e '.[bench]')",
            file=sys.stderr,
        )
        return 1
    if args.quick:
        with tempfile.TemporaryDirectory() as work:
            rest = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--quick"]
            return main([*quick_inputs(Path(work)), "--device", "cpu", *rest])
    try:
        device = resolve_device(args.device)
        model, cfg, ckpt_info = model_from_checkpoint(args.checkpoint, device)
        info = load_dataset_info(args.data, ckpt_info.num_classes, ckpt_info.ignore_index)
        n_pairs = check_split(args.data, args.split, info.num_classes, info.ignore_index, args.labels)
        label_dir = Path(args.data) / "labels" / args.labels
        manifest = load_manifest(label_dir)
        if manifest is None:
            raise NLKDError(f"{label_dir}: no manifest.json (write the labels with `nlkd corrupt`)")
        size = parse_size(args.size) if args.size else cfg.data.size
        dataset = FolderDataset(
            args.data, args.split, args.labels, info=info, cache=False, size=tuple(size) if size else None
        )
    except NLKDError as e:
        print(f"bench_audit: error: {e}", file=sys.stderr)
        return 2
    bad = np.array([i in set(manifest["corrupted"]) for i in dataset.ids])
    t0 = time.perf_counter()
    scores, seconds, forward, relabelled = score_split(model, dataset, device, args.batch_size, args.tolerance)
    total = time.perf_counter() - t0

    command = " ".join([os.path.relpath(sys.argv[0]), *(sys.argv[1:] if argv is None else argv)])
    print(f"Command: `python {command}`\n")
    print(
        f"Machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} logical CPUs; Python "
        f"{platform.python_version()}; torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
        f"cleanlab {cleanlab.__version__}; device {device}; load average at start {_load()}\n"
    )
    where = "native size" if not size else f"{size[0]}x{size[1]}"
    print(
        f"Data: {args.data} split {args.split!r}, labels {args.labels!r}: {n_pairs} images at {where}, "
        f"{int(bad.sum())} corrupted ({manifest.get('mode', '?')}, ratio {manifest.get('ratio', '?')}); "
        f"teacher {args.checkpoint} ({cfg.model.name}); BF tolerance {args.tolerance} px\n"
    )
    names = {
        "bfmiou": "BFmIoU quality (nlkd)",
        "strict": "BFmIoU, unlabelled pixels = disagreement",
        "x_labelled": "BFmIoU × labelled share",
        "cleanlab": "cleanlab get_label_quality_scores (softmin)",
        "ce": "mean pixel cross-entropy",
        "labelled": "share of labelled pixels (no teacher)",
    }
    print("| scorer | bad when | AUROC | AP | seconds |")
    print("|---|---|---:|---:|---:|")
    for key, name in names.items():
        s = scores[key]
        ok = np.isfinite(s)
        direction = "high" if key == "ce" else "low"
        took = f"{seconds[key]:.2f}" if key in seconds else "—"
        print(
            f"| {name} | {direction} | {auroc(s[ok], bad[ok]):.3f} | {average_precision(s[ok], bad[ok]):.3f} | {took} |"
        )
    print(f"| chance | — | 0.500 | {bad.mean():.3f} | — |\n")
    quality = -scores["bfmiou"]
    ok = np.isfinite(quality)
    print(
        f"Mean BFmIoU quality: {quality[ok & bad].mean():.3f} for the corrupted masks vs "
        f"{quality[ok & ~bad].mean():.3f} for the clean ones (low = suspect).\n"
    )
    classes = _classes_per_corrupted_mask(manifest, label_dir, info.ignore_index)
    if classes is not None:
        print(f"Classes per corrupted mask (native size, ignore label left out): {classes[0]:.2f} in the "
              f"source masks, {classes[1]:.2f} after corruption.\n")  # fmt: skip
    n_pixels = len(dataset) * (size[0] * size[1] if size else 0)
    share = f" ({100 * relabelled / n_pixels:.2f} % of pixels)" if n_pixels else ""
    print(
        f"Ignored pixels fed to cleanlab: {relabelled}{share}, labelled with the teacher's argmax (cleanlab has "
        f"no ignore index). Images without valid pixels are left out of a scorer's row. Shared teacher "
        f"forward pass {forward:.2f} s (not in the per-scorer seconds); whole pass {total:.2f} s."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
