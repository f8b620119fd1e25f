"""Pretrained encoder weights from a local file (``model.encoder_weights: PATH``), never downloaded.

``model.encoder_weights`` is either a tag the model library knows (``"imagenet"``: smp downloads it) or
the path of a local state dict (``.pth``/``.pt`` read with ``torch.load(weights_only=True)``,
``.safetensors``). A local file is loaded into the encoder after the model is built (smp encoders of
unet/deeplabv3plus/pointrend, ocrnet's timm backbone), with timm/smp key names: keys may carry an
``encoder.`` (or ``net.encoder.``, ``backbone.``, ``module.``) prefix and the dict may be wrapped in
``{"state_dict": ...}`` or ``{"model": ...}``; a timm model's own file loads into smp's ``tu-NAME`` encoder
(which holds it as ``.model``). Keys the encoder does not have (a classifier head, a
decoder) are left out and counted; an encoder tensor missing from the file or of another shape is a
one-line :class:`DataError` naming a few and counting them all.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nlkd.errors import DataError, NLKDError

__all__ = ["WEIGHT_SUFFIXES", "encoder_of", "is_weights_file", "load_encoder_weights", "read_state_dict"]

WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin")
_PREFIXES = ("", "encoder.", "net.encoder.", "backbone.", "module.", "module.encoder.", "model.")
_ENCODER_ATTRS = ("net.encoder", "encoder", "backbone")  # unet/deeplabv3plus, pointrend, ocrnet
_ENCODER_PREFIXES = ("", "model.")  # smp's timm-universal ("tu-") encoders hold the timm model as .model


def is_weights_file(value: str | None) -> bool:
    """Whether ``model.encoder_weights`` names a local file (a path or a weights suffix), not a tag."""
    if not value:
        return False
    return Path(value).suffix.lower() in WEIGHT_SUFFIXES or os.sep in value or Path(value).is_file()


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The tensors of a local state dict file, unwrapped from ``state_dict``/``model``; nothing is unpickled
    but plain values."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: encoder weights file not found")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file  # installed with timm

            data: Any = load_file(str(path), device="cpu")
        else:
            if not zipfile.is_zipfile(path):
                raise ValueError("not a torch.save archive")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DataError(f"{path}: refused, it holds pickled Python objects (loading it could run code)") from None
    except Exception as e:  # truncated archive, foreign format: one line
        raise DataError(f"{path}: not a readable state dict ({str(e).splitlines()[0][:120]})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
    tensors = {k: v for k, v in data.items() if isinstance(v, Tensor)} if isinstance(data, dict) else {}
    if not tensors:
        raise DataError(f"{path}: holds no tensors (expected a state dict of the encoder)")
    return tensors


def encoder_of(model: nn.Module, name: str = "model") -> nn.Module:
    """The encoder (backbone) of a registered model: ``net.encoder``, ``encoder`` or ``backbone``."""
    for attrs in _ENCODER_ATTRS:
        node: Any = model
        for attr in attrs.split("."):
            node = getattr(node, attr, None)
        if isinstance(node, nn.Module):
            return node
    raise NLKDError(f"model {name!r} has no encoder to load weights into")


def _match(state: dict[str, Tensor], wanted: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with the prefix removed (and the encoder's own one added) that names the most of ``wanted``'s
    keys."""
    best: dict[str, Tensor] = {}
    for prefix in _PREFIXES:
        for own in _ENCODER_PREFIXES:
            mapped = {own + k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if len(mapped.keys() & wanted.keys()) > len(best.keys() & wanted.keys()):
                best = mapped
    return best


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")


def load_encoder_weights(model: nn.Module, path: str | os.PathLike[str], name: str = "model") -> tuple[int, int]:
    """Copy the tensors of ``path`` into ``model``'s encoder; returns ``(tensors loaded, file keys unused)``.

    Raises:
        DataError: the file is missing or unreadable, or an encoder tensor is missing from it or has
            another shape (the message names up to 3 and counts them).
    """
    encoder = encoder_of(model, name)
    wanted = encoder.state_dict()
    state = read_state_dict(path)
    found = _match(state, wanted)
    missing = [k for k in wanted if k not in found]
    if missing:
        raise DataError(
            f"{path}: {len(missing)} of the {len(wanted)} encoder tensors of {name!r} are missing ({_few(missing)}); "
            "expected timm/smp key names, optionally prefixed 'encoder.'"
        )
    wrong = [f"{k} {tuple(found[k].shape)} vs {tuple(v.shape)}" for k, v in wanted.items() if found[k].shape != v.shape]
    if wrong:
        raise DataError(f"{path}: {len(wrong)} encoder tensors of {name!r} have another shape ({_few(wrong)})")
    encoder.load_state_dict({k: found[k] for k in wanted})
    return len(wanted), len(state) - len(wanted)
