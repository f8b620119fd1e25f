"""CPU cost of every registered model: parameters, forward time, forward+backward time.

Run from the repository root::

    .venv/bin/python benchmarks/bench_models.py                 # batch 4 at 96x128, 2 threads
    .venv/bin/python benchmarks/bench_models.py --models unet pointrend --reps 10
    .venv/bin/python benchmarks/bench_models.py --quick     # batch 2 at 64x64, once (seconds; for the tests)

Forward is measured in eval mode under ``torch.inference_mode`` (PointRend's adaptive subdivision
included); forward+backward in train mode with the loss the training loop uses: per-image CE plus the
model's auxiliary loss. Each time is the median of ``--reps`` runs after ``--warmup`` runs. Prints a
markdown table with the command and machine information.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

from nlkd.models import auxiliary_loss, create_model, list_models
from nlkd.weighting import per_image_cross_entropy

__all__ = ["bench_model", "main"]


def _median_ms(fn: Callable[[], object], warmup: int, reps: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # not available on this platform
        return "n/a"


def bench_model(
    name: str, num_classes: int, batch: int, height: int, width: int, warmup: int, reps: int
) -> dict[str, float]:
    """Parameters (millions) and median forward / forward+backward times (ms) of one model."""
    torch.manual_seed(0)
    model = create_model(name, num_classes)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, height, width, generator=gen)
    target = torch.randint(0, num_classes, (batch, height, width), generator=gen)

    def forward() -> None:
        with torch.inference_mode():
            model(images)

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        logits = model(images)
        loss = per_image_cross_entropy(logits, target, None) + auxiliary_loss(model, target, None)
        loss.mean().backward()

    model.eval()
    forward_ms = _median_ms(forward, warmup, reps)
    model.train()
    train_ms = _median_ms(forward_backward, warmup, reps)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {"params_m": params, "forward_ms": forward_ms, "forward_backward_ms": train_ms}


def main(argv: list[str] | None = None) -> None:
    """Parse the options, benchmark the models, print the markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list_models(), choices=list_models())
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--classes", type=int, default=12, help="number of classes (CamVid: 12)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="batch 2 at 64x64, no warm-up, one run (seconds)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.height, args.width, args.warmup, args.reps = 2, 64, 64, 0, 1
    torch.set_num_threads(args.threads)

    command = " ".join([os.path.relpath(sys.argv[0]), *(sys.argv[1:] if argv is None else argv)])
    print(f"Command: `python {command}`\n")
    print(
        f"Machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} logical CPUs; "
        f"Python {platform.python_version()}; torch {torch.__version__}; "
        f"{torch.get_num_threads()} thread(s); load average at start {_load()}\n"
    )
    print(
        f"Input: batch {args.batch} x 3 x {args.height} x {args.width}, {args.classes} classes; "
        f"median of {args.reps} runs after {args.warmup} warm-up\n"
    )
    print("| model | params (M) | forward, eval (ms) | forward+backward, train (ms) |")
    print("|---|---:|---:|---:|")
    for name in args.models:
        r = bench_model(name, args.classes, args.batch, args.height, args.width, args.warmup, args.reps)
        print(f"| {name} | {r['params_m']:.2f} | {r['forward_ms']:.0f} | {r['forward_backward_ms']:.0f} |")


if __name__ == "__main__":
    main()
