"""Checkpoints: one dict with everything needed to rebuild a model, evaluate it, or resume training.

A checkpoint holds plain values only (tensors, numbers, strings, lists, tuples, dicts: the config as a dict,
the RNG states as tensors and lists) and is read with ``torch.load(weights_only=True)``, so a file that
carries any other pickled object is refused without running it. ``best.pt`` holds the weights, config and
data set info; ``last.pt`` adds what resuming needs (optimiser, schedule, strategy and RNG states, history).
Checkpoints of nlkd before this format (numpy RNG state) are refused with the command that converts them,
:func:`convert_checkpoint` (``nlkd convert-checkpoint OLD NEW``); it also reads with ``weights_only=True``,
allowing numpy's array and scalar types besides, so converting never runs a file's code either.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nlkd.config import TrainConfig, config_from_dict, config_to_dict
from nlkd.data.info import DatasetInfo
from nlkd.errors import DataError, NLKDError
from nlkd.io import atomic_write_bytes, checkpoint_bytes, save_checkpoint
from nlkd.models import create_model, unwrap

try:
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1
    from numpy.core import multiarray as _multiarray

__all__ = [
    "build_model",
    "check_matches_data",
    "convert_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "unwrap",
]

REQUIRED_KEYS = ("format", "config", "info", "models", "epoch")
FORMAT = "nlkd-checkpoint-1"
_MULTIARRAY = ("numpy._core.multiarray", "numpy.core.multiarray")
# what the previous format held besides plain values (numpy's RNG state tuple, numpy numbers): numpy
# arrays and scalars, under numpy 2's and numpy 1's module names; no callable that runs other code
_NUMPY_GLOBALS: list[Any] = [
    np.dtype,
    np.ndarray,
    *((f, f"{m}.{f.__name__}") for f in (_multiarray._reconstruct, _multiarray.scalar) for m in _MULTIARRAY),
    *(type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDGSUV"),
]


def build_model(cfg: TrainConfig, info: DatasetInfo, name: str | None = None) -> nn.Module:
    """Create the configured model (or ``name``, e.g. a peer network) for ``info.num_classes`` classes."""
    if name is not None and name != cfg.model.name:
        return create_model(name, info.num_classes)
    return create_model(cfg.model.name, info.num_classes, **cfg.model.kwargs())


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by ``nlkd train``; a missing, truncated or foreign file is a one-line
    :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    ckpt = _read(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or any(k not in ckpt for k in REQUIRED_KEYS):
        raise DataError(f"{path}: not an nlkd checkpoint (expected a file written by 'nlkd train')")
    return ckpt


def _read(path: Path, allow: list[Any] | None = None) -> Any:
    """``torch.load(weights_only=True)`` of a file ``torch.save`` wrote (a zip archive); anything else is
    corrupt or truncated. A pickled object other than plain values (and the ``allow``-ed globals) is refused,
    never constructed."""
    try:
        if not zipfile.is_zipfile(path):  # a legacy raw pickle would be unpickled outright: never ours
            raise ValueError("not a torch.save archive")
        with torch.serialization.safe_globals(allow or []):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if str(e).startswith("Weights only load failed"):
            fix = (
                ""
                if allow
                else f"; a checkpoint of an older nlkd converts with 'nlkd convert-checkpoint {path} NEW.pt'"
            )
            raise DataError(
                f"{path}: refused, it holds pickled Python objects (loading it could run code){fix}"
            ) from None
        raise DataError(f"{path}: corrupt or truncated checkpoint ({str(e).splitlines()[0][:120]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise DataError(f"{path}: corrupt or truncated checkpoint ({str(e).splitlines()[0][:120]})") from None


def convert_checkpoint(old: str | os.PathLike[str], new: str | os.PathLike[str]) -> None:
    """Rewrite a checkpoint of an older nlkd (numpy RNG state, numpy scalars) with plain values only.

    ``old`` is read with ``weights_only=True`` and numpy's array and scalar types allowed: any other pickled
    object is refused and never run. ``new`` is written atomically and must not exist; resuming from it
    continues exactly as from ``old``.
    """
    old, new = Path(old), Path(new)
    if not old.is_file():
        raise DataError(f"{old}: checkpoint not found")
    if new.exists():
        raise DataError(f"{new}: already exists; choose another output file")
    ckpt = _read(old, allow=_NUMPY_GLOBALS)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or any(k not in ckpt for k in REQUIRED_KEYS):
        raise DataError(f"{old}: not an nlkd checkpoint (expected a file written by 'nlkd train')")
    rng = ckpt.get("rng")
    if isinstance(rng, dict) and isinstance(rng.get("numpy"), tuple):
        name, key, pos, has_gauss, cached = rng["numpy"]
        rng["numpy"] = _numpy_state(name, key, pos, has_gauss, cached)
    ckpt = _plain(ckpt)
    data = checkpoint_bytes(ckpt)
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise DataError(f"{old}: holds objects that are not plain values ({str(e).splitlines()[-1][:120]})") from None
    atomic_write_bytes(new, data)


def _plain(obj: Any) -> Any:
    """``obj`` with numpy arrays as tensors and numpy scalars as Python numbers, containers kept."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.astype(np.int64) if obj.dtype.kind == "u" else obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return type(obj)((k, _plain(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_plain(v) for v in obj)
    return obj


def _numpy_state(name: str, key: np.ndarray, pos: int, has_gauss: int, cached: float) -> dict[str, Any]:
    return {
        "bit_generator": str(name),
        "key": torch.from_numpy(np.asarray(key).astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def rng_state() -> dict[str, Any]:
    """The torch, numpy and Python global RNG states, as plain values (a tensor, a dict, a tuple)."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(*np.random.get_state()),
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    n = state["numpy"]
    torch.set_rng_state(state["torch"])
    np.random.set_state(
        (n["bit_generator"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    random.setstate(state["python"])


def check_matches_data(
    ckpt_info: DatasetInfo,
    data_info: DatasetInfo,
    path: str | os.PathLike[str],
    *,
    ignore_index: bool = True,
    data_name: str = "the data set",
) -> None:
    """Refuse a checkpoint (``path``) whose classes or (when ``ignore_index``) ignore index differ from the
    data set's (called ``data_name`` in the message). A judge of annotations (``nlkd audit``) and
    ``nlkd predict`` check classes only: which pixels a model was trained to skip does not change what it
    predicts, and a teacher of fine masks judges coarse ones."""
    if ckpt_info.num_classes != data_info.num_classes:
        raise DataError(
            f"{path}: checkpoint has {ckpt_info.num_classes} classes, {data_name} has {data_info.num_classes}"
        )
    if ignore_index and ckpt_info.ignore_index != data_info.ignore_index:
        raise DataError(
            f"{path}: checkpoint has ignore index {ckpt_info.ignore_index}, {data_name} has {data_info.ignore_index}"
        )


def checkpoint_config(ckpt: dict[str, Any]) -> TrainConfig:
    return config_from_dict(ckpt["config"])


def checkpoint_info(ckpt: dict[str, Any]) -> DatasetInfo:
    return DatasetInfo(**ckpt["info"])


def model_from_checkpoint(
    path_or_ckpt: str | os.PathLike[str] | dict[str, Any], device: str | torch.device = "cpu"
) -> tuple[nn.Module, TrainConfig, DatasetInfo]:
    """Rebuild network 0 of a checkpoint in eval mode: ``(model, training config, dataset info)``."""
    ckpt = path_or_ckpt if isinstance(path_or_ckpt, dict) else load_checkpoint(path_or_ckpt)
    cfg, info = checkpoint_config(ckpt), checkpoint_info(ckpt)
    # the checkpoint holds every weight: no pretrained encoder is downloaded or read to be overwritten
    model = build_model(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, encoder_weights=None)), info)
    try:
        model.load_state_dict(ckpt["models"][0])
    except RuntimeError as e:
        raise NLKDError(f"checkpoint does not fit model {cfg.model.name!r}: {str(e).splitlines()[0]}") from None
    return model.to(device).eval(), cfg, info


def make_checkpoint(
    cfg: TrainConfig, info: DatasetInfo, models: list[nn.Module], epoch: int, **extra: Any
) -> dict[str, Any]:
    """The checkpoint dict: format tag, resolved config, dataset info, network weights, + ``extra``."""
    return {
        "format": FORMAT,
        "config": config_to_dict(cfg),
        "info": {
            "num_classes": info.num_classes,
            "ignore_index": info.ignore_index,
            "class_names": list(info.class_names),
            "palette": [list(c) for c in info.palette],
        },
        "models": [unwrap(m).state_dict() for m in models],
        "epoch": epoch,
        **_plain(extra),  # e.g. a numpy number logged into the history: weights_only=True reads no numpy
    }
