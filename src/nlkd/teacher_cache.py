"""Teacher probability maps, computed once per run and read from disk at every step.

Pixel-level strategies (``band_kd``, ``nlkd_pixel``, ``relax`` with ``relax_where=disagree``) need the
frozen teacher's per-pixel class probabilities for every training image. Running the teacher at every
step would double the cost of a step, so the maps are computed once, un-augmented at the data set's
resolution, quantised to uint8 (p ≈ q / 255, a step of 0.004) and written to ``teacher_prob.npy`` in
the run folder: N·C·H·W bytes (50 MB for CamVid's 367 images, 11 classes, 96×128). Training reads the
file as a memory map, so resident memory stays bounded by the OS page cache whatever the data set's
size; the data pipeline moves each map with its image's augmentation (``extras["teacher_prob"]``).

Like the teacher scores (:mod:`nlkd.teacher`), the cache is keyed (teacher file hash, image files,
resolution, classes; ``teacher_prob.json``): a cache whose key differs is reported as stale and
recomputed, never silently reused.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from nlkd.config import TrainConfig
from nlkd.data.extras import ExtraMap, register_extra
from nlkd.data.folder import FolderDataset, make_loader
from nlkd.errors import ConfigError, DataError
from nlkd.io import atomic_write_text, file_digest, new_file_mode
from nlkd.progress import progress

__all__ = [
    "CACHE_NAME",
    "META_NAME",
    "TEACHER_PROB",
    "TeacherProbCache",
    "cached_teacher_probs",
    "prob_cache_key",
    "teacher_prob_extra",
    "write_prob_cache",
]

TEACHER_PROB = "teacher_prob"  # the extras name: (B, C, H, W) float probabilities in each batch
CACHE_NAME = "teacher_prob.npy"
META_NAME = "teacher_prob.json"
_LEVELS = 255  # uint8 quantisation: p = q / 255


def prob_cache_key(teacher: Path, dataset: FolderDataset) -> str:
    """What the cached maps depend on: the teacher's weights, the image files, the resolution, C."""
    h = hashlib.sha256(file_digest(teacher).encode())
    for s in dataset.samples:
        st = os.stat(s.image_path)
        h.update(f"{s.id}:{Path(s.image_path).resolve()}:{st.st_size}:{st.st_mtime_ns};".encode())
    h.update(f"{dataset.size}|{dataset.info.num_classes}|uint8/{_LEVELS}".encode())
    return h.hexdigest()[:20]


@torch.no_grad()
def write_prob_cache(
    model: nn.Module, dataset: FolderDataset, path: Path, device: torch.device, batch_size: int = 8
) -> None:
    """Run ``model`` over ``dataset`` (no augmentation) and write its softmax maps to ``path`` as an
    (N, C, H, W) uint8 ``.npy``, batch by batch through a memory map (atomic: temp file + rename)."""
    if dataset.size is None:
        raise ConfigError("teacher probability maps need a fixed training size: pass --size HxW")
    if getattr(dataset, "train", False):
        dataset = copy.copy(dataset)
        dataset.train = False
    c = dataset.info.num_classes
    shape = (len(dataset), c, *dataset.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = new_file_mode(path)  # as open() would give, not mkstemp's 0600
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, mode)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        model.eval()
        loader = make_loader(dataset, batch_size=batch_size, shuffle=False, seed=0)
        for batch in progress(loader, "teacher maps", unit="batch"):
            logits = model(batch["image"].to(device)).float()
            if logits.shape[1] != c:
                raise DataError(f"teacher predicts {logits.shape[1]} classes, the data set has {c}")
            q = logits.softmax(1).mul_(_LEVELS).round_().to(torch.uint8).cpu().numpy()
            out[batch["index"].numpy()] = q
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class TeacherProbCache:
    """Read access to a written cache: ``get(i)`` -> (C, H, W) float32 probabilities of image ``i``.

    The file is opened lazily as a read-only memory map in each process (data-loader workers included);
    pickling carries the path, not the data.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._maps: np.ndarray | None = None

    @property
    def maps(self) -> np.ndarray:
        if self._maps is None:
            self._maps = np.load(self.path, mmap_mode="r")
        return self._maps

    def __len__(self) -> int:
        return len(self.maps)

    def get(self, index: int) -> np.ndarray:
        return self.maps[index].astype(np.float32) * np.float32(1.0 / _LEVELS)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_maps": None}


def _cached_meta(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def cached_teacher_probs(
    dataset: FolderDataset,
    *,
    teacher: str | None,
    cache_dir: Path,
    device: torch.device,
    log: Any = print,
) -> TeacherProbCache:
    """The teacher's probability maps of ``dataset`` from ``cache_dir``, computed first when absent or stale."""
    if teacher is None:
        raise DataError("this strategy needs teacher probability maps: pass --teacher CKPT")
    if not Path(teacher).is_file():
        raise DataError(f"{teacher}: teacher checkpoint not found")
    if dataset.size is None:
        raise ConfigError("teacher probability maps need a fixed training size: pass --size HxW")
    data, meta_path = cache_dir / CACHE_NAME, cache_dir / META_NAME
    key = prob_cache_key(Path(teacher), dataset)
    meta = _cached_meta(meta_path)
    shape = [len(dataset), dataset.info.num_classes, *dataset.size]
    if meta is not None and meta.get("key") == key and data.is_file():
        try:
            cache = TeacherProbCache(data)
            if list(cache.maps.shape) == shape and cache.maps.dtype == np.uint8:
                log(f"teacher maps: reusing {data}")
                return cache
        except (OSError, ValueError):
            pass  # damaged: recompute
    if meta is not None or data.is_file():
        log(f"teacher maps: cache {data} is stale (teacher, images or size changed); recomputing")
    from nlkd.checkpoint import model_from_checkpoint  # local: checkpoint imports models (heavy)

    model, _, info = model_from_checkpoint(teacher, device)
    if info.num_classes != dataset.info.num_classes:
        raise DataError(f"{teacher}: teacher has {info.num_classes} classes, the data set {dataset.info.num_classes}")
    write_prob_cache(model, dataset, data, device)
    atomic_write_text(meta_path, json.dumps({"key": key, "shape": shape, "dtype": "uint8", "scale": 1 / _LEVELS}))
    log(f"teacher maps: computed for {len(dataset)} images -> {data} ({np.prod(shape) / 2**20:.0f} MiB)")
    return TeacherProbCache(data)


@register_extra(TEACHER_PROB)
def teacher_prob_extra(cfg: TrainConfig, dataset: FolderDataset, device: torch.device) -> ExtraMap:
    """``extras["teacher_prob"]`` for a training run: the maps of ``cfg.strategy.teacher``, cached in
    ``cfg.out``. Under DDP rank 0 computes the cache and the other processes then open the same file."""
    distributed = dist.is_available() and dist.is_initialized()
    main = not distributed or dist.get_rank() == 0
    cache = None
    if main:
        cache = cached_teacher_probs(dataset, teacher=cfg.strategy.teacher, cache_dir=Path(cfg.out), device=device)
    if distributed:
        dist.barrier()
    if cache is None:
        cache = TeacherProbCache(Path(cfg.out) / CACHE_NAME)
    return ExtraMap("prob", cache.get)
