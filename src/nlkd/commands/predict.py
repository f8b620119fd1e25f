"""``nlkd predict``: class-index PNGs and colour overlays for a folder of images."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict masks for a folder of images", description=__doc__)
    p.add_argument("--checkpoint", required=True, metavar="CKPT")
    p.add_argument("--images", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from nlkd.checkpoint import model_from_checkpoint
    from nlkd.data.transforms import resize_image, to_tensor
    from nlkd.errors import DataError
    from nlkd.io import read_image, write_mask, write_rgb
    from nlkd.plots import overlay
    from nlkd.runtime import resolve_device

    device = resolve_device(args.device)
    model, cfg, info = model_from_checkpoint(args.checkpoint, device)
    src = Path(args.images)
    if not src.is_dir():
        raise DataError(f"{src}: image folder not found")
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise DataError(f"{src}: no .jpg/.png images")
    out = Path(args.out)
    with torch.no_grad():
        for path in tqdm(files, desc="predicting"):
            image = read_image(path)
            h, w = image.shape[:2]
            x = resize_image(image, tuple(cfg.data.size)) if cfg.data.size else image
            logits = model(to_tensor(x.transpose(2, 0, 1)).unsqueeze(0).to(device))  # to_tensor: (3, H, W)
            logits = torch.nn.functional.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            pred = logits.argmax(1)[0].cpu().numpy().astype(np.uint8)
            write_mask(out / f"{path.stem}.png", pred)
            write_rgb(out / f"{path.stem}_overlay.png", overlay(image, pred, info.palette, None))
    print(f"predicted {len(files)} images -> {out}")
    return 0
