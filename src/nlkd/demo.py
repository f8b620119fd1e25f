"""The demo behind ``make demo``: synthetic data, 50 % coarse labels, four trainings, one table.

1. ``nlkd synth`` writes the embedded default data set (clean labels + ``train_coarse``, where half of
   the training masks were dilated/eroded).
2. ``clean``: a student trained on the clean labels (the ceiling).
3. ``baseline``: plain CE on the coarse labels. It is also the teacher: a network trained on the
   noisy data, as in the paper.
4. ``reweight``: teacher-only weights (BFmIoU of the teacher's prediction vs each annotation).
5. ``nlkd``: the paper's distilled weights (Eq. 6), λ = 0 during warm-up, then linear to 0.5.
All are evaluated on the clean test split. Re-running continues finished or interrupted runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlkd.checkpoint import model_from_checkpoint
from nlkd.config import TrainConfig
from nlkd.data.folder import FolderDataset
from nlkd.data.synth import make_synthetic
from nlkd.evaluate import evaluate
from nlkd.io import atomic_write_text
from nlkd.noise import load_manifest
from nlkd.train import train

__all__ = ["METHODS", "format_table", "run_demo"]

METHODS = ("clean", "baseline", "reweight", "nlkd")
MIN_GAP = 0.01  # clean − baseline (a fraction, 1 point) below which no share of the gap is printed


def _config(method: str, data: Path, out: Path, epochs: int, seed: int, teacher: Path | None) -> TrainConfig:
    cfg = TrainConfig(epochs=epochs, seed=seed, out=str(out / method), batch_size=8)
    cfg.data.root = str(data)
    cfg.data.labels = "train" if method == "clean" else "train_coarse"
    cfg.strategy.name = "baseline" if method in ("clean", "baseline") else method
    cfg.strategy.teacher = str(teacher) if teacher else None
    return cfg


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """``<method>  <mIoU>  <BF>`` rows (percent, two decimals) and the share of the clean/baseline gap that
    reweight and nlkd recover (one seed each, so a difference, never "beats"); no share of a gap under
    :data:`MIN_GAP` (a share of a 0.1-point gap is noise, not a result)."""
    lines = [f"{'method':<10s}{'mIoU':>8s}{'BF':>8s}"]
    for m, r in results.items():
        lines.append(f"{m:<10s}{100 * r['miou']:8.2f}{100 * r['bf']:8.2f}")
    for method in ("reweight", "nlkd"):
        if not all(k in results for k in ("clean", "baseline", method)):
            continue
        for key, label in (("miou", "mIoU"), ("bf", "BF")):
            clean, base, ours = (results[k][key] for k in ("clean", "baseline", method))
            gap = clean - base
            recovered = (
                f"{100 * (ours - base) / gap:.0f}% of the clean/baseline gap ({100 * gap:.2f}) recovered"
                if gap >= MIN_GAP
                else f"the clean/baseline gap ({100 * gap:.2f}) is too small to share out"
            )
            # one run per method: a difference, not a verdict (that takes paired seeds)
            lines.append(f"{method} - baseline on {label}: {100 * (ours - base):+.2f} points (one seed), {recovered}")
    return "\n".join(lines)


def _mean_median(v: np.ndarray) -> str:
    return f"mean {np.mean(v):.3f}, median {np.median(v):.3f}" if len(v) else "none"


def format_diagnostics(data: Path, runs: dict[str, Path]) -> str:
    """What RESULTS.md quotes about the demo: how coarse the coarse labels are (IoU against the clean
    masks), how the teacher's weights separate corrupted from clean masks, and the student's weight
    ratio (corrupted / clean) per epoch of the nlkd run."""
    from nlkd.io import read_mask
    from nlkd.metrics import per_image_iou
    from nlkd.teacher import read_scores_csv

    lines = []
    corrupted = set((load_manifest(data / "labels" / "train_coarse") or {"corrupted": []})["corrupted"])
    clean_dir, coarse_dir = data / "labels" / "train", data / "labels" / "train_coarse"
    ids = sorted(p.stem for p in coarse_dir.glob("*.png"))
    if ids:
        num_classes = int(max(read_mask(clean_dir / f"{i}.png").max() for i in ids)) + 1
        iou = {
            i: float(
                per_image_iou(
                    torch.from_numpy(np.array(read_mask(coarse_dir / f"{i}.png"))).long()[None],
                    torch.from_numpy(np.array(read_mask(clean_dir / f"{i}.png"))).long()[None],
                    num_classes,
                )[0]
            )
            for i in ids
        }
        bad = [iou[i] for i in ids if i in corrupted]
        lines.append(
            f"coarse labels: {len(bad)} of {len(ids)} training masks corrupted; per-image IoU against the clean "
            f"masks: {_mean_median(np.array(bad))} over the corrupted ones ({np.mean(list(iou.values())):.3f} "
            "over all)"
        )
    if "reweight" in runs and (runs["reweight"].parent / "teacher_scores.csv").is_file():
        scores = read_scores_csv(runs["reweight"].parent / "teacher_scores.csv")
        bad_w = np.array([v for k, v in scores.items() if k in corrupted])
        good_w = np.array([v for k, v in scores.items() if k not in corrupted])
        ratio = f", ratio of means {np.mean(bad_w) / np.mean(good_w):.2f}" if len(bad_w) and len(good_w) else ""
        lines.append(f"teacher weights (BFmIoU): corrupted {_mean_median(bad_w)}; clean {_mean_median(good_w)}{ratio}")
    metrics = runs["nlkd"].parent / "metrics.jsonl" if "nlkd" in runs else None
    if metrics is not None and metrics.is_file():
        records = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
        ratios = [
            (r["epoch"], r["w_student_coarse"] / r["w_student_clean"])
            for r in records
            if r.get("w_student_clean") and "w_student_coarse" in r
        ]
        if ratios:
            lo, hi = min(v for _, v in ratios), max(v for _, v in ratios)
            lines.append(
                f"nlkd student weights, corrupted / clean: {lo:.2f}–{hi:.2f} over epochs "
                f"{ratios[0][0]}–{ratios[-1][0]} (λ > 0)"
            )
    return "\n".join(lines)


def _comparison_png(runs: dict[str, Path], data: Path, out_png: Path, n: int = 4) -> None:
    from nlkd.plots import prediction_grid

    models = {m: model_from_checkpoint(p)[0] for m, p in runs.items()}
    cfg_info = model_from_checkpoint(next(iter(runs.values())))
    size = tuple(cfg_info[1].data.size)
    ds = FolderDataset(data, "test", info=cfg_info[2], size=size)
    rows = []
    with torch.no_grad():
        for i in range(min(n, len(ds))):
            item = ds[i]
            preds = {m: model(item["image"][None]).argmax(1)[0].numpy() for m, model in models.items()}
            rows.append({"image": ds.get_image(i), "target": item["mask"].numpy(), "preds": preds})
    prediction_grid(
        rows,
        out_png,
        cfg_info[2].palette,
        cfg_info[2].ignore_index,
        title="clean test images: ground truth and each method's prediction",
    )


def _weights_png(run: Path, data: Path, out_png: Path) -> None:
    from nlkd.plots import weight_histogram
    from nlkd.teacher import read_scores_csv

    scores = read_scores_csv(run / "teacher_scores.csv")
    corrupted = set((load_manifest(data / "labels" / "train_coarse") or {"corrupted": []})["corrupted"])
    groups = {
        "corrupted annotations": np.array([v for k, v in scores.items() if k in corrupted]),
        "clean annotations": np.array([v for k, v in scores.items() if k not in corrupted]),
    }
    weight_histogram(groups, out_png, "teacher weight (BFmIoU) per training image")


#: ``--quick``: 16 / 8 / 8 images at 32x48 (the tests' size) instead of 160 / 40 / 40 at 96x128.
QUICK_DATA = {"n_train": 16, "n_val": 8, "n_test": 8, "size": (32, 48)}


def run_demo(
    out: Path, epochs: int = 12, seed: int = 0, log: Any = print, quick: bool = False
) -> dict[str, dict[str, Any]]:
    """Run the whole demo under ``out``; returns test metrics per method and writes ``results.md``.

    ``quick``: a tiny data set and a ResNet-18 U-Net (seconds per epoch; for the tests, not for results)."""
    data = out / "data"
    if not (data / "dataset.yaml").is_file():
        make_synthetic(data, seed=seed, **(QUICK_DATA if quick else {}))  # type: ignore[arg-type]
    results: dict[str, dict[str, Any]] = {}
    runs: dict[str, Path] = {}
    teacher = None
    for method in METHODS:
        cfg = _config(method, data, out, epochs, seed, teacher)
        if quick:
            cfg.data.size, cfg.batch_size, cfg.model.encoder = list(QUICK_DATA["size"]), 4, "resnet18"
        log(f"== {method}: training {epochs} epochs -> {cfg.out}")
        train(cfg, resume=True, log=log)
        runs[method] = Path(cfg.out) / "last.pt"
        if method == "baseline":
            teacher = runs[method]
        model, _, info = model_from_checkpoint(runs[method])
        test = FolderDataset(data, "test", info=info, size=tuple(cfg.data.size))
        results[method] = evaluate(model, test, tolerance=cfg.eval_tolerance)
    table = format_table(results) + "\n" + format_diagnostics(data, runs)
    _comparison_png(runs, data, out / "predictions.png")
    _weights_png(out / "reweight", data, out / "teacher_weights.png")
    detail = {m: {k: r[k] for k in ("miou", "bf", "pixel_accuracy")} for m, r in results.items()}
    atomic_write_text(out / "results.md", f"```\n{table}\n```\n\n{json.dumps(detail, indent=2)}\n")
    log(table)
    log(f"pictures: {out / 'predictions.png'}, {out / 'teacher_weights.png'}; table: {out / 'results.md'}")
    return results
