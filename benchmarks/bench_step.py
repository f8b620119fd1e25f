"""What NLKD costs per training step, and how close ``nlkd train`` gets to a bare PyTorch loop.

    python benchmarks/bench_step.py [--camvid ../shared/data/camvid] [--steps 20] [--quick]

1. Step time of ``nlkd`` (student scored every step, teacher scores cached) vs ``baseline`` with the
   same model, batch and size: steps interleaved in one run, median per step, ratio (target <= 1.05).
2. One ``nlkd train`` epoch on CamVid (data loading, augmentation, strategy, logging; training part
   only) vs a bare 20-line loop over the same model with all tensors preloaded: throughput ratio
   (target >= 0.9). Skipped when CamVid is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from nlkd.config import StrategyConfig, TrainConfig
from nlkd.models import create_model
from nlkd.optim import build_optimizer
from nlkd.strategies import StepInputs, create_strategy
from nlkd.weighting import per_image_cross_entropy, weighted_loss


def _step_medians(
    strategies: dict, steps: int, target: torch.Tensor, teacher: torch.Tensor, extras: dict | None = None
) -> dict[str, float]:
    """Median seconds of one U-Net-R18 training step per strategy (as the loop: its ``loss_weights``, the
    step's CE unless pixel-level terms are set), strategies interleaved, after 2 warm-up rounds."""
    from nlkd.weighting import per_image_loss

    torch.manual_seed(0)
    batch, size, classes = target.shape[0], tuple(target.shape[1:]), strategies["baseline"].num_classes
    model = create_model("unet", classes, encoder="resnet18")
    opt = build_optimizer("adamw", model.parameters(), 1e-3, 1e-4)
    images = torch.randn(batch, 3, *size)
    times: dict[str, list[float]] = {k: [] for k in strategies}
    for i in range(steps + 2):
        for name, strategy in strategies.items():
            t0 = time.perf_counter()
            logits = model(images)
            ce = per_image_cross_entropy(logits, target)
            inputs = StepInputs(
                index=torch.arange(batch),
                target=target,
                logits=[logits],
                losses=[ce],
                epoch=5,
                step=0,
                steps_per_epoch=10,
                teacher_scores=teacher,
                extras=extras or {},
            )
            lw = strategy.loss_weights(inputs)[0]
            per = ce if lw.image_only else per_image_loss(logits, target, None, lw.pixel, lw.soft_target, lw.target_set)
            loss = weighted_loss(per, lw.image)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= 2:  # warm-up
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def step_ratio(steps: int, batch: int, size: tuple[int, int], classes: int) -> None:
    """NLKD (student scored every step, teacher scores cached) vs baseline, interleaved in one run."""
    torch.manual_seed(0)
    target = torch.randint(0, classes, (batch, *size))
    strategies = {
        "baseline": create_strategy(StrategyConfig(name="baseline"), classes, None, 10),
        "nlkd": create_strategy(StrategyConfig(name="nlkd", warmup_epochs=0), classes, None, 10),
    }
    t = _step_medians(strategies, steps, target, torch.rand(batch))
    base, ours = t["baseline"], t["nlkd"]
    print(
        f"| step, U-Net-R18, batch {batch} at {size[0]}×{size[1]}, {classes} classes | baseline "
        f"{1e3 * base:.0f} ms | nlkd (cached teacher) {1e3 * ours:.0f} ms | ratio {ours / base:.3f} (target ≤ 1.05) |"
    )


def pixel_step_ratio(steps: int, batch: int, size: tuple[int, int], classes: int) -> None:
    """Pixel-level strategies (teacher maps cached, as ``extras``) vs baseline, interleaved in one run."""
    torch.manual_seed(0)
    target = torch.nn.functional.interpolate(torch.randint(0, classes, (batch, 1, size[0] // 8, size[1] // 8)).float(),
                                             size=size, mode="nearest")[:, 0].long()  # fmt: skip
    extras = {"teacher_prob": torch.rand(batch, classes, *size).softmax(1)}  # as the cache delivers them
    names = ["baseline", "relax", "band_kd", "nlkd_pixel", "adele"]
    strategies = {n: create_strategy(StrategyConfig(name=n, warmup_epochs=0), classes, None, 10) for n in names}
    strategies["adele"].triggered[:] = True  # worst case: every class corrected
    t = _step_medians(strategies, steps, target, torch.rand(batch), extras)
    for name in names[1:]:
        print(
            f"| step, U-Net-R18, batch {batch} at {size[0]}×{size[1]}, {classes} classes | baseline "
            f"{1e3 * t['baseline']:.0f} ms | {name} (cached teacher maps) {1e3 * t[name]:.0f} ms | ratio "
            f"{t[name] / t['baseline']:.3f} (target ≤ 1.15) |"
        )


SPEED_OPTIONS = {  # name: (channels_last, bf16 autocast, torch.compile)
    "fp32 eager (today's default)": (False, False, False),
    "channels_last": (True, False, False),
    "bf16 autocast": (False, True, False),
    "bf16 + channels_last (bf16=true channels_last=true)": (True, True, False),
    "torch.compile": (False, False, True),
    "torch.compile + bf16 + channels_last": (True, True, True),
}


def speed_options(steps: int, batch: int, size: tuple[int, int], classes: int, compile_: bool = True) -> None:
    """The U-Net-R18 training step with ``channels_last``, bf16 autocast and ``torch.compile``, alone and
    together, against fp32 eager: one model copy per variant (same initial weights), steps interleaved,
    median per variant after 3 warm-up steps (compilation happens there)."""
    torch.manual_seed(0)
    base = create_model("unet", classes, encoder="resnet18")
    images = torch.randn(batch, 3, *size)
    target = torch.randint(0, classes, (batch, *size))
    variants = {}
    for name, (cl, bf16, comp) in SPEED_OPTIONS.items():
        if comp and not compile_:
            continue
        model = create_model("unet", classes, encoder="resnet18")
        model.load_state_dict(base.state_dict())
        layout = torch.channels_last if cl else torch.contiguous_format
        model = model.to(memory_format=layout)
        opt = build_optimizer("adamw", model.parameters(), 1e-3, 1e-4)
        step_model = torch.compile(model) if comp else model
        variants[name] = (step_model, opt, images.contiguous(memory_format=layout), bf16)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(steps + 3):
        for name, (model, opt, x, bf16) in variants.items():
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.float(), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= 3:
                times[name].append(time.perf_counter() - t0)
    ref = statistics.median(times[next(iter(times))])
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"| step, U-Net-R18, batch {batch} at {size[0]}×{size[1]} | {name} | {1e3 * t:.0f} ms | {ref / t:.2f}× |")


def epoch_ratio(camvid: Path, size: tuple[int, int], batch: int) -> None:
    from nlkd.data.folder import FolderDataset
    from nlkd.data.info import DatasetInfo
    from nlkd.train import train

    work = Path(tempfile.mkdtemp(prefix="bench_step_"))
    root = work / "data"
    for kind in ("images", "labels"):
        for split in ("train", "val"):
            (root / kind).mkdir(parents=True, exist_ok=True)
            (root / kind / split).symlink_to((camvid / kind / split).resolve())
    (root / "dataset.yaml").write_text("num_classes: 11\nignore_index: 11\n")
    info = DatasetInfo(11, 11)
    # Bare loop: same model and optimiser, every batch preloaded as tensors, no augmentation.
    ds = FolderDataset(root, "train", info=info, size=size)
    xs = [torch.stack([ds[j]["image"] for j in range(i, i + batch)]) for i in range(0, len(ds) - batch + 1, batch)]
    ys = [torch.stack([ds[j]["mask"] for j in range(i, i + batch)]) for i in range(0, len(ds) - batch + 1, batch)]
    torch.manual_seed(0)
    model = create_model("unet", 11, encoder="resnet18")
    opt = build_optimizer("adamw", model.parameters(), 1e-3, 1e-4)
    model.train()
    t0 = time.perf_counter()
    for x, y in zip(xs, ys):
        loss = torch.nn.functional.cross_entropy(model(x), y.masked_fill(y == 11, -100), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    bare = time.perf_counter() - t0
    n = len(xs) * batch
    scores = work / "scores.csv"  # cached teacher scores, so the epoch runs the full nlkd strategy
    scores.write_text("id,weight\n" + "".join(f"{i},{0.5 + (k % 7) / 20}\n" for k, i in enumerate(ds.ids)))
    cfg = TrainConfig(epochs=1, batch_size=batch, out=str(work / "run"), device="cpu")
    cfg.data.root, cfg.data.size = str(root), list(size)
    cfg.strategy.name, cfg.strategy.teacher_scores, cfg.strategy.warmup_epochs = "nlkd", str(scores), 0
    train(cfg, log=lambda *a, **k: None)
    rec = json.loads((work / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    ours = rec["train_seconds"]
    print(
        f"| epoch on CamVid train ({n} images at {size[0]}×{size[1]}, batch {batch}) | bare loop {n / bare:.1f} img/s "
        f"| nlkd train {n / ours:.1f} img/s | throughput ratio {bare / ours:.3f} (target ≥ 0.9) |"
    )


def ddp_ratio(epochs: int = 2) -> None:
    """One process with 2 threads vs 2 DDP processes (gloo) with 1 thread each, same global batch."""
    import subprocess

    from nlkd.data.synth import make_synthetic

    work = Path(tempfile.mkdtemp(prefix="bench_ddp_"))
    make_synthetic(work / "data", seed=0, n_train=160, n_val=8, n_test=8)
    common = ["train", "--data", str(work / "data"), "--epochs", str(epochs), "--batch-size", "8", "--size", "96x128"]
    runs = {
        "1 process × 2 threads": [sys.executable, "-m", "nlkd", *common, "--set", "threads=2"],
        "2 processes (DDP, gloo) × 1 thread": [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "nlkd",
            *common,
            "--set",
            "threads=1",
        ],
    }
    rates = {}
    for name, cmd in runs.items():
        out = work / name.split()[0]
        subprocess.run(
            [*cmd, "--out", str(out)], check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
        recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        rates[name] = 160 / statistics.median(r["train_seconds"] for r in recs)
    a, b = rates.values()
    print(
        f"| DDP on synthetic data (160 images at 96×128, global batch 8, {epochs} epochs) | "
        + " | ".join(f"{k}: {v:.1f} img/s" for k, v in rates.items())
        + f" | ratio {b / a:.2f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--camvid", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/camvid")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ddp", action="store_true", help="also compare 2 DDP processes with 1 process")
    ap.add_argument("--pixel", action="store_true", help="only the pixel-level strategies' step ratios")
    ap.add_argument("--quick", action="store_true", help="3 steps at 32×48, no epoch or DDP (seconds)")
    ap.add_argument(
        "--speed-options",
        action="store_true",
        help="only the step with channels_last / bf16 autocast / torch.compile vs fp32 eager (120×160)",
    )
    ap.add_argument("--no-compile", action="store_true", help="--speed-options without the torch.compile variants")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# bench_step — {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} threads; command: {' '.join(sys.argv)}"
    )
    if args.speed_options:
        size = (32, 48) if args.quick else (120, 160)
        speed_options(2 if args.quick else args.steps, 2 if args.quick else 8, size, 11, not args.no_compile)
        return
    if args.pixel:
        pixel_step_ratio(args.steps, 8, (96, 128), 11)
        return
    if args.quick:
        step_ratio(3, 2, (32, 48), 11)
        return
    step_ratio(args.steps, 8, (96, 128), 11)
    if (args.camvid / "images" / "train").is_dir():
        epoch_ratio(args.camvid, (96, 128), 8)
    else:
        print(f"(CamVid not found at {args.camvid}: epoch comparison skipped)")
    if args.ddp:
        ddp_ratio()


if __name__ == "__main__":
    main()
