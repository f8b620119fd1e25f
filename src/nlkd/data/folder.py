"""Folder data sets (``ROOT/images/<split>`` + ``ROOT/labels/<labels>``) as a torch ``Dataset``.

Layout (see DESIGN.md)::

    ROOT/images/<split>/<id>.{jpg,jpeg,png,tif,tiff,bmp,webp}   (nlkd.io.IMAGE_EXTENSIONS)
    ROOT/labels/<labels or split>/<id>.png      class index per pixel (8-bit L or P PNG)

The same :class:`FolderDataset` also reads the layouts of :mod:`nlkd.data.formats` (``format=``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler, default_collate

from nlkd.data import formats
from nlkd.data.info import DatasetInfo, Sample
from nlkd.data.transforms import augment_with_maps, resize_image, resize_mask, to_tensor
from nlkd.errors import DataError
from nlkd.io import IMAGE_EXTENSIONS, read_image, read_mask

__all__ = [
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "ExtraMap",
    "FolderDataset",
    "FolderScan",
    "Sample",
    "collate",
    "format_info",
    "list_pairs",
    "make_loader",
    "scan_folder",
]

Format = Literal["folder", "cityscapes", "supervisely"]


@dataclass(frozen=True)
class ExtraMap:
    """One named per-image map of a data set.

    Attributes:
        kind: ``"label"`` — ``get(i)`` is an (H, W) integer class map (resampled nearest, padding =
            the data set's ignore index); ``"prob"`` — ``get(i)`` is a (C, H, W) float array of per-pixel
            probabilities (resampled bilinearly, padding = 0, i.e. no class).
        get: dataset index -> array at the data set's resolution (the resized, un-augmented mask's H, W).
    """

    kind: Literal["label", "prob"]
    get: Callable[[int], np.ndarray]


@dataclass
class FolderScan:
    """What is on disk for one split: ids -> image files (several = ambiguous) and ids -> mask files."""

    image_dir: Path
    mask_dir: Path
    images: dict[str, list[Path]] = field(default_factory=dict)
    masks: dict[str, Path] = field(default_factory=dict)
    skipped: list[Path] = field(default_factory=list)


def scan_folder(root: str | os.PathLike[str], split: str, labels: str | None = None) -> FolderScan:
    """List image and mask files of a split without opening them (missing folders give empty dicts).

    ``skipped`` lists the files left out that a user may have meant as data: in the image folder every
    visible file that is not an image nlkd reads (:data:`IMAGE_EXTENSIONS`), in the mask folder images
    that are not PNG (a mask saved as .jpg); nlkd's own files there (``manifest.json``) are not listed.
    """
    root = Path(root)
    scan = FolderScan(root / "images" / split, root / "labels" / (labels or split))
    for p in _visible_files(scan.image_dir):
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            scan.images.setdefault(p.stem, []).append(p)
        else:
            scan.skipped.append(p)
    for p in _visible_files(scan.mask_dir):
        if p.suffix.lower() == ".png":
            scan.masks[p.stem] = p
        elif p.suffix.lower() in IMAGE_EXTENSIONS:
            scan.skipped.append(p)
    return scan


def _visible_files(folder: Path) -> list[Path]:
    """The files of ``folder`` not starting with a dot, sorted (none when it is not a folder)."""
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and p.is_file()]


def _available(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    return f"available: {', '.join(names)}" if names else f"{folder} has no sub-folders"


def list_pairs(root: str | os.PathLike[str], split: str, labels: str | None = None) -> list[Sample]:
    """Image/mask pairs of a split in the folder layout, sorted by id.

    Raises :class:`DataError` naming the folder or file when a folder is missing, the split is
    empty, an id has two images, or an image has no mask (or a mask no image); ``nlkd validate``
    lists every problem at once.
    """
    scan = scan_folder(root, split, labels)
    for folder in (scan.image_dir, scan.mask_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found ({_available(folder.parent)})")
    if not scan.images:
        raise DataError(f"{scan.image_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    hint = f"run `nlkd validate --data {root} --split {split}` for the full list"
    dupes = [paths for paths in scan.images.values() if len(paths) > 1]
    if dupes:
        raise DataError(f"{dupes[0][0]}: {len(dupes)} ids have several images (e.g. {dupes[0][1].name}); {hint}")
    no_mask = [ps[0] for i, ps in scan.images.items() if i not in scan.masks]
    if no_mask:
        raise DataError(f"{no_mask[0]}: no mask in {scan.mask_dir} ({len(no_mask)} images without mask); {hint}")
    no_image = [p for i, p in scan.masks.items() if i not in scan.images]
    if no_image:
        raise DataError(f"{no_image[0]}: no image in {scan.image_dir} ({len(no_image)} masks without image); {hint}")
    return [Sample(i, ps[0], scan.masks[i]) for i, ps in sorted(scan.images.items())]


MaskReader = Callable[[Path], np.ndarray]
#: layout -> (pair lister, mask reader, the layout's fixed classes or None: dataset.yaml or flags say them)
_FORMATS: dict[str, tuple[Callable[..., list[Sample]], MaskReader, DatasetInfo | None]] = {
    "folder": (list_pairs, read_mask, None),
    "cityscapes": (formats.list_pairs_cityscapes, formats.read_mask_cityscapes, formats.CITYSCAPES_INFO),
    "supervisely": (formats.list_pairs_supervisely, formats.read_mask_supervisely, formats.SUPERVISELY_INFO),
}
FORMATS: tuple[str, ...] = tuple(_FORMATS)  # the data set layouts, by name (``--format``)


def format_info(format: str) -> DatasetInfo | None:
    """The classes a layout fixes (``cityscapes``, ``supervisely``), or None where the data set's own
    ``dataset.yaml`` or the flags say them (``folder``)."""
    if format not in _FORMATS:
        raise ValueError(f"format must be one of {sorted(_FORMATS)}, got {format!r}")
    return _FORMATS[format][2]


class FolderDataset(Dataset):
    """Image/mask pairs of a split, resized once, optionally cached, augmented when ``train``.

    Items are dicts: ``image`` (3, H, W) float32 (ImageNet-normalised), ``mask`` (H, W) int64,
    ``id`` str, ``index`` int. Images are resized bilinearly (antialiased), masks with nearest
    neighbour, to ``size=(H, W)`` (None keeps each file's own size). With ``cache`` every pair is
    decoded and resized once at construction and kept as uint8 (N*H*W*4 bytes), so an epoch costs only
    augmentation and tensor conversion. Training augmentation: random horizontal flip and, when
    ``scale=(lo, hi)`` is given, a random scale-crop whose padding is ``ignore_index`` (0 if None).

    Extra per-image maps (:meth:`add_extra`, e.g. the fine mask or cached teacher probabilities) come
    as ``extras`` {name: tensor} under exactly the item's augmentation.

    Randomness: :func:`make_loader` hands each item an ``(index, seed)`` pair drawn from its seeded
    ``torch.Generator``, so augmentation is reproducible whatever ``num_workers``; plain integer
    indexing draws from a generator seeded with ``seed``.

    Raises :class:`DataError` for missing/unreadable files, mismatched sizes, or mask values outside
    ``info`` (checked when a pair is first decoded; ``nlkd validate`` checks a split up front).
    """

    #: Tells :func:`make_loader` that items may be requested as ``(index, seed)``.
    seeded_indexing = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        labels: str | None = None,
        *,
        info: DatasetInfo,
        size: tuple[int, int] | None = None,
        train: bool = False,
        cache: bool = True,
        seed: int = 0,
        scale: tuple[float, float] | None = None,
        hflip: bool = True,
        format: Format = "folder",
    ) -> None:
        if format not in _FORMATS:
            raise ValueError(f"format must be one of {sorted(_FORMATS)}, got {format!r}")
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"size must be None or (H, W) with positive ints, got {size!r}")
        if scale is not None and not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be None or (lo, hi) with 0 < lo <= hi, got {scale!r}")
        list_fn, self._read_mask, _ = _FORMATS[format]
        self.root, self.split, self.labels, self.format = Path(root), split, labels, format
        self.info, self.train, self.scale, self.hflip = info, train, scale, hflip
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.samples: list[Sample] = list_fn(root, split, labels)
        self._valid = info.valid_values()
        self._fill = 0 if info.ignore_index is None else info.ignore_index
        self._rng = np.random.default_rng(seed)
        self._images: np.ndarray | list[np.ndarray] | None = None
        self._masks: np.ndarray | list[np.ndarray] | None = None
        self.extras: dict[str, ExtraMap] = {}
        if cache:
            self._fill_cache()

    @property
    def ids(self) -> list[str]:
        """Sample ids in dataset order."""
        return [s.id for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (
            f"FolderDataset({str(self.root)!r}, {self.split!r}, labels={self.labels!r}, n={len(self)}, "
            f"size={self.size}, train={self.train}, cache={self._masks is not None}, format={self.format!r})"
        )

    def _decode(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read, check and resize pair ``index``: (3, H, W) uint8 image, (H, W) uint8 mask."""
        sample = self.samples[index]
        image, mask = read_image(sample.image_path), self._read_mask(sample.mask_path)
        self.info.check_mask(mask, sample.mask_path, image.shape, sample.image_path.name)
        mask = mask.astype(np.uint8, copy=False)
        if self.size is not None:
            image, mask = resize_image(image, self.size), resize_mask(mask, self.size)
        # Channel-first from here on: see nlkd.data.transforms. Copies are writable for torch.
        return np.ascontiguousarray(image.transpose(2, 0, 1)), np.require(mask, requirements=["C", "W"])

    def _fill_cache(self) -> None:
        n = len(self)
        if self.size is not None:
            images = np.empty((n, 3, *self.size), dtype=np.uint8)
            masks = np.empty((n, *self.size), dtype=np.uint8)
        else:
            images, masks = [None] * n, [None] * n  # type: ignore[assignment]
        # PIL decoding releases the GIL: a few threads make the one-off load several times faster.
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            for i, (image, mask) in enumerate(pool.map(self._decode, range(n))):
                images[i], masks[i] = image, mask
        self._images, self._masks = images, masks

    def _pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._masks is None:
            return self._decode(index)
        return self._images[index], self._masks[index]  # type: ignore[index]

    def _index(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} samples")
        return index % n

    def get_mask(self, index: int) -> np.ndarray:
        """Mask of pair ``index`` at the dataset resolution, without augmentation: (H, W) uint8
        (read-only: it may be the cached array itself)."""
        view = self._pair(self._index(index))[1].view()
        view.flags.writeable = False
        return view

    def get_full_mask(self, index: int) -> np.ndarray:
        """Mask of pair ``index`` at the label file's own resolution: (H0, W0) uint8, read from disk."""
        return np.asarray(self._read_mask(self.samples[self._index(index)].mask_path), dtype=np.uint8)

    def get_image(self, index: int) -> np.ndarray:
        """Image of pair ``index`` at the dataset resolution, without augmentation: (H, W, 3) uint8
        (a read-only transposed view of the channel-first cache)."""
        view = self._pair(self._index(index))[0].transpose(1, 2, 0)
        view.flags.writeable = False
        return view

    def add_extra(self, name: str, extra: ExtraMap) -> None:
        """Deliver ``extra`` with every item as ``item["extras"][name]`` (augmented like the mask)."""
        self.extras[name] = extra

    def _extra_maps(self, index: int, shape: tuple[int, ...]) -> dict[str, tuple[np.ndarray, str, float]]:
        maps = {}
        for name, extra in self.extras.items():
            a = np.asarray(extra.get(index))
            if extra.kind == "prob":
                a = a.astype(np.float32, copy=False)
            if a.shape[-2:] != shape or a.ndim != (2 if extra.kind == "label" else 3):
                want = "(H, W)" if extra.kind == "label" else "(C, H, W)"
                raise DataError(f"extra map {name!r} of {self.samples[index].id!r}: {want} with (H, W) = {shape} "
                                f"expected, got {a.shape}")  # fmt: skip
            maps[name] = (a, extra.kind, self._fill if extra.kind == "label" else 0.0)
        return maps

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        """``item`` is an index, or ``(index, seed)`` to draw the augmentation from ``seed``."""
        if isinstance(item, tuple):
            index, seed = item
            rng = np.random.default_rng(seed) if self.train else self._rng
        else:
            index, rng = item, self._rng
        index = self._index(int(index))
        image, mask = self._pair(index)
        maps = self._extra_maps(index, mask.shape) if self.extras else {}
        if self.train:
            image, mask, out = augment_with_maps(
                image, mask, maps, rng, flip=self.hflip, scale=self.scale, fill=self._fill
            )
        else:
            out = {name: a for name, (a, _, _) in maps.items()}
        item = {
            "image": to_tensor(image),
            "mask": torch.from_numpy(mask).to(torch.int64),
            "id": self.samples[index].id,
            "index": index,
        }
        if self.extras:
            item["extras"] = {
                k: torch.from_numpy(np.array(a)).to(torch.int64 if maps[k][1] == "label" else torch.float32)
                for k, a in out.items()
            }
        return item


class _SeededIndices(Sampler):
    """Wraps a sampler so that it yields ``(index, seed)``: one fresh augmentation seed per item,
    drawn from ``generator`` in the main process (so independent of worker count and timing)."""

    def __init__(self, sampler: Sampler, generator: torch.Generator) -> None:
        self.sampler, self.generator = sampler, generator

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        for k, index in enumerate(self.sampler):
            yield int(index), base + k

    def __getattr__(self, name: str) -> Any:  # e.g. set_epoch of a DistributedSampler
        if "sampler" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["sampler"], name)


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch item dicts: tensors stacked (``image`` (B, 3, H, W), ``mask`` (B, H, W)), ints to an int64
    tensor (B,), nested dicts (``extras``) batched the same way, everything else (``id``) kept as a list."""
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [item[key] for item in batch]
        if isinstance(values[0], dict):  # e.g. extras: {name: tensor} -> {name: stacked}
            out[key] = collate(values)
        elif isinstance(values[0], torch.Tensor):
            shapes = sorted({tuple(v.shape) for v in values})
            if len(shapes) > 1:
                raise DataError(
                    f"cannot batch {key!r} of different shapes {shapes[:3]}: give the dataset a fixed "
                    "size=(H, W) or use batch_size=1"
                )
            out[key] = default_collate(values)  # stacks into shared memory inside workers
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            out[key] = torch.tensor(values, dtype=torch.int64)
        else:
            out[key] = values
    return out


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    drop_last: bool = False,
    sampler: Sampler | None = None,
) -> DataLoader:
    """A ``DataLoader`` whose order and augmentation follow ``seed`` alone (on CPU, any ``num_workers``).

    Shuffling and the per-item augmentation seeds come from one ``torch.Generator`` seeded with
    ``seed``; each new iteration (epoch) continues that stream, so epochs differ but reruns repeat.
    ``sampler`` (e.g. weighted) replaces the shuffle; batches are built with :func:`collate`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if sampler is not None and shuffle:
        raise ValueError("give either shuffle=True or a sampler, not both")
    generator = torch.Generator().manual_seed(seed)
    if sampler is None:
        sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    if getattr(dataset, "seeded_indexing", False):
        sampler = _SeededIndices(sampler, generator)
    # The DataLoader draws worker seeds from its own generator, and (with persistent workers) not
    # every epoch: keeping that apart makes order and augmentation independent of num_workers.
    worker_generator = torch.Generator().manual_seed(seed + 0x9E3779B9)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=drop_last,
        generator=worker_generator,
        persistent_workers=num_workers > 0,
    )
