"""Out-of-fold teachers: score every annotation with a teacher that never trained on it.

    nlkd score --data ROOT --split train --labels train_coarse --folds 5 --epochs 30 --out oof.csv
    nlkd audit --data ROOT --split train --labels train_coarse --folds 5 --checkpoint T --out audit/

The split's images are dealt into ``k`` folds (:func:`assign_folds`: ids sorted, shuffled by ``seed``,
dealt round-robin, so fold sizes differ by at most one). Teacher ``f`` is trained by
:func:`nlkd.train.train` on the other ``k − 1`` folds, unchanged: each fold gets a data root of symlinks
under ``out_dir/fold_<f>/data`` holding ``images|labels/fold_train`` (the training ids),
``images|labels/fold_heldout`` (fold ``f``) and the validation split (linked whole), so the loop sees
an ordinary folder data set. Teachers are trained with the baseline strategy (a teacher needs no
teacher) and judged by their ``last.pt`` (no selection on any score). A fold whose run already exists
is resumed or reused, so an interrupted ``--folds`` run continues where it stopped.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from nlkd.config import StrategyConfig, TrainConfig
from nlkd.data.info import DatasetInfo
from nlkd.errors import ConfigError, NLKDError
from nlkd.io import atomic_write_text
from nlkd.teacher import ScoreTable, score_dataset

__all__ = ["assign_folds", "fold_teachers", "out_of_fold_scores", "train_fold_teachers"]

TRAIN, HELDOUT = "fold_train", "fold_heldout"
FOLDS_CSV = "folds.csv"


def assign_folds(ids: Sequence[str], k: int, seed: int = 0) -> dict[str, int]:
    """Deterministic fold of every id: sorted ids, permuted by ``seed``, dealt round-robin into ``k``.

    >>> assign_folds(["c", "a", "b", "d"], 2, seed=0) == assign_folds(["d", "b", "a", "c"], 2, seed=0)
    True
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= len(ids):
        raise ConfigError(f"--folds must be an int in 2..{len(ids)} (the number of images), got {k!r}")
    ordered = sorted(ids)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    return {ordered[j]: int(r % k) for r, j in enumerate(perm)}


def _link_dir(folder: Path, files: Sequence[Path]) -> None:
    """Make ``folder`` hold exactly one symlink per file (same name), replacing what was there."""
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for f in files:
        os.symlink(f.resolve(), folder / f.name)


def _link_path(link: Path, target: Path) -> None:
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target.resolve(), link)


def _check_assignment(out_dir: Path, folds: dict[str, int]) -> None:
    """Write ``out_dir/folds.csv``, or refuse when an earlier one there differs (its runs would be stale)."""
    text = "id,fold\n" + "".join(f"{i},{f}\n" for i, f in sorted(folds.items()))
    path = out_dir / FOLDS_CSV
    if path.is_file() and path.read_text(encoding="utf-8") != text:
        raise NLKDError(
            f"{path} holds another fold assignment (other images, k or seed); its fold teachers do not "
            "fit: remove the folder or choose another one"
        )
    atomic_write_text(path, text)


def _fold_config(cfg: TrainConfig, root: Path, run: Path) -> TrainConfig:
    """The teacher config of one fold: ``cfg`` on the fold's linked data root, baseline strategy."""
    c = copy.deepcopy(cfg)
    c.data.root, c.data.train_split, c.data.labels = str(root), TRAIN, None
    c.strategy, c.out = StrategyConfig(), str(run)
    return c


def train_fold_teachers(
    cfg: TrainConfig, k: int, out_dir: Path, *, log: Callable[[str], None] = print
) -> tuple[dict[str, int], list[Path]]:
    """Train (or resume, or reuse) the ``k`` fold teachers of the split ``cfg.data.root`` /
    ``cfg.data.train_split`` with labels ``cfg.data.labels``; returns ``(fold of each id, last.pt
    of each fold)``. Seeds, model, epochs, size etc. are ``cfg``'s."""
    from nlkd.data.folder import list_pairs
    from nlkd.data.validate import check_split
    from nlkd.runtime import dataset_info
    from nlkd.train import train

    d = cfg.data
    if d.format != "folder":
        raise ConfigError(f"--folds needs the folder layout (ROOT/images, ROOT/labels), got format {d.format!r}")
    if d.val_split in (TRAIN, HELDOUT):
        raise ConfigError(f"data.val_split {d.val_split!r} clashes with the fold split names; rename it")
    info = dataset_info(cfg)
    check_split(d.root, d.train_split, info.num_classes, info.ignore_index, d.labels)
    pairs = list_pairs(d.root, d.train_split, d.labels)
    folds = assign_folds([p.id for p in pairs], k, cfg.seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_assignment(out_dir, folds)
    src = Path(d.root)
    checkpoints = []
    for f in range(k):
        root, run = out_dir / f"fold_{f}" / "data", out_dir / f"fold_{f}" / "run"
        for split, keep in (
            (TRAIN, [p for p in pairs if folds[p.id] != f]),
            (HELDOUT, [p for p in pairs if folds[p.id] == f]),
        ):
            _link_dir(root / "images" / split, [p.image_path for p in keep])
            _link_dir(root / "labels" / split, [p.mask_path for p in keep])
        val_labels = d.val_labels or d.val_split
        _link_path(root / "images" / d.val_split, src / "images" / d.val_split)
        _link_path(root / "labels" / val_labels, src / "labels" / val_labels)
        if (src / "dataset.yaml").is_file():
            _link_path(root / "dataset.yaml", src / "dataset.yaml")
        n_train = sum(v != f for v in folds.values())
        resume = (run / "last.pt").is_file()
        log(f"fold {f + 1}/{k}: {'resuming' if resume else 'training'} a teacher on {n_train} images -> {run}")
        train(_fold_config(cfg, root, run), resume=resume, log=lambda s, f=f: log(f"fold {f + 1}/{k}: {s}"))
        checkpoints.append(run / "last.pt")
    return folds, checkpoints


def fold_teachers(
    checkpoints: Sequence[Path],
    folds: dict[str, int],
    device: torch.device | str = "cpu",
    info: DatasetInfo | None = None,
):
    """:class:`nlkd.audit.Teachers` routing each image to the fold teacher that did not train on it;
    with ``info`` (the data set's classes) a checkpoint of other classes is refused."""
    from nlkd.audit import Teachers
    from nlkd.checkpoint import check_matches_data, model_from_checkpoint

    models = []
    for c in checkpoints:
        model, _, ckpt_info = model_from_checkpoint(c, device)
        if info is not None:
            check_matches_data(ckpt_info, info, c, ignore_index=False)
        models.append(model)
    return Teachers(models, checkpoints, fold_of=folds, device=device)


def out_of_fold_scores(
    cfg: TrainConfig,
    k: int,
    out_dir: Path,
    *,
    tolerance: float = 2.0,
    batch_size: int = 16,
    log: Callable[[str], None] = print,
) -> ScoreTable:
    """Train the ``k`` fold teachers (see :func:`train_fold_teachers`) and score every image of the
    split with the one that never saw it: BF, IoU, BFmIoU at ``cfg.data.size``, in sorted-id order
    (the dataset order of ``nlkd score``). Also writes ``out_dir/folds.csv`` (id, fold)."""
    from nlkd.checkpoint import model_from_checkpoint
    from nlkd.data.folder import FolderDataset
    from nlkd.runtime import dataset_info, resolve_device

    folds, checkpoints = train_fold_teachers(cfg, k, out_dir, log=log)
    info, device = dataset_info(cfg), resolve_device(cfg.device)
    size = tuple(cfg.data.size) if cfg.data.size else None
    by_id: dict[str, tuple[float, float]] = {}
    for f, ckpt in enumerate(checkpoints):
        model = model_from_checkpoint(ckpt, device)[0]
        held = FolderDataset(Path(out_dir) / f"fold_{f}" / "data", HELDOUT, info=info, size=size, cache=False)
        table = score_dataset(model, held, tolerance, device, batch_size)
        by_id.update({i: (b, u) for i, b, u in zip(table.ids, table.bf, table.iou)})
    ids = sorted(folds)
    bf, iou = (np.array([by_id[i][j] for i in ids]) for j in (0, 1))
    return ScoreTable(ids, bf, iou, (bf + iou) / 2)
