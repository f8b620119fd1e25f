"""TensorBoard view of a training run (``log: tensorboard``); ``metrics.jsonl`` stays the source of truth.

Each finished epoch's record (the line ``metrics.jsonl`` gets) is written as scalars under ``RUN/tb/`` at
step = epoch (from 1): tag ``<group>/<key>`` with the record's key unchanged, group ``train`` (loss, lr,
seconds, λ), ``val`` (every ``val_*`` key) or ``weights`` (``w_*`` keys, e.g. ``w_teacher_clean`` /
``w_teacher_coarse``, and the corrupted/clean separation figures). Every ``log_images_every`` epochs, and
after the last one, an image grid of the first validation images: photo | annotation | prediction, with
the data set's palette. A resumed run drops what an interrupted run logged past its last checkpoint
(``purge_step``) and appends. tensorboard is an optional dependency (``pip install nlkd[io]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nlkd.data.info import DatasetInfo
from nlkd.data.transforms import denormalize
from nlkd.errors import NLKDError
from nlkd.plots import colorize

__all__ = ["GRID_IMAGES", "TensorBoardLog", "prediction_strip", "scalar_tag"]

GRID_IMAGES = 4  # validation images in the grid
_WEIGHT_KEYS = ("weight_auroc", "weight_ratio_corrupted_clean", "loss_share_corrupted_pixels")


def scalar_tag(key: str) -> str:
    """TensorBoard tag of a metrics.jsonl key: ``val_miou -> val/val_miou``, ``w_student -> weights/w_student``."""
    if key.startswith("val_"):
        return f"val/{key}"
    if key.startswith("w_") or key in _WEIGHT_KEYS:
        return f"weights/{key}"
    return f"train/{key}"


def prediction_strip(
    image: torch.Tensor, mask: np.ndarray, pred: np.ndarray, info: DatasetInfo, gap: int = 2
) -> np.ndarray:
    """One grid row ``(H, 3W + 2·gap, 3)`` uint8: photo | annotation | prediction (white gaps).

    Args:
        image: ``(3, H, W)`` normalised float image (as the data set yields it).
        mask, pred: ``(H, W)`` class indices (the annotation may hold ``info.ignore_index``: black).
    """
    photo = denormalize(image).permute(1, 2, 0).numpy()
    white = np.full((photo.shape[0], gap, 3), 255, dtype=np.uint8)
    ann = colorize(mask, info.palette, info.ignore_index)
    return np.concatenate([photo, white, ann, white, colorize(pred, info.palette, None)], axis=1)


class TensorBoardLog:
    """Writes scalars per epoch and prediction grids to ``out/tb`` (rank 0 only).

    Args:
        out: the run folder.
        every: image grid every this many epochs (and after the last).
        info: classes and palette of the data set.
        start_epoch: the first epoch this process trains (from 0); > 0 when resuming.
    """

    def __init__(self, out: Path, every: int, info: DatasetInfo, start_epoch: int = 0) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise NLKDError(
                "log=tensorboard needs the tensorboard package: pip install 'nlkd[io]' (or pip install tensorboard)"
            ) from None
        self.every, self.info = every, info
        self.writer = SummaryWriter(str(Path(out) / "tb"), purge_step=start_epoch + 1 if start_epoch else None)

    def epoch(self, record: dict[str, Any], last: bool, model: nn.Module, val_ds: Any, device: torch.device) -> None:
        """Log ``record`` (a metrics.jsonl line) at step ``record["epoch"]``; the grid when it is due."""
        step = int(record["epoch"])
        for key, value in record.items():
            if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(scalar_tag(key), float(value), step)
        if step % self.every == 0 or last:
            self.writer.add_image("val/predictions", self._grid(model, val_ds, device), step, dataformats="HWC")
        self.writer.flush()

    def _grid(self, model: nn.Module, val_ds: Any, device: torch.device) -> np.ndarray:
        """Rows of :func:`prediction_strip` for the first validation images, padded to one width."""
        items = [val_ds[i] for i in range(min(GRID_IMAGES, len(val_ds)))]
        was_training = model.training
        model.eval()
        with torch.no_grad():  # one image at a time: at native size they may differ in size
            preds = [model(it["image"][None].to(device)).argmax(1)[0].cpu().numpy() for it in items]
        model.train(was_training)
        rows = [prediction_strip(it["image"], it["mask"].numpy(), p, self.info) for it, p in zip(items, preds)]
        width = max(r.shape[1] for r in rows)
        parts = []
        for row in rows:
            parts += [np.pad(row, ((0, 2), (0, width - row.shape[1]), (0, 0)), constant_values=255)]
        return np.concatenate(parts, axis=0)

    def close(self) -> None:
        self.writer.close()
