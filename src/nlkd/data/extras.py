"""Per-image maps delivered with each training item, under the item's own augmentation.

A strategy names the maps it needs (``Strategy.needs_extras``, e.g. ``("fine_mask",)``); the loop
looks each name up in :data:`EXTRA_PROVIDERS`, attaches the :class:`ExtraMap` to the training set
(:meth:`nlkd.data.folder.FolderDataset.add_extra`), and the batches carry them as
``batch["extras"][name]``: label maps (B, H, W) int64, probability maps (B, C, H, W) float32.

An :class:`ExtraMap` (defined beside the data set that carries it, in :mod:`nlkd.data.folder`) is a kind
plus an index -> array function at the data set's resolution, so any per-image array (a folder of masks,
a cache of teacher probabilities, ...) plugs in. Providers::

    @register_extra("teacher_prob")
    def teacher_prob(cfg: TrainConfig, dataset: FolderDataset, device: torch.device) -> ExtraMap: ...
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from nlkd.config import TrainConfig
from nlkd.data.folder import ExtraMap, FolderDataset
from nlkd.data.transforms import resize_mask
from nlkd.errors import DataError
from nlkd.io import read_mask
from nlkd.noise import fine_label_dir

__all__ = ["EXTRA_PROVIDERS", "ExtraMap", "fine_masks", "label_maps", "register_extra"]


Provider = Callable[[TrainConfig, FolderDataset, torch.device], ExtraMap]
#: name -> provider building the map for a training set (the loop calls it for ``needs_extras``).
EXTRA_PROVIDERS: dict[str, Provider] = {}


def register_extra(name: str) -> Callable[[Provider], Provider]:
    """Decorator: make ``name`` available as a ``needs_extras`` entry."""

    def add(fn: Provider) -> Provider:
        EXTRA_PROVIDERS[name] = fn
        return fn

    return add


def label_maps(dataset: FolderDataset, folder: str | os.PathLike[str]) -> ExtraMap:
    """The ``folder/<id>.png`` class maps of ``dataset``'s images, resized like its masks (nearest) and
    held in memory as uint8.

    Raises:
        DataError: a file is missing or unreadable, its size differs from the image's mask, or it holds
            values outside the data set's classes.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: label folder not found")

    def load(index: int) -> np.ndarray:
        sample = dataset.samples[index]
        path = folder / f"{sample.id}.png"
        if not path.is_file():
            raise DataError(f"{path}: no such mask (the image {sample.id!r} of {dataset.split!r} needs one)")
        mask = read_mask(path)
        own = dataset.get_full_mask(index)
        if mask.shape != own.shape:
            raise DataError(f"{path}: {mask.shape[0]}×{mask.shape[1]} (H×W) differs from {sample.mask_path}")
        dataset.info.check_mask(mask, path)
        mask = mask.astype(np.uint8, copy=False)
        return resize_mask(mask, dataset.size) if dataset.size is not None else mask

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        maps = list(pool.map(load, range(len(dataset))))
    for m in maps:
        m.flags.writeable = False
    return ExtraMap("label", maps.__getitem__)


@register_extra("fine_mask")
def fine_masks(cfg: TrainConfig, dataset: FolderDataset, device: torch.device) -> ExtraMap:
    """The fine masks of a label folder written by ``nlkd corrupt`` (its manifest names their folder)."""
    del device
    label_dir = Path(cfg.data.root) / "labels" / (cfg.data.labels or cfg.data.train_split)
    return label_maps(dataset, fine_label_dir(label_dir))
