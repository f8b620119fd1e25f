"""``nlkd train``: train a model with a strategy (baseline, reweight, nlkd, ...)."""

from __future__ import annotations

import argparse
from importlib.resources import files
from pathlib import Path
from typing import Any, get_args

from nlkd.commands._common import size_arg
from nlkd.config import LogKind, TrainConfig, load_config, parse_set
from nlkd.data.folder import FORMATS
from nlkd.optim import OptimizerName
from nlkd.strategies import STRATEGIES
from nlkd.teacher_cache import TEACHER_PROB
from nlkd.weighting import METRICS

#: Configs shipped in ``nlkd/configs/``, usable as ``--config NAME``.
READY_CONFIGS = ("cpu", "paper")

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
    "encoder_weights": "model.encoder_weights",
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
    "log": "log",
}


_DESCRIPTION = """\
Train a segmentation model with a strategy: first a baseline on your labels (the teacher), then an
NLKD student that down-weights the images whose annotation the teacher disagrees with. Defaults are
those of nlkd.config.TrainConfig; --config, then the flags and --set override them.
"""
_EPILOG = """\
ready configs (shipped with nlkd; flags and --set override them):
  --config cpu     small and fast: U-Net/ResNet-18, 96x128, 20 epochs, AdamW (minutes per run on a CPU)
  --config paper   the paper's settings (section 3.1): 100 epochs, batch 32, native size, Ranger lr 0.1
  (a name is used when no file of that name exists; the files are in {configs})

examples:
  nlkd train --data ROOT --labels train_coarse --epochs 25 --out runs/teacher
  nlkd train --config cpu --data ROOT --labels train_coarse --strategy nlkd --teacher runs/teacher/last.pt \\
      --out runs/nlkd
"""


def _default(key: str) -> str:
    """The TrainConfig default of a dotted key, as a flag would spell it (``[96, 128]`` -> ``96x128``)."""
    node: Any = TrainConfig()
    for part in key.split("."):
        node = getattr(node, part)
    if isinstance(node, list):
        return "x".join(map(str, node))
    return str(node)


def config_arg(text: str) -> str:
    """``--config`` value: a YAML file, or the name of a ready config (``cpu``, ``paper``) when no such file
    exists; returns the path to load."""
    if Path(text).exists() or text not in READY_CONFIGS:
        return text
    return str(files("nlkd").joinpath("configs", f"{text}.yaml"))


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Fills ``{models}`` in help texts from the model registry when help is shown (importing the models
    loads their libraries: only ``--help`` should pay for that)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text and "{models}" in text:
            from nlkd.models import list_models

            text = text.replace("{models}", " | ".join(list_models()))
        return text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (teacher, baseline or NLKD student)",
        description=_DESCRIPTION,
        epilog=_EPILOG.format(configs=files("nlkd").joinpath("configs")),
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "--config",
        type=config_arg,
        default=None,
        metavar="YAML",
        help="YAML config (keys as in nlkd.config.TrainConfig), or a ready one: cpu, paper (see below)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set optim.schedule=step (repeatable; the value is read as YAML)",
    )
    _data_args(p)
    _method_args(p)
    _run_args(p)
    p.set_defaults(func=run)


def _data_args(p: argparse.ArgumentParser) -> None:
    d = _default
    p.add_argument("--data", metavar="ROOT", help="data set root with images/<split>/ and labels/<split>/")
    p.add_argument(
        "--labels",
        metavar="NAME",
        help="label folder ROOT/labels/NAME to train on, e.g. train_coarse (default: the train split's own)",
    )
    p.add_argument(
        "--val-split",
        metavar="SPLIT",
        help=f"split scored after every epoch; best.pt is the best epoch on it (default: {d('data.val_split')})",
    )
    p.add_argument("--format", choices=FORMATS, help=f"data set layout (default: {d('data.format')})")
    p.add_argument("--num-classes", type=int, metavar="N", help="number of classes (default: from ROOT/dataset.yaml)")
    p.add_argument(
        "--ignore-index",
        type=int,
        metavar="I",
        help="mask value of unlabelled pixels (default: from ROOT/dataset.yaml, else none)",
    )
    p.add_argument(
        "--size",
        type=size_arg,
        metavar="HxW",
        help=f"resize every image and mask to HxW for training and validation (default: {d('data.size')}; "
        "--set data.size=null keeps each image's own size)",
    )


def _teacher_strategies() -> list[str]:
    """The registered strategies that need a teacher in their default settings (its scores or its maps)."""
    return [name for name, cls in STRATEGIES.items() if cls.needs_teacher or TEACHER_PROB in cls.needs_extras]


def _method_args(p: argparse.ArgumentParser) -> None:
    d = _default
    p.add_argument("--model", help=f"{{models}} (default: {d('model.name')})")
    p.add_argument("--encoder", help="encoder of unet/deeplabv3plus/pointrend, e.g. resnet18 (default: the model's)")
    p.add_argument(
        "--encoder-weights",
        metavar="PATH",
        help="pretrained encoder: a local state dict (.pth/.pt/.safetensors, timm/smp key names; never "
        "downloaded), or 'imagenet' (smp downloads it)",
    )
    p.add_argument(
        "--strategy",
        help=f"how each image's loss is weighted: {' | '.join(STRATEGIES)} (default: {d('strategy.name')})",
    )
    p.add_argument(
        "--teacher",
        metavar="CKPT",
        help=f"teacher checkpoint (an earlier run's best.pt); needed by {', '.join(_teacher_strategies())} "
        "(relax too with --set strategy.doubt_rule=teacher or score)",
    )
    p.add_argument(
        "--teacher-scores",
        metavar="CSV",
        help="per-image teacher scores from `nlkd score` (e.g. out-of-fold), instead of --teacher",
    )
    p.add_argument(
        "--metric",
        choices=METRICS,
        help=f"per-image annotation quality of teacher and student (default: {d('strategy.metric')})",
    )
    p.add_argument(
        "--optimizer",
        choices=get_args(OptimizerName),
        help=f"optimiser (default: {d('optim.name')}; the paper's is ranger)",
    )
    p.add_argument("--lr", type=float, help=f"learning rate (default: {d('optim.lr')})")


def _run_args(p: argparse.ArgumentParser) -> None:
    d = _default
    p.add_argument("--epochs", type=int, metavar="N", help=f"passes over the training set (default: {d('epochs')})")
    p.add_argument(
        "--batch-size", type=int, metavar="N", help=f"images per step, over all processes (default: {d('batch_size')})"
    )
    p.add_argument("--seed", type=int, help=f"random seed of initialisation and data order (default: {d('seed')})")
    p.add_argument("--device", help=f"auto | cpu | cuda | cuda:N (default: {d('device')}: CUDA when present)")
    p.add_argument(
        "--out",
        metavar="RUN_DIR",
        help=f"run folder: config.yaml, last.pt, best.pt, metrics.jsonl (default: {d('out')})",
    )
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR from its last.pt")
    p.add_argument(
        "--log",
        choices=get_args(LogKind),
        help="tensorboard: also write RUN_DIR/tb/ (scalars per epoch, prediction grids every "
        f"log_images_every={d('log_images_every')} epochs); metrics.jsonl is always written (default: none)",
    )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    values = {key: getattr(args, flag) for flag, key in FLAG_KEYS.items() if getattr(args, flag) is not None}
    values.update(parse_set(args.set))
    return values


def run(args: argparse.Namespace) -> int:
    from nlkd.checkpoint import load_checkpoint
    from nlkd.config import apply_overrides, config_from_dict
    from nlkd.errors import NLKDError
    from nlkd.train import train

    overrides = overrides_from_args(args)
    last = Path(overrides.get("out", "")) / "last.pt" if "out" in overrides else None
    if args.resume and args.config is None and last is not None and last.is_file():
        cfg = apply_overrides(config_from_dict(load_checkpoint(last)["config"]), overrides)
    else:
        cfg = load_config(args.config, overrides)
    if args.resume and not (Path(cfg.out) / "last.pt").is_file():
        raise NLKDError(f"{cfg.out}: no run to resume (no last.pt there); start it without --resume")
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
