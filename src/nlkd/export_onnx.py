"""ONNX export of a segmentation model: ``images (B, 3, H, W) float32 -> logits (B, C, H, W)``.

The graph is traced by torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) at
opset :data:`OPSET`. On torch 2.14 it exports every registered model offline in about a second; the
dynamo exporter (torch.export) refused dynamic height/width for deeplabv3plus, ocrnet and pointrend
("Cannot create Dim with inconsistent min=1, max=-oo"). Inputs are normalised as in training
(RGB / 255, ImageNet mean and std; :func:`nlkd.data.transforms.to_tensor`).

With ``dynamic`` the batch, height and width axes are free. The models pad the input to a multiple of
their stride only when it is not one already, so a dynamic graph is traced at a size that needs padding
(the zero-size pad of other sizes is the same graph). ``pointrend`` is exported at a fixed size only
(:data:`STATIC_ONLY`): its inference refines ``min(subdivision_points, h·w)`` points per step, a count
the trace fixes at the export size.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from nlkd.errors import ConfigError, NLKDError
from nlkd.io import atomic_write_bytes

__all__ = ["INPUT_NAME", "OPSET", "OUTPUT_NAME", "STATIC_ONLY", "export_onnx", "onnx_max_abs_diff"]

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "images", "logits"

#: Models that ONNX carries at a fixed input size only, with the reason (measured: a pointrend graph traced
#: at 50×70 and run at 256×256 differed from PyTorch by 3.6 in the logits).
STATIC_ONLY = {
    "pointrend": "its inference refines min(subdivision_points, h·w) uncertain points per step, a count the "
    "ONNX trace fixes at the export size; export it at the size you will run it at (no --dynamic)",
}


class _Logits(nn.Module):
    """``images -> logits`` with one positional input (models may take keyword-only extras)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)


def _trace_size(model: nn.Module, size: tuple[int, int], dynamic: bool) -> tuple[int, int]:
    """The example input's ``(H, W)``: ``size``, or for a dynamic graph one that needs padding in both axes."""
    multiple = int(getattr(model, "pad_multiple", 1))
    if not dynamic or multiple <= 1:
        return size
    return tuple(s + 1 if s % multiple == 0 else s for s in size)  # type: ignore[return-value]


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    size: tuple[int, int],
    *,
    name: str,
    dynamic: bool = False,
) -> None:
    """Write ``model`` (float32, eval mode, CPU) as an ONNX file at ``path``, atomically.

    Args:
        model: maps ``(B, 3, H, W)`` images to ``(B, C, H, W)`` logits.
        path: output file; written via a temporary file, so a failed export leaves no partial file.
        size: ``(H, W)`` of the example input; the input size of the graph unless ``dynamic``.
        name: the model's registry name (``create_model`` name), for :data:`STATIC_ONLY`.
        dynamic: batch, height and width as free axes of input and output.

    Raises:
        ConfigError: ``dynamic`` for a model in :data:`STATIC_ONLY`.
        NLKDError: the exporter failed (its first line is in the message).
    """
    if dynamic and name in STATIC_ONLY:
        raise ConfigError(f"model {name!r} cannot be exported with --dynamic: {STATIC_ONLY[name]}")
    wrapper = _Logits(model.float().cpu().eval()).eval()  # export restores the wrapper's mode onto the model
    example = torch.zeros(1, 3, *_trace_size(model, size, dynamic))
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic (checked by the tests)
            torch.onnx.export(
                wrapper,
                (example,),
                buffer,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=OPSET,
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes} if dynamic else None,
                dynamo=False,
            )
    except Exception as e:  # the exporter raises many types; name the model and the first line
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise NLKDError(f"model {name!r}: ONNX export failed ({type(e).__name__}: {first})") from None
    atomic_write_bytes(path, buffer.getvalue())


def onnx_max_abs_diff(model: nn.Module, path: str | os.PathLike[str], images: Tensor) -> float:
    """Max ``|logit|`` difference between ``model`` in PyTorch and the ONNX file at ``path`` run by
    onnxruntime (CPU) on ``images (B, 3, H, W)``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(Path(path)), providers=["CPUExecutionProvider"])
    (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: images.float().numpy()})
    with torch.no_grad():
        ref = model.float().cpu().eval()(images).numpy()
    if out.shape != ref.shape:
        raise NLKDError(f"{path}: onnxruntime gave logits {out.shape}, PyTorch {ref.shape}")
    return float(np.abs(out - ref).max())
