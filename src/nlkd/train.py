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

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from nlkd.checkpoint import build_model, load_checkpoint, make_checkpoint
from nlkd.config import TrainConfig, check_config, config_from_dict, config_to_dict
from nlkd.data.folder import FolderDataset, make_loader
from nlkd.data.info import DatasetInfo, load_dataset_info
from nlkd.data.validate import check_split
from nlkd.errors import DataError, NLKDError
from nlkd.evaluate import evaluate
from nlkd.io import atomic_write_bytes, atomic_write_text, checkpoint_bytes
from nlkd.models import auxiliary_loss
from nlkd.noise import load_manifest
from nlkd.optim import build_optimizer, build_scheduler
from nlkd.strategies import StepInputs, create_strategy
from nlkd.teacher import teacher_scores
from nlkd.weighting import per_image_cross_entropy, weighted_loss

__all__ = ["Distributed", "build_datasets", "resolve_device", "train"]


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_name: str) -> Distributed:
    """Join the process group when started by ``torchrun`` (WORLD_SIZE > 1): NCCL on GPUs, else gloo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device_name != "cpu" else "gloo"
        dist.init_process_group(backend)
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> the local GPU if there is one, else the CPU."""
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NLKDError(f"device {name!r} requested but CUDA is not available; use --set device=cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise NLKDError(f"device {name!r} not understood; use auto, cpu, cuda or cuda:N") from None


def dataset_info(cfg: TrainConfig) -> DatasetInfo:
    if not cfg.data.root:
        raise NLKDError("no data set given: pass --data ROOT")
    if not Path(cfg.data.root).is_dir():
        raise DataError(f"{cfg.data.root}: data folder not found")
    if cfg.data.format == "cityscapes":
        from nlkd.data.formats import CITYSCAPES_INFO

        return CITYSCAPES_INFO
    if cfg.data.format == "supervisely":
        from nlkd.data.formats import SUPERVISELY_INFO

        return SUPERVISELY_INFO
    return load_dataset_info(cfg.data.root, cfg.data.num_classes, cfg.data.ignore_index)


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


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_resume_config(ckpt: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    """Refuse to resume a run with a different configuration, naming what differs. Where the run lives and
    runs (out, device, threads, loader workers) may change: the loader's order does not depend on workers."""
    # through the dataclass: a key added to the config since the run started counts as its default
    old, new = config_to_dict(config_from_dict(ckpt["config"])), config_to_dict(cfg)
    diffs: list[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{prefix}{k}.")
        elif a != b and prefix[:-1] not in ("out", "device", "threads", "data.num_workers"):
            diffs.append(f"{prefix[:-1]}: {a!r} -> {b!r}")

    walk(old, new, "")
    if diffs:
        raise NLKDError(f"{path} was written with a different config ({'; '.join(diffs)}); use a new --out")


def train(cfg: TrainConfig, resume: bool = False, log: Any = print) -> dict[str, Any]:
    """Train as configured; returns the last epoch's record (also the last line of metrics.jsonl)."""
    check_config(cfg)
    dd = setup_distributed(cfg.device)
    device = resolve_device(cfg.device, dd.local_rank)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    say = log if dd.main else (lambda *a, **k: None)
    out = Path(cfg.out)
    info = dataset_info(cfg)
    train_ds, val_ds = build_datasets(cfg, info)
    strategy = create_strategy(cfg.strategy, info.num_classes, info.ignore_index, cfg.epochs)

    _seed_everything(cfg.seed)
    peer = cfg.strategy.peer_model
    models = [build_model(cfg, info, peer if k == 1 else None).to(device) for k in range(strategy.num_networks)]
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    models = [m.to(memory_format=layout) for m in models]
    n_per_rank = cfg.batch_size // dd.world_size
    if n_per_rank < 1 or cfg.batch_size % dd.world_size:
        raise NLKDError(f"batch_size {cfg.batch_size} must be a multiple of the {dd.world_size} processes")
    drop_last = len(train_ds) > cfg.batch_size
    steps_per_epoch = (len(train_ds) // cfg.batch_size) if drop_last else math.ceil(len(train_ds) / cfg.batch_size)
    o = cfg.optim
    optimizers = [build_optimizer(o.name, m.parameters(), o.lr, o.weight_decay) for m in models]
    schedulers = [
        build_scheduler(o.schedule, opt, cfg.epochs * steps_per_epoch, steps_per_epoch, o.warmup_steps)
        for opt in optimizers
    ]
    # bfloat16 needs no loss scaling; float16 AMP (CUDA only) does
    use_amp = cfg.bf16 or (cfg.amp and device.type == "cuda")
    amp_dtype = torch.bfloat16 if cfg.bf16 else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not cfg.bf16)

    start_epoch, history, best = 0, [], -math.inf
    if not resume and (out / "last.pt").is_file():
        raise NLKDError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    if resume and (out / "last.pt").is_file():
        ckpt = load_checkpoint(out / "last.pt")
        _check_resume_config(ckpt, cfg, out / "last.pt")
        for m, sd in zip(models, ckpt["models"]):
            m.load_state_dict(sd)
        for opt, sd in zip(optimizers, ckpt["optimizers"]):
            opt.load_state_dict(sd)
        for sch, sd in zip(schedulers, ckpt["schedulers"]):
            sch.load_state_dict(sd)
        strategy.load_state_dict(ckpt["strategy"])
        _set_rng_state(ckpt["rng"])
        start_epoch, history, best = ckpt["epoch"] + 1, ckpt["history"], ckpt["best"]
        say(f"resuming {out} after epoch {ckpt['epoch']}")
    elif dd.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))

    scores = None
    if strategy.needs_teacher:
        s = cfg.strategy
        if dd.main:
            scores = teacher_scores(
                train_ds,
                teacher=s.teacher,
                scores_csv=s.teacher_scores,
                metric=s.metric,
                tolerance=s.tolerance,
                cache_dir=out,
                device=device,
                log=say,
            )
        if dd.enabled:  # rank 0 computes (and caches) the scores once; every rank receives them
            box = [scores]
            dist.broadcast_object_list(box, src=0)
            scores = box[0]
        scores = scores.to(device)
        strategy.setup(scores)  # e.g. discard decides its cut-off once, from the whole training set
    coarse = _coarse_flags(cfg, train_ds, strategy.needs_coarse_flags)
    coarse = None if coarse is None else coarse.to(device)
    if dd.enabled:
        models = [
            nn.parallel.DistributedDataParallel(m, device_ids=[device.index] if device.type == "cuda" else None)
            for m in models
        ]

    record: dict[str, Any] = history[-1] if history else {}
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        seed = cfg.seed * 1_000_003 + epoch
        sampler = None
        if dd.enabled:
            sampler = DistributedSampler(train_ds, dd.world_size, dd.rank, shuffle=True, seed=seed, drop_last=drop_last)
        loader = make_loader(
            train_ds,
            n_per_rank,
            shuffle=sampler is None,
            seed=seed,
            num_workers=cfg.data.num_workers,
            drop_last=drop_last,
            sampler=sampler,
        )
        for m in models:
            m.train()
        loss_sum, n_seen = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not dd.main, leave=False)
        for step, batch in enumerate(bar):
            images, target = batch["image"].to(device, memory_format=layout), batch["mask"].to(device)
            index = batch["index"].to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                logits = [m(images) for m in models]
            losses = [
                per_image_cross_entropy(lg.float(), target, info.ignore_index)
                + auxiliary_loss(m, target, info.ignore_index)
                for m, lg in zip(models, logits)
            ]
            inputs = StepInputs(
                index,
                target,
                logits,
                losses,
                epoch,
                step,
                steps_per_epoch,
                None if scores is None else scores[index],
                None if coarse is None else coarse[index],
            )
            weights = strategy.weights(inputs)
            total = sum(weighted_loss(ls, w, cfg.strategy.reduction) for ls, w in zip(losses, weights))
            if not torch.isfinite(total):
                last = out / "last.pt"
                kept = f"{last} is the last good checkpoint" if last.is_file() else "no checkpoint written"
                where = f"epoch {epoch + 1}, step {step + 1}"
                raise NLKDError(f"loss became {float(total.detach())} at {where}; stopped, {kept}")
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            for m, opt in zip(models, optimizers):
                if o.grad_clip:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(m.parameters(), o.grad_clip)
                scaler.step(opt)
            scaler.update()
            for sch in schedulers:
                sch.step()
            loss_sum += float(total.detach()) * len(target)
            n_seen += len(target)
            bar.set_postfix(loss=f"{loss_sum / n_seen:.4f}")
        train_seconds = time.perf_counter() - t0
        if dd.enabled:
            loss_sum, n_seen = _gather_epoch_logs(loss_sum, n_seen, strategy)
            _broadcast_buffers(models[0])
        val = evaluate(
            models[0].module if dd.enabled else models[0],
            val_ds,
            device,
            cfg.eval_tolerance,
            rank=dd.rank,
            world_size=dd.world_size,
        )
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(n_seen, 1),
            **strategy.log.pop(),
            "lr": optimizers[0].param_groups[0]["lr"],
            "val_miou": val["miou"],
            "val_bf": val["bf"],
            "val_pixel_accuracy": val["pixel_accuracy"],
            "train_seconds": train_seconds,
            "seconds": time.perf_counter() - t0,
        }
        history.append(record)
        improved = record["val_miou"] > best
        best = max(best, record["val_miou"])
        if dd.main:
            ckpt = make_checkpoint(
                cfg,
                info,
                models,
                epoch,
                history=history,
                best=best,
                rng=_rng_state(),
                optimizers=[opt.state_dict() for opt in optimizers],
                schedulers=[s.state_dict() for s in schedulers],
                strategy=strategy.state_dict(),
            )
            data = checkpoint_bytes(ckpt)  # serialised once for both files
            if improved:  # best.pt first: a crash in between leaves last.pt behind, and --resume redoes it
                atomic_write_bytes(out / "best.pt", data)
            atomic_write_bytes(out / "last.pt", data)
            atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
            _plot(out)
            say(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
    if dd.enabled:
        dist.barrier()  # a barrier before teardown avoids a gloo abort seen with torch 2.14.1
    return record


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
