"""The one training loop. Every strategy (baseline, reweight, nlkd, co-teaching, ...) runs through it.

    nlkd train --data ROOT --labels train_coarse --strategy nlkd --teacher runs/teacher/best.pt \
        --epochs 30 --batch-size 8 --size 96x128 --out runs/nlkd

One step: each network's logits -> per-image CE (+ the model's auxiliary loss) -> the strategy's
per-image weights -> weighted loss -> backward -> optimiser and LR schedule step.
Each epoch: validation (network 0), ``metrics.jsonl`` and ``curves.png`` rewritten, ``last.pt`` (and
``best.pt`` on a better val mIoU) written atomically. ``--resume`` restarts the interrupted epoch from
``last.pt`` with the model, optimiser (incl. Lookahead), scheduler, strategy and RNG states it saved;
loader order and augmentation are a function of (seed, epoch), so a resumed run repeats exactly.
Under ``torchrun`` the loop runs with DistributedDataParallel (``batch_size`` is the global batch): each
process trains on every P-th image of the epoch's shuffled order, gradients are averaged, BatchNorm
normalises per process (batch_size / P images; no SyncBatchNorm, which needs a GPU) and keeps rank 0's
running statistics, the logged loss and weights cover all processes, and only rank 0 writes files.
tests/test_ddp.py checks this against the single-process run it stands for.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn
from torch.utils.data.distributed import DistributedSampler

from nlkd.branch import RUN_PLACE, branch_point, strategy_start_epoch
from nlkd.checkpoint import (
    build_model,
    check_matches_data,
    checkpoint_info,
    load_checkpoint,
    make_checkpoint,
    rng_state,
    set_rng_state,
    unwrap,
)
from nlkd.config import TrainConfig, check_config, config_diffs, config_from_dict, config_to_dict
from nlkd.data.extras import EXTRA_PROVIDERS
from nlkd.data.folder import FolderDataset, make_loader
from nlkd.data.info import DatasetInfo
from nlkd.data.notes import data_warnings
from nlkd.data.validate import check_split
from nlkd.encoder_weights import is_weights_file, load_encoder_weights
from nlkd.errors import ConfigError, DataError, NLKDError
from nlkd.evaluate import BOUNDARY_KEYS, evaluate
from nlkd.io import atomic_write_bytes, atomic_write_text, checkpoint_bytes
from nlkd.models import auxiliary_loss
from nlkd.noise import load_manifest
from nlkd.optim import build_optimizer, build_scheduler
from nlkd.progress import progress
from nlkd.runtime import Distributed, dataset_info, precision_warnings, resolve_device, setup_distributed
from nlkd.separation import WeightSeparation
from nlkd.strategies import StepInputs, Strategy, create_strategy
from nlkd.strategies.base import LossWeights, network_loss
from nlkd.teacher import teacher_scores
from nlkd.teacher_cache import TEACHER_PROB
from nlkd.tensorboard_log import TensorBoardLog
from nlkd.weighting import per_image_cross_entropy

__all__ = [
    "Run",
    "RunLog",
    "build_datasets",
    "build_run",
    "epoch_line",
    "finish",
    "run_epoch",
    "summary",
    "train",
    "train_step",
]

Log = Callable[..., None]


def build_datasets(cfg: TrainConfig, info: DatasetInfo, check: bool = True) -> tuple[FolderDataset, FolderDataset]:
    """Training set (augmented, ``cfg.data.labels``) and validation set; pairs checked first."""
    d = cfg.data
    if not d.root:
        raise NLKDError("no data set given: pass --data ROOT")
    size = tuple(d.size) if d.size else None
    if check and d.format == "folder":
        check_split(d.root, d.train_split, info.num_classes, info.ignore_index, d.labels)
        check_split(d.root, d.val_split, info.num_classes, info.ignore_index, d.val_labels)
    common = {"info": info, "size": size, "format": d.format}
    train_ds = FolderDataset(
        d.root, d.train_split, d.labels, train=True, seed=cfg.seed, scale=_pair(d.scale), hflip=d.hflip, **common
    )
    val_ds = FolderDataset(d.root, d.val_split, d.val_labels, train=False, **common)
    return train_ds, val_ds


def _pair(v: list[float] | None) -> tuple[float, float] | None:
    return None if v is None else (float(v[0]), float(v[1]))


def _coarse_flags(cfg: TrainConfig, ds: FolderDataset, required: bool) -> torch.Tensor | None:
    """(N,) bool: images flagged coarse, from ``strategy.coarse_list`` or the label folder's manifest
    (None when neither exists and the strategy does not need them; then they only serve diagnostics)."""
    if cfg.strategy.coarse_list:
        path = Path(cfg.strategy.coarse_list)
        if not path.is_file():
            raise DataError(f"{path}: coarse list not found")
        coarse = {ln.strip() for ln in path.read_text().splitlines() if ln.strip()}
    else:
        label_dir = Path(cfg.data.root) / "labels" / (cfg.data.labels or cfg.data.train_split)
        manifest = load_manifest(label_dir)
        if manifest is None and not required:
            return None
        if manifest is None:
            raise DataError(f"{label_dir}: no manifest.json; give strategy.coarse_list=FILE of coarse ids")
        coarse = set(manifest["corrupted"])
    return torch.tensor([i in coarse for i in ds.ids], dtype=torch.bool)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_resume_config(ckpt: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    """Refuse to resume a run with a different configuration, naming what differs. Where the run lives and
    runs (out, device, threads, loader workers, kept checkpoints) may change: the loader's order does not
    depend on workers."""
    # through the dataclass: a key added to the config since the run started counts as its default
    old, new = config_to_dict(config_from_dict(ckpt["config"])), config_to_dict(cfg)
    diffs = config_diffs(old, new, lambda key: key in RUN_PLACE)
    if diffs:
        raise NLKDError(f"{path} was written with a different config ({'; '.join(diffs)}); use a new --out")


@dataclass
class Run:
    """One training run between epochs: what :func:`build_run` set up and what each epoch updates."""

    cfg: TrainConfig
    dd: Distributed
    device: torch.device
    info: DatasetInfo
    train_ds: FolderDataset
    val_ds: FolderDataset
    strategy: Strategy
    models: list[nn.Module]  # DDP-wrapped under torchrun; checkpoint.unwrap gives the network
    optimizers: list[torch.optim.Optimizer]
    schedulers: list[Any]
    steps_per_epoch: int
    say: Log  # the log on rank 0, silent elsewhere
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per finished epoch
    best: float = -math.inf  # best val mIoU so far
    start_epoch: int = 0  # the first epoch still to train (from 0)
    scores: Tensor | None = None  # (N,) teacher scores of the training set, dataset order
    coarse: Tensor | None = None  # (N,) bool images flagged coarse
    separation: WeightSeparation = field(default_factory=WeightSeparation)  # network 0's weights, per epoch
    tb: TensorBoardLog | None = None  # log=tensorboard, rank 0

    def __post_init__(self) -> None:
        cfg = self.cfg
        self.out = Path(cfg.out)
        self.layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
        # bfloat16 needs no loss scaling; float16 AMP (CUDA only) does
        self.use_amp = cfg.bf16 or (cfg.amp and self.device.type == "cuda")
        self.amp_dtype = torch.bfloat16 if cfg.bf16 else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and not cfg.bf16)
        self.drop_last = len(self.train_ds) > cfg.batch_size
        self.strategy_from = strategy_start_epoch(cfg)  # plain CE before this epoch (strategy.start)


def train(cfg: TrainConfig, resume: bool = False, log: Log = print) -> dict[str, Any]:
    """Train as configured; returns the last epoch's record (also the last line of metrics.jsonl).

    ``cfg.threads`` holds for this call only: the caller's torch thread count is restored on return."""
    check_config(cfg)
    saved = _saved_run(cfg, resume)
    if saved is not None and saved["epoch"] + 1 >= cfg.epochs:
        log(f"{cfg.out} is already complete ({saved['epoch'] + 1}/{cfg.epochs} epochs); nothing to do")
        return saved["history"][-1]
    threads = torch.get_num_threads()
    try:
        run = build_run(cfg, saved, log)
        record: dict[str, Any] = run.history[-1] if run.history else {}
        for epoch in range(run.start_epoch, cfg.epochs):
            record = run_epoch(run, epoch)
        finish(run)
    finally:
        torch.set_num_threads(threads)
    return record


def _saved_run(cfg: TrainConfig, resume: bool) -> dict[str, Any] | None:
    """``last.pt`` of the run at ``cfg.out`` when resuming it, else the plain-CE state ``cfg.init_from``
    continues (:func:`nlkd.branch.branch_point`), else None; never train over an existing run by accident,
    nor continue it with a different configuration."""
    last = Path(cfg.out) / "last.pt"
    if not last.is_file():
        return None if cfg.init_from is None else branch_point(cfg)
    if not resume:
        raise NLKDError(f"{cfg.out} already holds a run; pass --resume to continue it, or choose another --out")
    ckpt = load_checkpoint(last)
    _check_resume_config(ckpt, cfg, last)
    return ckpt


def build_run(cfg: TrainConfig, saved: dict[str, Any] | None, log: Log) -> Run:
    """Everything before the first epoch: process group and device, data, strategy, models, optimisers and
    schedules, the ``saved`` state of ``last.pt`` or a fresh run folder, teacher scores, coarse flags, and
    the DDP wrappers."""
    dd = setup_distributed(cfg.device)
    device = resolve_device(cfg.device, dd.local_rank)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    info = dataset_info(cfg)
    train_ds, val_ds = build_datasets(cfg, info)
    strategy = create_strategy(cfg.strategy, info.num_classes, info.ignore_index, cfg.epochs)
    _check_teacher(cfg, info, scores=strategy.needs_teacher, maps=TEACHER_PROB in strategy.needs_extras)
    models = _build_models(cfg, info, strategy.num_networks, device)
    if cfg.batch_size // dd.world_size < 1 or cfg.batch_size % dd.world_size:
        raise NLKDError(f"batch_size {cfg.batch_size} must be a multiple of the {dd.world_size} processes")
    n = len(train_ds)
    steps = (n // cfg.batch_size) if n > cfg.batch_size else math.ceil(n / cfg.batch_size)
    optimizers, schedulers = _build_optimizers(cfg, models, steps)
    say = RunLog(log, Path(cfg.out) / "train.log") if dd.main else _silent
    loaded = _load_encoder_weights(cfg, models)  # before the run folder exists: a bad file leaves nothing
    run = Run(cfg, dd, device, info, train_ds, val_ds, strategy, models, optimizers, schedulers, steps, say)
    if cfg.log == "tensorboard" and dd.main:
        run.tb = TensorBoardLog(run.out, cfg.log_images_every, info, 0 if saved is None else saved["epoch"] + 1)
    _resume_or_start(run, saved)
    for line in loaded:
        say(line)
    d = cfg.data
    pairs = [(d.train_split, d.labels), (d.val_split, d.val_labels)]
    for line in [*data_warnings(info, d.root, pairs, d.format), *precision_warnings(cfg.bf16, device)]:
        say(f"warning: {line}")
    _attach_extras(run)
    run.scores = _teacher_scores(run)
    coarse = _coarse_flags(cfg, train_ds, strategy.needs_coarse_flags)
    run.coarse = None if coarse is None else coarse.to(device)
    if dd.enabled:
        ids = [device.index] if device.type == "cuda" else None
        run.models = [nn.parallel.DistributedDataParallel(m, device_ids=ids) for m in models]
    return run


def _load_encoder_weights(cfg: TrainConfig, models: list[nn.Module]) -> list[str]:
    """A local ``model.encoder_weights`` file into the encoder of every network built from ``cfg.model``;
    returns the lines to log."""
    path, lines = cfg.model.encoder_weights, []
    if not is_weights_file(path):
        return lines
    for k, m in enumerate(models):
        if k == 0 or cfg.strategy.peer_model in (None, cfg.model.name):
            loaded, unused = load_encoder_weights(m, path, cfg.model.name)
            lines.append(f"loaded {loaded} tensors into the encoder of network {k} from {path} ({unused} keys unused)")
    return lines


def _attach_extras(run: Run) -> None:
    """Give the training set the per-image maps the strategy needs (``needs_extras``), and the fine masks
    of a ``nlkd corrupt`` label folder when they can be found (for the corrupted-pixel diagnostics)."""
    for name in run.strategy.needs_extras:
        if name not in EXTRA_PROVIDERS:
            raise NLKDError(f"strategy {run.strategy.name!r} needs {name!r}, which no data provider offers")
        run.train_ds.add_extra(name, EXTRA_PROVIDERS[name](run.cfg, run.train_ds, run.device))
    if "fine_mask" not in run.train_ds.extras:
        with contextlib.suppress(DataError):  # no manifest or no fine masks: only the diagnostics go without
            run.train_ds.add_extra("fine_mask", EXTRA_PROVIDERS["fine_mask"](run.cfg, run.train_ds, run.device))


def _silent(*args: Any, **kwargs: Any) -> None:
    pass


class RunLog:
    """Rank 0's log: each message goes to ``log`` and, once the run folder exists, into its ``train.log``
    (with the time; rewritten atomically, a few KB)."""

    def __init__(self, log: Log, path: Path) -> None:
        self.log, self.path = log, path

    def __call__(self, message: str) -> None:
        self.log(message)
        if self.path.parent.is_dir():
            old = self.path.read_text(encoding="utf-8") if self.path.is_file() else ""
            atomic_write_text(self.path, f"{old}{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


def _build_models(cfg: TrainConfig, info: DatasetInfo, n: int, device: torch.device) -> list[nn.Module]:
    """The strategy's ``n`` networks from ``cfg.seed`` (network 1 is ``strategy.peer_model`` when set)."""
    _seed_everything(cfg.seed)
    peer, layout = cfg.strategy.peer_model, torch.channels_last if cfg.channels_last else torch.contiguous_format
    models = [build_model(cfg, info, peer if k == 1 else None).to(device) for k in range(n)]
    return [m.to(memory_format=layout) for m in models]


def _build_optimizers(
    cfg: TrainConfig, models: list[nn.Module], steps_per_epoch: int
) -> tuple[list[torch.optim.Optimizer], list[Any]]:
    """One optimiser and one per-step LR schedule per network."""
    o = cfg.optim
    optimizers = [build_optimizer(o.name, m.parameters(), o.lr, o.weight_decay) for m in models]
    total = cfg.epochs * steps_per_epoch
    schedulers = [build_scheduler(o.schedule, opt, total, steps_per_epoch, o.warmup_steps) for opt in optimizers]
    return optimizers, schedulers


def _resume_or_start(run: Run, saved: dict[str, Any] | None) -> None:
    """Restore models, optimisers, schedules, strategy, RNG and history from ``saved`` (``last.pt``, or the
    checkpoint ``init_from`` continues), or start a fresh run folder with its ``config.yaml``."""
    branched = saved is not None and "branched_from" in saved
    if saved is not None and len(saved["models"]) != len(run.models):
        where = saved.get("branched_from", run.out / "last.pt")
        n, name = len(saved["models"]), run.strategy.name
        raise NLKDError(f"{where} holds {n} networks; strategy {name!r} trains {len(run.models)}")
    if (saved is None or branched) and run.dd.main:
        run.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.out / "config.yaml", yaml.safe_dump(config_to_dict(run.cfg), sort_keys=False))
    if saved is not None:
        for m, sd in zip(run.models, saved["models"]):
            m.load_state_dict(sd)
        for opt, sd in zip(run.optimizers, saved["optimizers"]):
            opt.load_state_dict(sd)
        for sch, sd in zip(run.schedulers, saved["schedulers"]):
            sch.load_state_dict(sd)
        run.strategy.load_state_dict(saved["strategy"])
        set_rng_state(saved["rng"])
        run.start_epoch, run.history, run.best = saved["epoch"] + 1, saved["history"], saved["best"]
        if not branched:
            run.say(f"resuming {run.out} after epoch {saved['epoch'] + 1}/{run.cfg.epochs}")
            return
        best = Path(saved["branched_from"]).with_name("best.pt")  # the best epoch so far, beside the checkpoint
        if run.dd.main and best.is_file():
            atomic_write_bytes(run.out / "best.pt", best.read_bytes())
        done = f"{saved['epoch'] + 1}/{run.cfg.epochs}"
        run.say(f"continuing the plain-CE run {saved['branched_from']} after epoch {done}")


def _check_teacher(cfg: TrainConfig, info: DatasetInfo, *, scores: bool, maps: bool) -> None:
    """Before anything is written: a strategy that needs teacher ``scores`` has a teacher or teacher scores,
    one that needs the teacher's probability ``maps`` has a teacher checkpoint, and a teacher checkpoint is a
    file that knows the data set's classes and ignore index."""
    s = cfg.strategy
    needed = maps or (scores and not s.teacher_scores)
    if needed and not s.teacher:
        also = "" if maps else " (or --teacher-scores CSV)"
        raise DataError(f"strategy {s.name!r} needs a teacher: pass --teacher CKPT{also}")
    if needed and Path(s.teacher).is_dir():
        raise DataError(f"{s.teacher}: a folder, not a teacher checkpoint; pass a file such as its best.pt")
    if needed and not Path(s.teacher).is_file():
        raise DataError(f"{s.teacher}: teacher checkpoint not found")
    if maps and cfg.data.size is None:
        raise ConfigError("teacher probability maps need a fixed training size: pass --size HxW")
    if s.teacher and Path(s.teacher).is_file():
        check_matches_data(checkpoint_info(load_checkpoint(s.teacher)), info, s.teacher)


def _teacher_scores(run: Run) -> Tensor | None:
    """(N,) teacher scores of the training set on the device, for strategies that need them (rank 0
    computes and caches them once, every rank receives them); the strategy's ``setup`` sees them all."""
    if not run.strategy.needs_teacher:
        return None
    s, scores = run.cfg.strategy, None
    if run.dd.main:
        scores = teacher_scores(
            run.train_ds,
            teacher=s.teacher,
            scores_csv=s.teacher_scores,
            metric=s.metric,
            tolerance=s.tolerance,
            cache_dir=run.out,
            device=run.device,
            log=run.say,
        )
    if run.dd.enabled:
        box = [scores]
        dist.broadcast_object_list(box, src=0)
        scores = box[0]
    if s.shuffle_scores:
        scores = shuffled(scores, run.cfg.seed)
    scores = scores.to(run.device)
    run.strategy.setup(scores)  # e.g. discard decides its cut-off once, from the whole training set
    return scores


def shuffled(scores: Tensor, seed: int) -> Tensor:
    """``scores`` (N,) in the order of a random permutation drawn from ``seed`` (its own generator: the
    run's random streams are untouched): the ``strategy.shuffle_scores`` control."""
    return scores[torch.randperm(len(scores), generator=torch.Generator().manual_seed(seed))]


def run_epoch(run: Run, epoch: int) -> dict[str, Any]:
    """Train epoch ``epoch`` (from 0), validate network 0, and on rank 0 write ``last.pt`` (``best.pt``),
    ``metrics.jsonl`` and ``curves.png``; returns the epoch's record."""
    cfg, dd = run.cfg, run.dd
    t0 = time.perf_counter()
    for m in run.models:
        m.train()
    loss_sum, n_seen = 0.0, 0
    batches = _progress(_epoch_loader(run, epoch), f"epoch {epoch + 1}/{cfg.epochs}", dd.main)
    for step, batch in enumerate(batches):
        total = train_step(run, batch, epoch, step)
        loss_sum += float(total) * len(batch["mask"])
        n_seen += len(batch["mask"])
        batches.set_postfix(loss=f"{loss_sum / n_seen:.4f}")
    train_seconds = time.perf_counter() - t0
    if dd.enabled:
        loss_sum, n_seen = _gather_epoch_logs(loss_sum, n_seen, run.strategy)
        _broadcast_buffers(run.models[0])
    model = unwrap(run.models[0])
    val = evaluate(model, run.val_ds, run.device, cfg.eval_tolerance, rank=dd.rank, world_size=dd.world_size)
    record = {
        "epoch": epoch + 1,
        "train_loss": loss_sum / max(n_seen, 1),
        **run.strategy.log.pop(),
        **run.separation.pop(gather=dd.enabled),
        "lr": run.optimizers[0].param_groups[0]["lr"],
        "val_miou": val["miou"],
        "val_bf": val["bf"],
        "val_pixel_accuracy": val["pixel_accuracy"],
        **{f"val_{k}": val[k] for k in BOUNDARY_KEYS},
        "train_seconds": train_seconds,
        "seconds": time.perf_counter() - t0,
    }
    run.history.append(record)
    improved = record["val_miou"] > run.best
    run.best = max(run.best, record["val_miou"])
    if dd.main:
        _save_epoch(run, epoch, improved)
        run.say(epoch_line(record))
        if run.tb is not None:
            run.tb.epoch(record, epoch + 1 == cfg.epochs, model, run.val_ds, run.device)
    return record


def epoch_line(record: dict[str, Any]) -> str:
    """A metrics.jsonl record as printed: validation metrics and loss shares in percent, as papers give them
    (``val_miou=51.23%``); losses, λ, weights, lr and seconds as they are. The JSON keeps fractions."""
    parts = []
    for k, v in record.items():
        if isinstance(v, float) and ((k.startswith("val_") and k != "val_loss") or k.startswith("loss_share")):
            parts.append(f"{k}={100 * v:.2f}%")
        else:
            parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def _epoch_loader(run: Run, epoch: int) -> Iterable[dict[str, Tensor]]:
    """This process's batches of epoch ``epoch``: order and augmentation are a function of (seed, epoch)."""
    dd, seed = run.dd, run.cfg.seed * 1_000_003 + epoch
    sampler = None
    if dd.enabled:
        sampler = DistributedSampler(
            run.train_ds, dd.world_size, dd.rank, shuffle=True, seed=seed, drop_last=run.drop_last
        )
    return make_loader(
        run.train_ds,
        run.cfg.batch_size // dd.world_size,
        shuffle=sampler is None,
        seed=seed,
        num_workers=run.cfg.data.num_workers,
        drop_last=run.drop_last,
        sampler=sampler,
    )


def _progress(batches: Iterable[dict[str, Tensor]], desc: str, show: bool) -> progress:
    """A progress bar over the epoch's batches on a terminal; nothing off it (the epoch's line says it)."""
    return progress(batches, desc, unit="batch", show=show, summary=False)


def train_step(run: Run, batch: dict[str, Tensor], epoch: int, step: int) -> Tensor:
    """One optimisation step of every network on ``batch``; returns the total loss (detached scalar).

    Each network's logits -> per-image CE (+ the model's auxiliary loss) -> the strategy's weights
    (per image; per pixel / soft target / target set for pixel-level strategies, whose per-image loss is
    then recomputed by ``per_image_loss``) -> weighted loss, summed over the networks -> backward ->
    optimiser and LR schedule step.
    """
    ignore = run.info.ignore_index
    images = batch["image"].to(run.device, memory_format=run.layout)
    target, index = batch["mask"].to(run.device), batch["index"].to(run.device)
    with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.use_amp):
        logits = [m(images) for m in run.models]
    aux = [auxiliary_loss(m, target, ignore) for m in run.models]
    losses = [per_image_cross_entropy(lg.float(), target, ignore) + a for lg, a in zip(logits, aux)]
    inputs = StepInputs(
        index=index,
        target=target,
        logits=logits,
        losses=losses,
        epoch=epoch,
        step=step,
        steps_per_epoch=run.steps_per_epoch,
        teacher_scores=None if run.scores is None else run.scores[index],
        coarse=None if run.coarse is None else run.coarse[index],
        extras={k: v.to(run.device) for k, v in batch.get("extras", {}).items()},
    )
    weights = strategy_weights(run, inputs)
    run.separation.add(weights[0], inputs, ignore)
    reduction = run.cfg.strategy.reduction
    total = sum(
        network_loss(lw, ls, a, lg, target, ignore, reduction) for lw, ls, a, lg in zip(weights, losses, aux, logits)
    )
    if not torch.isfinite(total):
        last = run.out / "last.pt"
        kept = f"{last} is the last good checkpoint" if last.is_file() else "no checkpoint written"
        raise NLKDError(f"loss became {float(total.detach())} at epoch {epoch + 1}, step {step + 1}; stopped, {kept}")
    _optimize(run, total)
    return total.detach()


def strategy_weights(run: Run, inputs: StepInputs) -> list[LossWeights]:
    """The strategy's weights, or plain CE's (every image 1) before its start epoch (``strategy.start``)."""
    if inputs.epoch < run.strategy_from:
        return [LossWeights(Strategy.ones(inputs)) for _ in run.models]
    return run.strategy.loss_weights(inputs)


def _optimize(run: Run, total: Tensor) -> None:
    """Backward through ``total`` (loss-scaled under float16 AMP), clip, and step optimisers and schedules."""
    for opt in run.optimizers:
        opt.zero_grad(set_to_none=True)
    run.scaler.scale(total).backward()
    clip = run.cfg.optim.grad_clip
    for m, opt in zip(run.models, run.optimizers):
        if clip:
            run.scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(m.parameters(), clip)
        run.scaler.step(opt)
    run.scaler.update()
    for sch in run.schedulers:
        sch.step()


def _save_epoch(run: Run, epoch: int, improved: bool) -> None:
    """``last.pt`` (and ``best.pt`` when ``improved``), ``metrics.jsonl`` and ``curves.png``, atomically."""
    if improved:  # best.pt first: a crash in between leaves last.pt behind, and --resume redoes it
        weights = make_checkpoint(run.cfg, run.info, run.models, epoch, best=run.best)
        atomic_write_bytes(run.out / "best.pt", checkpoint_bytes(weights))
    ckpt = make_checkpoint(
        run.cfg,
        run.info,
        run.models,
        epoch,
        history=run.history,
        best=run.best,
        rng=rng_state(),
        optimizers=[opt.state_dict() for opt in run.optimizers],
        schedulers=[s.state_dict() for s in run.schedulers],
        strategy=run.strategy.state_dict(),
    )
    data = checkpoint_bytes(ckpt)
    atomic_write_bytes(run.out / "last.pt", data)
    if epoch + 1 in run.cfg.keep_epochs:  # e.g. where a late strategy continues it (init_from)
        kept = run.out / f"epoch{epoch + 1}"
        kept.mkdir(exist_ok=True)
        if (run.out / "best.pt").is_file():  # none only in a run continued from a last.pt without its best.pt
            atomic_write_bytes(kept / "best.pt", (run.out / "best.pt").read_bytes())
        atomic_write_bytes(kept / "last.pt", data)
    atomic_write_text(run.out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in run.history))
    _plot(run.out)


def finish(run: Run) -> None:
    """End the run: the summary (rank 0; also in ``train.log``); under DDP, wait for every process."""
    if run.dd.main and run.history:
        for line in summary(run):
            run.say(line)
    if run.tb is not None:
        run.tb.close()
    if run.dd.enabled:
        dist.barrier()  # a barrier before teardown avoids a gloo abort seen with torch 2.14.1


def summary(run: Run) -> list[str]:
    """What a person wants at the end: where and what was trained, the best epoch, the checkpoints."""
    cfg, out = run.cfg, run.out
    best = max(run.history, key=lambda r: r["val_miou"])  # the first best epoch, the one in best.pt
    model = cfg.model.name + (f" ({cfg.model.encoder})" if cfg.model.encoder else "")
    where = f"{run.device}" + (f" x {run.dd.world_size} processes" if run.dd.enabled else "")
    images = f"{len(run.train_ds)} training / {len(run.val_ds)} validation images"
    epochs = f"{len(run.history)} epoch" + ("s" if len(run.history) != 1 else "")
    size = {n: (out / n).stat().st_size / 1e6 for n in ("best.pt", "last.pt") if (out / n).is_file()}
    return [
        f"done: {out}: {model}, strategy {cfg.strategy.name}, {epochs} on {where}, {images}",
        f"best: epoch {best['epoch']}, val mIoU {100 * best['val_miou']:.2f}%, BF {100 * best['val_bf']:.2f}%, "
        f"pixel accuracy {100 * best['val_pixel_accuracy']:.2f}%",
        f"checkpoints: {out / 'best.pt'} (weights, {size.get('best.pt', 0):.0f} MB), "
        f"{out / 'last.pt'} (for --resume, {size.get('last.pt', 0):.0f} MB)",
    ]


def _gather_epoch_logs(loss_sum: float, n_seen: int, strategy: Any) -> tuple[float, int]:
    """Under DDP: the epoch's loss sum and image count, and the strategy's logged means, over all
    processes (each process saw only its share of the batches)."""
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (loss_sum, n_seen, dict(strategy.log.sums), dict(strategy.log.counts)))
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for _, _, s, c in parts:  # keys may differ between processes (e.g. no coarse image in a share)
        for k in s:
            sums[k] = sums.get(k, 0.0) + s[k]
            counts[k] = counts.get(k, 0) + c[k]
    strategy.log.sums, strategy.log.counts = sums, counts
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def _broadcast_buffers(model: nn.Module) -> None:
    """Give every process rank 0's buffers (BatchNorm running statistics). DDP broadcasts them before
    each forward, so after the last training step the other ranks still hold statistics updated by
    their own last batch; evaluation must use the weights and statistics that are saved."""
    for b in model.buffers():
        dist.broadcast(b, src=0)


def _plot(out: Path) -> None:
    from nlkd.plots import plot_curves

    plot_curves(out / "metrics.jsonl", out / "curves.png")
