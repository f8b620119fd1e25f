"""``nlkd train``: train a model with a strategy (baseline, reweight, nlkd, ...)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nlkd.commands._common import size_arg
from nlkd.config import load_config, parse_set

FLAG_KEYS = {
    "data": "data.root",
    "labels": "data.labels",
    "val_split": "data.val_split",
    "format": "data.format",
    "num_classes": "data.num_classes",
    "ignore_index": "data.ignore_index",
    "size": "data.size",
    "model": "model.name",
    "encoder": "model.encoder",
    "strategy": "strategy.name",
    "teacher": "strategy.teacher",
    "teacher_scores": "strategy.teacher_scores",
    "metric": "strategy.metric",
    "optimizer": "optim.name",
    "lr": "optim.lr",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "seed": "seed",
    "out": "out",
    "device": "device",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (teacher, baseline or NLKD student)", description=__doc__)
    p.add_argument("--config", default=None, help="YAML config (keys as in nlkd.config.TrainConfig)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    p.add_argument("--data", metavar="ROOT")
    p.add_argument("--labels", metavar="NAME", help="label folder to train on, e.g. train_coarse")
    p.add_argument("--val-split", metavar="SPLIT")
    p.add_argument("--format", choices=["folder", "cityscapes", "supervisely"])
    p.add_argument("--num-classes", type=int)
    p.add_argument("--ignore-index", type=int)
    p.add_argument("--size", type=size_arg, metavar="HxW", help="training resolution, e.g. 96x128")
    p.add_argument("--model", help="unet | deeplabv3plus | ocrnet | pointrend")
    p.add_argument("--encoder", help="encoder of unet/deeplabv3plus/pointrend, e.g. resnet18")
    p.add_argument(
        "--strategy", help="baseline | reweight | nlkd | fixed | discard | decoupling | coteaching | coteaching_plus"
    )
    p.add_argument("--teacher", metavar="CKPT", help="teacher checkpoint for reweight/nlkd")
    p.add_argument("--teacher-scores", metavar="CSV", help="per-image teacher scores (e.g. out-of-fold)")
    p.add_argument("--metric", choices=["bfmiou", "bf", "miou"])
    p.add_argument("--optimizer", choices=["ranger", "sgd", "adamw"])
    p.add_argument("--lr", type=float)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--out", metavar="RUN_DIR")
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR from its last.pt")
    p.set_defaults(func=run)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    values = {key: getattr(args, flag) for flag, key in FLAG_KEYS.items() if getattr(args, flag) is not None}
    values.update(parse_set(args.set))
    return values


def run(args: argparse.Namespace) -> int:
    from nlkd.checkpoint import load_checkpoint
    from nlkd.config import apply_overrides, config_from_dict
    from nlkd.train import train

    overrides = overrides_from_args(args)
    last = Path(overrides.get("out", "")) / "last.pt" if "out" in overrides else None
    if args.resume and args.config is None and last is not None and last.is_file():
        cfg = apply_overrides(config_from_dict(load_checkpoint(last)["config"]), overrides)
    else:
        cfg = load_config(args.config, overrides)
    train(cfg, resume=args.resume)
    _destroy_process_group()
    return 0


def _destroy_process_group() -> None:
    """Leave the ``torchrun`` process group cleanly. ``train`` ends with a barrier, so no collective is in
    flight here (with torch 2.14.1, tearing down right after the last all-reduce sometimes aborted a
    rank)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
