"""``nlkd predict``: class-index PNGs and colour overlays for a folder of images.

For every image ``DIR/<name>.<ext>`` (.jpg, .jpeg, .png, .tif, .tiff, .bmp, .webp: what training reads) it
writes ``OUT/<name>.png`` (class index per pixel, at the image's own size) and ``OUT/<name>_overlay.png``.
Other files are skipped and named; two images that would write the same output (``a.jpg`` and ``a.png``),
or an output that exists already (an earlier prediction), are refused before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from nlkd.commands._common import DEVICE_HELP
from nlkd.io import IMAGE_EXTENSIONS

__all__ = ["PREDICT_EXTENSIONS", "plan_outputs", "register", "run"]

#: Image files ``nlkd predict`` reads: the ones every command reads (:data:`nlkd.io.IMAGE_EXTENSIONS`).
PREDICT_EXTENSIONS = IMAGE_EXTENSIONS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict masks for a folder of images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="trained model, e.g. runs/nlkd/best.pt")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images (not searched recursively)")
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder for the masks and overlays (not DIR; earlier ones there are not replaced)",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=run)


def plan_outputs(src: Path, out: Path) -> tuple[list[Path], list[Path]]:
    """``(images to predict, other files skipped)`` of folder ``src``, both sorted by name.

    Raises:
        DataError: ``src`` is not a folder, holds no image, ``out`` is ``src`` (the masks would replace
            the PNG inputs), two images would write the same output file (the message names both), or
            ``out`` holds a file of the same name already (an earlier prediction is never replaced).
    """
    from nlkd.errors import DataError

    if not src.is_dir():
        raise DataError(f"{src}: image folder not found")
    if out.resolve() == src.resolve():
        raise DataError(f"{out}: --out is the --images folder; the masks would overwrite .png images there")
    entries = sorted(p for p in src.iterdir() if not p.name.startswith("."))
    files = [p for p in entries if p.is_file() and p.suffix.lower() in PREDICT_EXTENSIONS]
    skipped = [p for p in entries if p not in files]
    if not files:
        raise DataError(f"{src}: no images ({', '.join(PREDICT_EXTENSIONS)})")
    writers: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        for name in (f"{path.stem}.png", f"{path.stem}_overlay.png"):
            writers[name].append(path)
    clash = next(((name, paths) for name, paths in writers.items() if len(paths) > 1), None)
    if clash is not None:
        name, paths = clash
        raise DataError(
            f"{src}: {' and '.join(p.name for p in paths)} would both be written to {name}; "
            "rename one, or predict them into separate --out folders"
        )
    existing = [name for name in writers if (out / name).exists()]
    if existing:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise DataError(
            f"{out}: already holds {existing[0]}{more} of the outputs; choose another --out, or delete them first"
        )
    return files, skipped


def _describe_skipped(skipped: list[Path]) -> str:
    shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in skipped[:5])
    more = f", ... ({len(skipped)} in all)" if len(skipped) > 5 else ""
    return f"{shown}{more}"


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from nlkd.checkpoint import model_from_checkpoint
    from nlkd.data.transforms import resize_image, to_tensor
    from nlkd.io import read_image, write_mask, write_rgb
    from nlkd.plots import overlay
    from nlkd.progress import progress
    from nlkd.runtime import resolve_device

    src, out = Path(args.images), Path(args.out)
    files, skipped = plan_outputs(src, out)
    if skipped:
        print(
            f"nlkd predict: skipping {len(skipped)} of the {len(skipped) + len(files)} entries in {src} (only "
            f"{'/'.join(PREDICT_EXTENSIONS)} files are read; folders are not searched): {_describe_skipped(skipped)}",
            file=sys.stderr,
        )
    device = resolve_device(args.device)
    model, cfg, info = model_from_checkpoint(args.checkpoint, device)
    with torch.no_grad():
        for path in progress(files, "predicting", unit="image"):
            image = read_image(path)
            h, w = image.shape[:2]
            x = resize_image(image, tuple(cfg.data.size)) if cfg.data.size else image
            logits = model(to_tensor(x.transpose(2, 0, 1)).unsqueeze(0).to(device))  # to_tensor: (3, H, W)
            logits = torch.nn.functional.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            pred = logits.argmax(1)[0].cpu().numpy().astype(np.uint8)
            write_mask(out / f"{path.stem}.png", pred)
            write_rgb(out / f"{path.stem}_overlay.png", overlay(image, pred, info.palette, None))
    note = f"; {len(skipped)} other entries skipped" if skipped else ""
    print(f"predicted {len(files)} images -> {out} ({len(files)} masks + {len(files)} overlays{note})")
    return 0
