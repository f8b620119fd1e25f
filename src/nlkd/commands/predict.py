"""``nlkd predict``: class-index PNGs and colour overlays for a folder of images.

For every image ``DIR/<name>.<ext>`` (.jpg, .jpeg, .png, .tif, .tiff, .bmp, .webp: what training reads) it
writes ``OUT/<name>.png`` (class index per pixel, at the image's own size) and ``OUT/<name>_overlay.png``.
Other files are skipped and named; two images that would write the same output (``a.jpg`` and ``a.png``),
or an output that exists already (an earlier prediction), are refused before anything is written. When DIR
is ``ROOT/images/<split>`` of a data set with ``ROOT/dataset.yaml``, a checkpoint of another number of
classes is refused too. The summary names the classes the mask values stand for.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from nlkd.commands._common import DEVICE_HELP
from nlkd.io import IMAGE_EXTENSIONS

if TYPE_CHECKING:
    from nlkd.data.info import DatasetInfo

__all__ = ["PREDICT_EXTENSIONS", "data_set_of", "plan_outputs", "register", "run"]

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


def data_set_of(images: Path) -> Path | None:
    """``ROOT`` when the folder ``images`` is ``ROOT/images/<split>`` and ``ROOT/dataset.yaml`` exists, else None."""
    root = Path(os.path.normpath(images / os.pardir / os.pardir))  # as the user wrote it: d3, not /home/.../d3
    if images.absolute().parent.name != "images" or not (root / "dataset.yaml").is_file():
        return None
    return root


def _check_against_data_set(ckpt_info: DatasetInfo, images: Path, checkpoint: str) -> None:
    """Refuse a checkpoint whose number of classes differs from that of the data set ``images`` belong to
    (:func:`data_set_of`), when its ``dataset.yaml`` gives one (``nlkd corrupt`` reads one without)."""
    from nlkd.checkpoint import check_matches_data
    from nlkd.data.info import load_dataset_info
    from nlkd.errors import DataError

    root = data_set_of(images)
    if root is None:
        return
    try:
        data_info = load_dataset_info(root)
    except DataError:  # no num_classes in it: nothing to check against
        return
    check_matches_data(ckpt_info, data_info, checkpoint, ignore_index=False, data_name=f"the data set at {root}")


def _describe_classes(names: list[str], shown: int = 10) -> str:
    """``"3 classes: 0 sky, 1 road, 2 car"`` (the first ``shown`` names, then how many more)."""
    listed = ", ".join(f"{i} {name}" for i, name in enumerate(names[:shown]))
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return f"{len(names)} classes: {listed}{more}"


def _describe_skipped(skipped: list[Path]) -> str:
    shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in skipped[:5])
    more = f", ... ({len(skipped)} in all)" if len(skipped) > 5 else ""
    return f"{shown}{more}"


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from nlkd.checkpoint import checkpoint_info, load_checkpoint, model_from_checkpoint
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
    ckpt = load_checkpoint(args.checkpoint)
    _check_against_data_set(checkpoint_info(ckpt), src, args.checkpoint)
    model, cfg, info = model_from_checkpoint(ckpt, device)
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
    n, plural = len(files), "" if len(files) == 1 else "s"
    print(f"predicted {n} image{plural} -> {out} ({n} mask{plural} + {n} overlay{plural}{note})")
    print(f"mask values: {_describe_classes(info.class_names)}")
    return 0
