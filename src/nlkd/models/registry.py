"""The model registry and the one interface for training-time extras.

Every model is registered under a name with :func:`register_model`; :func:`create_model` looks the
name up, checks the keyword arguments against the factory's signature (a typo is a ``ConfigError``,
never silently swallowed) and builds the model.

Models with training-time extras (an auxiliary head, a point head) subclass
:class:`AuxiliaryLossModule`: their training-mode ``forward`` stores what the extra loss needs with
:meth:`AuxiliaryLossModule._store_extras`, and ``auxiliary_loss(target, ignore_index)`` turns it into a
per-image loss ``(B,)``. :func:`auxiliary_loss` is the door the training loop uses for any model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlkd.errors import ConfigError, did_you_mean

__all__ = [
    "AuxiliaryLossModule",
    "auxiliary_loss",
    "create_model",
    "list_models",
    "pad_to_multiple",
    "register_model",
    "unwrap",
]

ModelFactory = Callable[..., nn.Module]
_F = TypeVar("_F", bound=ModelFactory)
_REGISTRY: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[_F], _F]:
    """Decorator registering ``factory(num_classes, *, option=default, ...) -> nn.Module`` as ``name``.

    The factory's keyword parameters are the options :func:`create_model` accepts for this name.

    Raises:
        ValueError: if ``name`` is already registered.
    """

    def decorate(factory: _F) -> _F:
        if name in _REGISTRY:
            raise ValueError(f"register_model: name {name!r} is already registered to {_REGISTRY[name]!r}")
        _REGISTRY[name] = factory
        return factory

    return decorate


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def _options(factory: ModelFactory) -> list[str]:
    params = inspect.signature(factory).parameters.values()
    return [p.name for p in params if p.name != "num_classes" and p.kind is p.KEYWORD_ONLY]


def create_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` predicting ``num_classes`` classes.

    The model maps images ``(B, 3, H, W)`` to logits ``(B, num_classes, H, W)`` at the input size, in
    train and eval mode, for any ``H, W``. No weights are downloaded unless asked for explicitly
    (``encoder_weights="imagenet"`` / ``pretrained=True``).

    Raises:
        ConfigError: unknown ``name`` (the message lists the valid names), unknown keyword arguments
            (the message names them and lists the accepted ones), ``num_classes`` not an int >= 2, or
            an invalid option value.

    Example:
        >>> model = create_model("unet", num_classes=3, encoder="resnet18")
        >>> model.eval()(torch.zeros(1, 3, 40, 50)).shape
        torch.Size([1, 3, 40, 50])
    """
    if name not in _REGISTRY:
        hint = did_you_mean(name, _REGISTRY)
        raise ConfigError(f"model: unknown name {name!r}{hint}; valid names: {', '.join(list_models())}")
    factory = _REGISTRY[name]
    accepted = _options(factory)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        accepted_text = ", ".join(accepted) or "none"
        raise ConfigError(f"model {name!r}: unknown option(s) {', '.join(unknown)}; accepted: {accepted_text}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"model {name!r}: num_classes must be an int >= 2, got {num_classes!r}")
    return factory(num_classes, **kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (the one place nlkd unwraps one;
    :mod:`nlkd.checkpoint` re-exports it)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel) else model


def auxiliary_loss(model: nn.Module, target: Tensor, ignore_index: int | None) -> Tensor:
    """Per-image training-time extra loss of ``model`` from its last training-mode forward.

    Args:
        model: any segmentation model, possibly wrapped in ``DistributedDataParallel`` /
            ``DataParallel`` (unwrapped by :func:`unwrap`).
        target: ``(B, H, W)`` int64 class indices at the input size of that forward; pixels equal to
            ``ignore_index`` count for nothing.
        ignore_index: the ignored label, or ``None`` when every pixel is labelled.

    Returns:
        ``(B,)`` float, non-negative; zeros (on ``target``'s device) for a model without extras.
    """
    if target.dim() != 3:
        raise ValueError(f"auxiliary_loss: target must be (B, H, W), got shape {tuple(target.shape)}")
    model = unwrap(model)
    if isinstance(model, AuxiliaryLossModule):
        return model.auxiliary_loss(target, ignore_index)
    return torch.zeros(target.shape[0], device=target.device)


class AuxiliaryLossModule(nn.Module):
    """Base for models whose training-mode forward stores tensors for an auxiliary loss.

    Subclasses call :meth:`_store_extras` at the end of every forward (``None`` in eval mode, so a
    stale training batch is never reused) and implement :meth:`_auxiliary_loss`. The stored tensors
    are dropped when the model is pickled or deep-copied (they are part of an autograd graph).
    """

    def __init__(self) -> None:
        super().__init__()
        self._extras: dict[str, Any] | None = None

    def _store_extras(self, extras: dict[str, Any] | None, input_size: tuple[int, int]) -> None:
        self._extras = None if extras is None else {**extras, "input_size": input_size}

    def auxiliary_loss(self, target: Tensor, ignore_index: int | None) -> Tensor:
        """Per-image auxiliary loss ``(B,)`` for ``target (B, H, W)`` from the last training forward.

        Raises:
            RuntimeError: if the last forward was not in training mode (nothing is stored).
            ValueError: if ``target`` does not match that forward's batch size and input size.
        """
        if self._extras is None:
            raise RuntimeError(
                f"{type(self).__name__}.auxiliary_loss: no training-mode forward to take it from; "
                "call model.train() and model(x) first"
            )
        height, width = self._extras["input_size"]
        batch = self._extras["batch"]
        if tuple(target.shape) != (batch, height, width):
            raise ValueError(
                f"{type(self).__name__}.auxiliary_loss: target must be ({batch}, {height}, {width}) like "
                f"the last forward's input, got shape {tuple(target.shape)}"
            )
        return self._auxiliary_loss(self._extras, target.long(), ignore_index)

    def _auxiliary_loss(self, extras: dict[str, Any], target: Tensor, ignore_index: int | None) -> Tensor:
        raise NotImplementedError  # abstract: each model with extras implements it

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_extras"] = None
        return state


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Zero-pad ``x (B, C, H, W)`` at the bottom and right so ``H`` and ``W`` divide by ``multiple``.

    Returns:
        The padded ``(B, C, H', W')`` tensor and the original ``(H, W)``, to crop the output with
        ``out[..., :H, :W]``.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return x, (height, width)
