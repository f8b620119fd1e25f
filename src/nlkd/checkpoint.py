"""Checkpoints: one dict with everything needed to rebuild a model, evaluate it, or resume training."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nlkd.config import TrainConfig, config_from_dict, config_to_dict
from nlkd.data.info import DatasetInfo
from nlkd.errors import DataError, NLKDError
from nlkd.io import save_checkpoint
from nlkd.models import create_model

__all__ = ["build_model", "load_checkpoint", "model_from_checkpoint", "save_checkpoint", "unwrap"]

REQUIRED_KEYS = ("format", "config", "info", "models", "epoch")
FORMAT = "nlkd-checkpoint-1"


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel) else model


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
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise DataError(f"{path}: corrupt or truncated checkpoint ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or any(k not in ckpt for k in REQUIRED_KEYS):
        raise DataError(f"{path}: not an nlkd checkpoint (expected a file written by 'nlkd train')")
    return ckpt


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
    model = build_model(cfg, info)
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
        **extra,
    }
