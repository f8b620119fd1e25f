"""Teacher scores as detectors of known-bad masks, and the val metrics of the students they trained.

    python benchmarks/detection_table.py --manifest runs/camvid/data/labels/train_de50/manifest.json \
        --scores in-sample=runs/oof/insample_s0.csv out-of-fold=runs/oof/oof_k3.csv \
        --students in-sample=runs/camvid/runs/nlkd_s0,runs/camvid/runs/nlkd_s1 \
                   out-of-fold=runs/oof/nlkd_oof_s0,runs/oof/nlkd_oof_s1

Each ``--scores`` CSV is an ``nlkd score`` output (``quality`` column = the run's metric, ``weight`` in
CSVs of earlier versions; ``--column bf``, ``iou``, or in those older CSVs ``bfmiou``, picks another);
it is scored as a detector of the manifest's corrupted ids (low score = bad): AUROC, average precision,
the mean score of corrupted and clean masks and their ratio; with several CSVs (e.g. one per seed) a
last row gives their mean. Each ``--students`` entry is a list of finished ``nlkd train`` runs whose
last ``metrics.jsonl`` record gives the validation mIoU / BF (mean ± sample std over the runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from nlkd.audit import auroc, average_precision
from nlkd.errors import NLKDError
from nlkd.teacher import read_scores_csv


def _pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"detection_table: error: expected NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, required=True, help="manifest.json of `nlkd corrupt`")
    ap.add_argument("--scores", nargs="+", default=[], metavar="NAME=CSV")
    ap.add_argument("--students", nargs="+", default=[], metavar="NAME=RUN[,RUN...]")
    ap.add_argument("--column", default="quality", help="score column of the CSVs (default: quality)")
    args = ap.parse_args(argv)
    bad_ids = set(json.loads(args.manifest.read_text())["corrupted"])

    col = args.column
    print(f"| teacher scores | AUROC | AP | mean {col}, corrupted | mean {col}, clean | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = []
    for name, path in _pairs(args.scores).items():
        try:
            weights = read_scores_csv(path, args.column)
        except NLKDError as e:
            raise SystemExit(f"detection_table: error: {e}") from None
        ids = sorted(weights)
        w = np.array([weights[i] for i in ids])
        bad = np.array([i in bad_ids for i in ids])
        ok = np.isfinite(w)
        w, bad = w[ok], bad[ok]
        rows.append((auroc(-w, bad), average_precision(-w, bad), w[bad].mean(), w[~bad].mean()))
        roc, ap_, w_bad, w_ok = rows[-1]
        ratio = f"{w_bad / w_ok:.2f}" if w_ok > 0 else "—"
        print(f"| {name} | {roc:.3f} | {ap_:.3f} | {w_bad:.3f} | {w_ok:.3f} | {ratio} |")
    if len(rows) > 1:  # e.g. one CSV per seed: their mean, AUROC with its range
        roc, ap_, w_bad, w_ok = (np.array(v) for v in zip(*rows))
        auc = f"{roc.mean():.3f} ({roc.min():.3f}–{roc.max():.3f})"
        ratio = f"{(w_bad / w_ok).mean():.2f}" if (w_ok > 0).all() else "—"
        print(f"| mean of {len(rows)} | {auc} | {ap_.mean():.3f} | {w_bad.mean():.3f} | {w_ok.mean():.3f} | {ratio} |")

    if args.students:
        print("\n| student run | val mIoU | val BF | per run (mIoU / BF) | runs |")
        print("|---|---:|---:|---|---:|")
    for name, runs in _pairs(args.students).items():
        records = []
        for run in runs.split(","):
            path = Path(run) / "metrics.jsonl"
            lines = path.read_text().splitlines() if path.is_file() else []
            if not lines:
                raise SystemExit(f"detection_table: error: {path}: no metrics yet (run not trained?)")
            records.append(json.loads(lines[-1]))
        miou = [100 * r["val_miou"] for r in records]
        bf = [100 * r["val_bf"] for r in records]
        epochs = {r["epoch"] for r in records}
        each = ", ".join(f"{m:.2f} / {b:.2f}" for m, b in zip(miou, bf))
        print(f"| {name} | {_mean_sd(miou)} | {_mean_sd(bf)} | {each} | {len(records)} (epoch {sorted(epochs)}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
