"""RESULTS.md experiment: CamVid with 50 % of training labels dilated/eroded; clean / baseline /
reweight / nlkd (U-Net-ResNet18), several seeds; evaluated on the untouched val labels.

    python benchmarks/camvid_results.py --camvid ../shared/data/camvid --work runs/camvid \
        --seeds 0 1 2 --epochs 25 --size 96x128 --jobs 2

Every run is a plain ``nlkd train`` command (printed and logged), so a table row can be reproduced
by hand. Runs that finished are skipped (``--resume``), so the script can be restarted. ``--jobs 2``
runs two single-threaded trainings side by side (faster than one two-threaded one on 2 cores).
Variants beyond the paper's method are given with ``--variant NAME=--set key=value ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

CLASS_NAMES = [
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "signsymbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
]


def prepare_data(camvid: Path, root: Path, seed: int) -> None:
    """A data root of symlinks to CamVid plus a 50 % dilate/erode copy of the training labels."""
    for kind in ("images", "labels"):
        for split in ("train", "val"):
            link = root / kind / split
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to((camvid / kind / split).resolve())
    yaml = root / "dataset.yaml"
    if not yaml.exists():
        names = "\n".join(f"  - {n}" for n in CLASS_NAMES)
        yaml.write_text(f"num_classes: 11\nignore_index: 11\nclass_names:\n{names}\n")
    if not (root / "labels" / "train_de50" / "manifest.json").exists():
        cmd = [
            str(Path(sys.executable).with_name("nlkd")),
            "corrupt",
            "--src",
            str(root / "labels" / "train"),
            "--dst",
            str(root / "labels" / "train_de50"),
            "--ratio",
            "0.5",
            "--mode",
            "dilate_erode",
            "--seed",
            str(seed),
            "--ignore-index",
            "11",
        ]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


class Job:
    def __init__(self, name: str, cmd: list[str], out: Path, needs: list[Job]) -> None:
        self.name, self.cmd, self.out, self.needs = name, cmd, out, needs
        self.done = threading.Event()
        self.ok = False


def run_jobs(jobs: list[Job], n_workers: int, logs: Path) -> None:
    lock = threading.Lock()
    pending = list(jobs)

    def worker() -> None:
        while True:
            with lock:
                ready = next((j for j in pending if all(d.done.is_set() for d in j.needs)), None)
                if ready is None and not pending:
                    return
                if ready is not None:
                    pending.remove(ready)
            if ready is None:
                time.sleep(2)
                continue
            if not all(d.ok for d in ready.needs):
                print(f"skip {ready.name}: a dependency failed", flush=True)
                ready.done.set()
                continue
            print("$", " ".join(ready.cmd), flush=True)
            t0 = time.time()
            with open(logs / f"{ready.name}.log", "w") as log:
                rc = subprocess.run(
                    ready.cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}
                ).returncode
            ready.ok = rc == 0
            print(f"{'done' if rc == 0 else 'FAILED'} {ready.name} in {time.time() - t0:.0f}s", flush=True)
            ready.done.set()

    threads = [threading.Thread(target=worker) for _ in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def last_record(run: Path) -> dict:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


def auroc(scores_bad: np.ndarray, scores_good: np.ndarray) -> float:
    """P(a bad annotation scores lower than a good one), ties counted half."""
    diff = scores_good[None, :] - scores_bad[:, None]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--camvid", type=Path, default=Path("../shared/data/camvid"))
    ap.add_argument("--work", type=Path, default=Path("runs/camvid"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--size", default="96x128")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--methods", nargs="+", default=["clean", "baseline", "reweight", "nlkd"])
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="extra student: NAME=--strategy nlkd --set strategy.reduction=normalized",
    )
    args = ap.parse_args()
    data, runs, logs = args.work / "data", args.work / "runs", args.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    prepare_data(args.camvid, data, seed=0)
    nlkd = [str(Path(sys.executable).with_name("nlkd"))]
    variants = dict(v.split("=", 1) for v in args.variant)
    jobs: list[Job] = []
    for seed in args.seeds:
        common = [
            "--data",
            str(data),
            "--val-split",
            "val",
            "--model",
            "unet",
            "--epochs",
            str(args.epochs),
            "--batch-size",
            "8",
            "--size",
            args.size,
            "--seed",
            str(seed),
            "--set",
            "threads=1",
            "--resume",
        ]
        base = None
        specs = []
        for m in args.methods:
            labels = "train" if m == "clean" else "train_de50"
            strategy = "baseline" if m in ("clean", "baseline") else m
            specs.append((m, labels, ["--strategy", strategy]))
        for name, extra in variants.items():
            specs.append((name, "train_de50", extra.split()))
        for m, labels, extra in specs:
            out = runs / f"{m}_s{seed}"
            needs_teacher = "baseline" not in extra and m not in ("clean", "baseline")
            cmd = [*nlkd, "train", *common, "--labels", labels, "--out", str(out), *extra]
            if needs_teacher:
                cmd += ["--teacher", str(runs / f"baseline_s{seed}" / "last.pt")]
            job = Job(f"{m}_s{seed}", cmd, out, [base] if needs_teacher and base else [])
            if m == "baseline":
                base = job
            jobs.append(job)
    # Seed by seed, teachers first; the clean ceiling of later seeds last (it matters least for the comparison).
    jobs.sort(
        key=lambda j: (
            j.name.startswith("clean") and not j.name.endswith("_s0"),
            int(j.name.rsplit("_s", 1)[1]),
            len(j.needs),
        )
    )
    run_jobs(jobs, args.jobs, logs)
    report(args, runs, data, [*args.methods, *variants])


def report(args: argparse.Namespace, runs: Path, data: Path, methods: list[str]) -> None:
    print("\n| method | val mIoU (mean ± std) | val BF (mean ± std) | seeds |\n|---|---|---|---|")
    for m in methods:
        recs = [last_record(runs / f"{m}_s{s}") for s in args.seeds if (runs / f"{m}_s{s}" / "metrics.jsonl").exists()]
        recs = [r for r in recs if r["epoch"] == args.epochs]
        if not recs:
            continue
        mi = [100 * r["val_miou"] for r in recs]
        bf = [100 * r["val_bf"] for r in recs]
        sd = statistics.stdev if len(recs) > 1 else (lambda v: 0.0)
        row = f"{statistics.mean(mi):.2f} ± {sd(mi):.2f} | {statistics.mean(bf):.2f} ± {sd(bf):.2f}"
        print(f"| {m} | {row} | {len(recs)} |")
    manifest = json.loads((data / "labels" / "train_de50" / "manifest.json").read_text())
    bad = set(manifest["corrupted"])
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from nlkd.plots import weight_histogram
    from nlkd.teacher import read_scores_csv

    groups: dict[str, list[float]] = {"corrupted annotations": [], "clean annotations": []}
    for s in args.seeds:
        csv = runs / f"reweight_s{s}" / "teacher_scores.csv"
        if not csv.exists():
            continue
        scores = read_scores_csv(csv)
        b = np.array([v for k, v in scores.items() if k in bad])
        g = np.array([v for k, v in scores.items() if k not in bad])
        print(
            f"seed {s}: teacher weight corrupted {b.mean():.3f} vs clean {g.mean():.3f}, "
            f"detection AUROC {auroc(b, g):.3f}"
        )
        groups["corrupted annotations"] += list(b)
        groups["clean annotations"] += list(g)
    for m in methods:  # the student's own weights (nlkd), corrupted vs clean, per epoch once λ > 0
        for s in args.seeds:
            metrics = runs / f"{m}_s{s}" / "metrics.jsonl"
            recs = [json.loads(ln) for ln in metrics.read_text().splitlines()] if metrics.exists() else []
            ratios = [r["w_student_coarse"] / r["w_student_clean"] for r in recs if r.get("w_student_clean")]
            if ratios:
                print(
                    f"{m} seed {s}: student weight corrupted / clean {min(ratios):.2f}–{max(ratios):.2f} "
                    f"over {len(ratios)} epochs (λ > 0)"
                )
    if groups["clean annotations"]:
        weight_histogram(
            {k: np.array(v) for k, v in groups.items()},
            args.work / "teacher_weights.png",
            "CamVid, 50 % dilate/erode: teacher (baseline) BFmIoU weight per training image",
        )
        print(f"plot: {args.work / 'teacher_weights.png'}")


if __name__ == "__main__":
    main()
