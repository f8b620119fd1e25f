"""Evaluate a model on a data set: dataset mIoU (one confusion matrix), mean per-image BF, pixel
accuracy and per-class IoU. Under ``torchrun`` each process evaluates its share and the sums are
all-reduced, so every process returns the same numbers."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from nlkd.data.folder import FolderDataset, make_loader
from nlkd.metrics import SegmentationMetrics

__all__ = ["evaluate", "format_report"]


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
    """Metrics of ``model`` (network outputs resized to the labels when ``full_resolution``)."""
    info = dataset.info
    device = torch.device(device)
    metrics = SegmentationMetrics(info.num_classes, info.ignore_index, tolerance, device=device)
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
        metrics.update(logits.argmax(1), target)
    model.train(was_training)
    if world_size > 1:
        metrics.all_reduce()
    out = metrics.compute()
    out["class_names"] = list(info.class_names)
    return out


def format_report(result: dict[str, object], title: str = "") -> str:
    """A human-readable table: overall metrics, then IoU per class."""
    lines = [title] if title else []
    lines.append(
        f"mIoU {100 * float(result['miou']):.2f}  BF {100 * float(result['bf']):.2f}  "
        f"pixel acc {100 * float(result['pixel_accuracy']):.2f}  ({result['n_images']} images)"
    )
    names = result.get("class_names") or []
    for name, iou in zip(names, result["per_class_iou"]):  # type: ignore[arg-type]
        lines.append(f"  {name:<20s} {'   n/a' if iou != iou else f'{100 * iou:6.2f}'}")
    return "\n".join(lines)
