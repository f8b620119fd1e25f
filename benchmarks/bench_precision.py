"""Does the faster training step cost accuracy? fp32 eager vs bf16 autocast + channels_last, paired seeds.

    python benchmarks/bench_precision.py --camvid ../shared/data/camvid --work runs/precision \
        --seeds 0 1 2 --epochs 10 --size 96x128 [--quick]

Every run is one ``nlkd train`` process (clean labels, U-Net-R18 from random init, batch 8, one
thread), the two variants of a seed one after the other. A finished run is skipped and a stopped one
resumes (``--resume``), so the script can be restarted. Printed: per seed and variant the val mIoU /
BF (percent, mean of the last 3 epochs' evaluations), the paired difference bf16+cl − fp32 with its
95 % t-interval, and the ratio of the mean training seconds per epoch (the same runs; other work on the
machine at the same time distorts it, so ``bench_step.py --speed-options`` is the speed figure).
``--quick``: the synthetic data set at 32×48 for 2 epochs and one seed (seconds; not a figure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from nlkd.data.synth import make_synthetic
from nlkd.reproduce.stats import last_k_mean, paired_difference

VARIANTS = {"fp32 eager": [], "bf16 + channels_last": ["--set", "bf16=true", "--set", "channels_last=true"]}
CAMVID_YAML = """num_classes: 11
ignore_index: 11
class_names: [sky, building, pole, road, pavement, tree, signsymbol, fence, car, pedestrian, bicyclist]
"""


def camvid_root(camvid: Path, root: Path) -> Path:
    """A data root of symlinks to CamVid's images/ and labels/ with a dataset.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    for kind in ("images", "labels"):
        if not (root / kind).exists():
            (root / kind).symlink_to((camvid / kind).resolve())
    (root / "dataset.yaml").write_text(CAMVID_YAML)
    return root


def records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []


def train(data: Path, run: Path, seed: int, epochs: int, size: str, extra: list[str]) -> None:
    if len(records(run)) >= epochs:
        return  # finished
    cmd = [sys.executable, "-m", "nlkd", "train", "--data", str(data), "--val-split", "val", "--labels", "train"]
    cmd += ["--model", "unet", "--epochs", str(epochs), "--batch-size", "8", "--size", size, "--seed", str(seed)]
    cmd += ["--set", "threads=1", "--out", str(run), *extra]
    if (run / "last.pt").is_file():
        cmd.append("--resume")
    print("$", " ".join(cmd), flush=True)
    run.parent.mkdir(parents=True, exist_ok=True)
    with open(run.parent / f"{run.name}.log", "a") as log:
        subprocess.run(
            cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--camvid", type=Path, default=Path("../shared/data/camvid"))
    ap.add_argument("--work", type=Path, default=Path("runs/precision"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--size", default="96x128")
    ap.add_argument("--quick", action="store_true", help="synthetic data, 32x48, 2 epochs, seed 0 (seconds)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory() if args.quick else None
    if tmp is not None:
        work = Path(tmp.name)
        data = make_synthetic(work / "data", n_train=8, n_val=4, n_test=0, size=(32, 48))
        args.seeds, args.epochs, args.size = [0], 2, "32x48"
    else:
        work = args.work
        data = camvid_root(args.camvid, work / "data")
    for seed in args.seeds:
        for name, extra in VARIANTS.items():
            train(data, work / "runs" / f"{name.split()[0]}_s{seed}", seed, args.epochs, args.size, extra)

    print(
        f"\n# bench_precision — {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
        f"{args.size}, {args.epochs} epochs, seeds {args.seeds}, clean labels, U-Net-R18 random init"
    )
    score: dict[str, dict[str, dict[int, float]]] = {"val_miou": {}, "val_bf": {}}
    seconds: dict[str, list[float]] = {}
    print("| variant | seed | val mIoU | val BF | train s/epoch |\n|---|---|---|---|---|")
    for name in VARIANTS:
        for seed in args.seeds:
            recs = records(work / "runs" / f"{name.split()[0]}_s{seed}")
            for key in score:
                value = last_k_mean(recs, key, k=3)
                assert value is not None, f"{name} seed {seed}: no {key} in metrics.jsonl"
                score[key].setdefault(name, {})[seed] = 100 * value
            seconds.setdefault(name, []).extend(r["train_seconds"] for r in recs)
            print(
                f"| {name} | {seed} | {score['val_miou'][name][seed]:.2f} | {score['val_bf'][name][seed]:.2f} | "
                f"{statistics.mean(r['train_seconds'] for r in recs):.1f} |"
            )
    fp32, fast = VARIANTS
    print("\n| measure | fp32 eager (mean ± std) | bf16 + channels_last (mean ± std) | paired Δ (95 % CI) |")
    print("|---|---|---|---|")
    for key, label in (("val_miou", "val mIoU"), ("val_bf", "val BF")):
        a, b = list(score[key][fp32].values()), list(score[key][fast].values())
        sd = statistics.stdev if len(a) > 1 else (lambda v: 0.0)
        d = paired_difference(score[key][fast], score[key][fp32])
        assert d is not None
        ci = f"[{d.low:+.2f}, {d.high:+.2f}]" if d.n > 1 else "(1 seed)"
        print(
            f"| {label} | {statistics.mean(a):.2f} ± {sd(a):.2f} | {statistics.mean(b):.2f} ± {sd(b):.2f} | "
            f"{d.mean:+.2f} {ci} |"
        )
    ratio = statistics.mean(seconds[fp32]) / statistics.mean(seconds[fast])
    print(
        f"| train seconds per epoch, fp32 / bf16+cl | {statistics.mean(seconds[fp32]):.1f} | "
        f"{statistics.mean(seconds[fast]):.1f} | {ratio:.2f}× |"
    )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
