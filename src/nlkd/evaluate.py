"""Evaluate a model on a data set: dataset mIoU (one confusion matrix), mean per-image BF, pixel
accuracy, per-class IoU and BF (:class:`nlkd.metrics.SegmentationMetrics`), plus where the errors are:
BF at θ = 1 and 2 px and the trimap mIoU in the 3-px band around the true boundaries vs the interior
(:class:`nlkd.metrics.BoundaryMetrics`). Under ``torchrun`` each process evaluates its share and the
sums are all-reduced, so every process returns the same numbers."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from nlkd.data.folder import FolderDataset, make_loader
from nlkd.metrics import BoundaryMetrics, SegmentationMetrics

__all__ = ["BAND_RADIUS", "BOUNDARY_KEYS", "BOUNDARY_TOLERANCES", "evaluate", "format_report"]

BOUNDARY_TOLERANCES = (1.0, 2.0)  # BF θ in px at the evaluated resolution
BAND_RADIUS = 3.0  # trimap band: pixels closer than 3 px to a true boundary pixel
#: The keys :func:`evaluate` adds from :class:`BoundaryMetrics` (``nlkd train`` logs them as ``val_<key>``).
BOUNDARY_KEYS = ("bf_1", "bf_2", "miou_band", "miou_interior", "band_share")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: FolderDataset,
    device: torch.device | str = "cpu",
    tolerance: float = 2.0,
    batch_size: int = 16,
    rank: int = 0,
    world_size: int = 1,
    full_resolution: bool = False,
) -> dict[str, object]:
    """Metrics of ``model`` (network outputs resized to the labels when ``full_resolution``): ``miou``,
    ``per_class_iou``, ``pixel_accuracy``, ``bf`` and ``per_class_bf`` (at ``tolerance``, also returned),
    ``n_images``, ``class_names`` and :data:`BOUNDARY_KEYS` (fractions; NaN where undefined)."""
    info = dataset.info
    device = torch.device(device)
    metrics = SegmentationMetrics(info.num_classes, info.ignore_index, tolerance, device=device)
    boundary = BoundaryMetrics(info.num_classes, info.ignore_index, BOUNDARY_TOLERANCES, BAND_RADIUS, device)
    shard = dataset if world_size == 1 else Subset(dataset, list(range(rank, len(dataset), world_size)))
    was_training = model.training
    model.eval()
    for batch in make_loader(shard, batch_size=batch_size if not full_resolution else 1, shuffle=False, seed=0):
        logits = model(batch["image"].to(device))
        if full_resolution:
            idx = int(batch["index"][0])
            target = torch.from_numpy(dataset.get_full_mask(idx).astype(np.int64)).unsqueeze(0).to(device)
            logits = nn.functional.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        else:
            target = batch["mask"].to(device)
        pred = logits.argmax(1)
        metrics.update(pred, target)
        boundary.update(pred, target)
    model.train(was_training)
    if world_size > 1:
        metrics.all_reduce()
        boundary.all_reduce()
    out = {**metrics.compute(), **boundary.compute()}
    out["class_names"] = list(info.class_names)
    return out


def _percent(x: object) -> str:
    v = float(x)  # type: ignore[arg-type]
    return "   n/a" if v != v else f"{100 * v:6.2f}"


def format_report(result: dict[str, object], title: str = "") -> str:
    """A human-readable table (percent): overall metrics, then IoU and BF per class, each BF with its
    tolerance in pixels (``BF@2px``)."""
    lines = [title] if title else []
    bf = f"BF@{float(result.get('tolerance', 2.0)):g}px"  # type: ignore[arg-type]
    lines.append(
        f"mIoU {100 * float(result['miou']):.2f}  {bf} {100 * float(result['bf']):.2f}  "
        f"pixel acc {100 * float(result['pixel_accuracy']):.2f}  ({result['n_images']} images)"
    )
    if "miou_band" in result:
        lines.append(
            f"BF@1px {100 * float(result['bf_1']):.2f}  BF@2px {100 * float(result['bf_2']):.2f}  "
            f"mIoU within {BAND_RADIUS:g} px of the true boundaries {100 * float(result['miou_band']):.2f}, "
            f"elsewhere {100 * float(result['miou_interior']):.2f}"
        )
    names = result.get("class_names") or []
    class_bf = result.get("per_class_bf") or [float("nan")] * len(names)  # type: ignore[arg-type]
    lines.append(f"  {'class':<20s} {'IoU':>6s} {bf:>7s}")
    for name, iou, cbf in zip(names, result["per_class_iou"], class_bf):  # type: ignore[arg-type]
        lines.append(f"  {name:<20s} {_percent(iou)}  {_percent(cbf)}")
    return "\n".join(lines)
