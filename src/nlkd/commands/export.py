"""``nlkd export``: a trained checkpoint as an ONNX file for deployment.

    nlkd export runs/nlkd/best.pt --format onnx --out model.onnx [--size HxW] [--dynamic]

The file maps ``images (B, 3, H, W)`` float32 (RGB / 255, normalised with the ImageNet mean and std, as in
training) to ``logits (B, C, H, W)``. ``--size`` defaults to the training size of the checkpoint;
``--dynamic`` makes batch, height and width free. When onnxruntime is installed the file is run once on
a random input and the largest logit difference to PyTorch is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint for deployment (ONNX)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CKPT", help="trained model, e.g. runs/nlkd/best.pt")
    p.add_argument("--format", default="onnx", choices=("onnx",), help="output format (default: onnx)")
    p.add_argument("--out", required=True, metavar="FILE", help="output file to write, a new one, e.g. model.onnx")
    p.add_argument("--size", default=None, metavar="HxW", help="input size (default: the checkpoint's training size)")
    p.add_argument("--dynamic", action="store_true", help="batch, height and width as dynamic axes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from nlkd.checkpoint import model_from_checkpoint
    from nlkd.config import parse_size
    from nlkd.errors import ConfigError
    from nlkd.export_onnx import OPSET, export_onnx, onnx_max_abs_diff

    size = parse_size(args.size) if args.size is not None else None  # before the checkpoint: cheap errors first
    if Path(args.out).exists():  # like train's run folder: never replaced by accident
        raise ConfigError(f"{args.out}: already exists; choose another --out, or delete it first")
    model, cfg, info = model_from_checkpoint(args.checkpoint)
    size = size or cfg.data.size
    if size is None:
        raise ConfigError(f"{args.checkpoint}: trained at each image's own size; pass --size HxW")
    h, w = size
    export_onnx(model, args.out, (h, w), name=cfg.model.name, dynamic=args.dynamic)
    shape = "(batch, 3, height, width)" if args.dynamic else f"(1, 3, {h}, {w})"
    what = f"{cfg.model.name} ({info.num_classes} classes)"
    print(f"exported {what} -> {args.out}: images {shape} -> logits, opset {OPSET}")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return 0
    diff = onnx_max_abs_diff(model, args.out, torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0)))
    print(f"checked with onnxruntime: max |logit difference| to PyTorch {diff:.2e} on a random {h}x{w} input")
    return 0
