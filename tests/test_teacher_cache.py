"""nlkd.teacher_cache: teacher probability maps computed once, keyed, stale caches recomputed."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SMALL_ENCODER, tiny_config
from nlkd.checkpoint import build_model, model_from_checkpoint
from nlkd.data.folder import FolderDataset
from nlkd.data.info import load_dataset_info
from nlkd.errors import ConfigError, DataError
from nlkd.io import save_checkpoint
from nlkd.teacher_cache import CACHE_NAME, cached_teacher_probs, prob_cache_key


def _teacher(data: Path, path: Path, seed: int) -> Path:
    """An untrained small U-Net checkpoint (random weights are a teacher like any other here)."""
    from nlkd.checkpoint import make_checkpoint

    cfg = tiny_config(data, path.parent, **{"model.encoder": SMALL_ENCODER, "seed": seed})
    info = load_dataset_info(data)
    torch.manual_seed(seed)
    save_checkpoint(make_checkpoint(cfg, info, [build_model(cfg, info)], 0), path)
    return path


@pytest.fixture(scope="module")
def teachers(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("prob_teachers")
    return _teacher(tiny_data, root / "t0.pt", 0), _teacher(tiny_data, root / "t1.pt", 1)


def _dataset(root: Path, size: tuple[int, int] | None = (32, 48), train: bool = True) -> FolderDataset:
    return FolderDataset(root, "train", "train_coarse", info=load_dataset_info(root), size=size, train=train, seed=0)


def test_maps_equal_the_teachers_softmax_quantised(tiny_data: Path, teachers: tuple[Path, Path], tmp_path: Path):
    ds = _dataset(tiny_data)
    logs: list[str] = []
    cache = cached_teacher_probs(ds, teacher=str(teachers[0]), cache_dir=tmp_path, device="cpu", log=logs.append)
    assert logs[-1].startswith("teacher maps: computed for 16 images")
    model, _, _ = model_from_checkpoint(teachers[0])
    plain = _dataset(tiny_data, train=False)
    with torch.no_grad():
        for i in (0, 7, 15):  # un-augmented images, whatever the training set's augmentation
            p = model(plain[i]["image"][None]).softmax(1)[0].numpy()
            got = cache.get(i)
            assert got.shape == p.shape and got.dtype == np.float32
            assert np.abs(got - p).max() <= 0.5 / 255 + 1e-6
    assert (tmp_path / CACHE_NAME).stat().st_size < 16 * ds.info.num_classes * 32 * 48 + 1024  # a byte a value
    # pickling (data-loader workers) carries the path, not the maps
    assert len(pickle.dumps(cache)) < 1000
    assert np.array_equal(pickle.loads(pickle.dumps(cache)).get(3), cache.get(3))


def test_cache_is_reused_or_recomputed_when_stale(tiny_data: Path, teachers: tuple[Path, Path], tmp_path: Path):
    t0, t1 = teachers
    ds = _dataset(tiny_data)
    first = cached_teacher_probs(ds, teacher=str(t0), cache_dir=tmp_path, device="cpu", log=lambda m: None)
    a = first.get(2).copy()
    logs: list[str] = []
    cached_teacher_probs(ds, teacher=str(t0), cache_dir=tmp_path, device="cpu", log=logs.append)
    assert logs == [f"teacher maps: reusing {tmp_path / CACHE_NAME}"]
    logs.clear()
    other = cached_teacher_probs(ds, teacher=str(t1), cache_dir=tmp_path, device="cpu", log=logs.append)
    assert (
        logs[0]
        == f"teacher maps: cache {tmp_path / CACHE_NAME} is stale (teacher, images or size changed); recomputing"
    )
    assert not np.array_equal(other.get(2), a)
    # the key covers teacher, images and size
    key = prob_cache_key(t0, ds)
    assert prob_cache_key(t1, ds) != key
    assert prob_cache_key(t0, _dataset(tiny_data, size=(16, 24))) != key
    copy = tmp_path / "copy"
    shutil.copytree(tiny_data, copy)
    image = sorted((copy / "images" / "train").iterdir())[0]
    image.write_bytes(image.read_bytes())  # same content, new mtime
    assert prob_cache_key(t0, _dataset(copy)) != prob_cache_key(t0, _dataset(tiny_data))


def test_bad_input_is_one_clear_error(tiny_data: Path, teachers: tuple[Path, Path], tmp_path: Path):
    ds = _dataset(tiny_data)
    with pytest.raises(DataError, match="pass --teacher CKPT"):
        cached_teacher_probs(ds, teacher=None, cache_dir=tmp_path, device="cpu")
    with pytest.raises(DataError, match="teacher checkpoint not found"):
        cached_teacher_probs(ds, teacher=str(tmp_path / "nope.pt"), cache_dir=tmp_path, device="cpu")
    with pytest.raises(ConfigError, match="--size"):
        cached_teacher_probs(_dataset(tiny_data, size=None), teacher=str(teachers[0]), cache_dir=tmp_path, device="cpu")
