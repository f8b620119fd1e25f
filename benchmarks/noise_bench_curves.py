"""When, in training, coarse labels cost: the noise benchmark's clean − plain-CE gap epoch by epoch, and how
far each plain-CE run's last-K score lies below its best epoch (is there a late decline?). No training: it
reads the archived runs.

    python benchmarks/noise_bench_curves.py [--archive results/noise-bench] [--kind de50] [--split 22] [--last-k 5]

Prints, over the seeds both clean and plain CE finished: the range of the mean gap in mIoU and BF θ=2 over
epochs 1..split and over split+3..last; then per plain-CE seed its best epoch and last-K mean; then how much of
a run's score is evaluation noise: the epoch-to-epoch std of val mIoU over the last K epochs of every archived
run (median and largest), against which the seed-to-seed spread of the report's *Resolution* line is set;
last, per row of that kind, for how many leading epochs each seed's run logged exactly what plain CE of the
same seed logged (train loss and val mIoU): a row that starts late shares that stretch with its baseline, so
its paired difference spreads less.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from nlkd.reproduce.bench_scores import read_records, seed_folders

KEYS = (("mIoU", "val_miou"), ("BF θ=2", "val_bf_2"))


def load(folder: Path) -> dict[int, list[dict[str, float]]]:
    """seed -> epoch records of every archived run under ``folder`` (``seed<k>/metrics.jsonl``)."""
    return {seed: read_records(f) for seed, f in seed_folders(folder) if (f / "metrics.jsonl").is_file()}


def shared_epochs(run: list[dict[str, float]], base: list[dict[str, float]]) -> int:
    """How many leading epochs of ``run`` logged exactly the train loss and val mIoU of ``base``."""
    n = 0
    for a, b in zip(run, base):
        if (a.get("train_loss"), a["val_miou"]) != (b.get("train_loss"), b["val_miou"]):
            break
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archive", default="results/noise-bench")
    ap.add_argument("--kind", default="de50", help="noise kind key of the plain-CE cell (baseline-KIND)")
    ap.add_argument("--split", type=int, default=22, help="last epoch of the first phase")
    ap.add_argument("--last-k", type=int, default=5)
    args = ap.parse_args()
    clean, base = load(Path(args.archive) / "clean"), load(Path(args.archive) / f"baseline-{args.kind}")
    seeds = sorted(clean.keys() & base.keys())
    if not seeds:
        raise SystemExit(f"{args.archive}: no seed with both a clean and a baseline-{args.kind} run")
    epochs = min(len(r) for s in seeds for r in (clean[s], base[s]))
    print(f"clean − plain CE ({args.kind}), mean over seeds {seeds}, {epochs} epochs:")
    for label, key in KEYS:
        gap = [100 * sum(clean[s][e][key] - base[s][e][key] for s in seeds) / len(seeds) for e in range(epochs)]
        early, late = gap[: args.split], gap[args.split + 2 :]
        print(f"  {label}: epochs 1–{args.split} {min(early):+.1f} to {max(early):+.1f}; "
              f"epochs {args.split + 3}–{epochs} {min(late):+.1f} to {max(late):+.1f}")  # fmt: skip
    print(f"plain CE ({args.kind}): best epoch vs the mean of the last {args.last_k} (mIoU):")
    for s, records in sorted(base.items()):
        m = [100 * r["val_miou"] for r in records]
        tail = sum(m[-args.last_k :]) / len(m[-args.last_k :])
        print(f"  seed {s}: best {max(m):.2f} at epoch {m.index(max(m)) + 1}, last-{args.last_k} {tail:.2f}, "
              f"{max(m) - tail:.2f} below")  # fmt: skip
    spread = [
        statistics.stdev(100 * r["val_miou"] for r in records[-args.last_k :])
        for cell in sorted(p for p in Path(args.archive).iterdir() if p.is_dir())
        for records in load(cell).values()
        if len(records) >= max(args.last_k, 2)
    ]
    if spread:
        print(f"evaluation noise: std of val mIoU over the last {args.last_k} epochs of {len(spread)} archived runs: "
              f"median {statistics.median(spread):.2f}, largest {max(spread):.2f}")  # fmt: skip
    print(f"epochs each run shares with plain CE of its seed ({args.kind}), by seed:")
    for cell in sorted(Path(args.archive).glob(f"*-{args.kind}")):
        if cell.name != f"baseline-{args.kind}":
            shared = {s: shared_epochs(r, base[s]) for s, r in sorted(load(cell).items()) if s in base}
            print(f"  {cell.name}: " + ", ".join(f"seed {s} {n}" for s, n in shared.items()))


if __name__ == "__main__":
    main()
