"""Where does label noise cost? The clean − plain-CE gap of finished CamVid runs, per setting (issue 14).

    python benchmarks/noise_setting_search.py --runs runs/nb/runs [--last 5]

RUNS holds ``nlkd train`` run folders named ``<SETTING>_clean_s<SEED>`` (clean labels) and
``<SETTING>_base_s<SEED>`` (plain CE on the coarse labels), e.g. ``B_clean_s0``. A run's score is the
mean of its last ``--last`` epochs' val mIoU / BF (percent), the same rule as the noise benchmark. Per
setting: the labels, epochs and size read from the runs' config.yaml, each side's mean over its seeds,
and the gap clean − baseline (``--clean-from C=A``: setting C, which changes only the coarse labels,
takes A's clean runs). Runs with other names (e.g. ``B_nlkd_s0``) are listed with their score.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

import yaml

NAME = re.compile(r"(?P<setting>[^_]+)_(?P<role>.+)_s(?P<seed>\d+)$")


def score(run: Path, last: int) -> tuple[float, float, int] | None:
    """(mIoU, BF) in percent over the last ``last`` epochs and the epoch count, or None without records."""
    path = run / "metrics.jsonl"
    recs = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []
    if not recs:
        return None
    tail = recs[-last:]
    return (
        100 * statistics.mean(r["val_miou"] for r in tail),
        100 * statistics.mean(r["val_bf"] for r in tail),
        len(recs),
    )


def describe(run: Path) -> str:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    size = "×".join(str(v) for v in cfg["data"]["size"]) if cfg["data"].get("size") else "full"
    return f"{cfg['epochs']} epochs, {size}"


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/nb/runs"))
    ap.add_argument("--last", type=int, default=5, help="a run's score: mean of its last N epochs (default 5)")
    ap.add_argument(
        "--clean-from",
        nargs="*",
        default=[],
        metavar="SETTING=OTHER",
        help="a setting that differs from OTHER only in its coarse labels takes OTHER's clean runs, e.g. C=A",
    )
    args = ap.parse_args()
    groups: dict[str, dict[str, dict[int, tuple[float, float, int]]]] = defaultdict(lambda: defaultdict(dict))
    where: dict[str, Path] = {}
    for run in sorted(p for p in args.runs.iterdir() if p.is_dir()):
        m, s = NAME.match(run.name), score(run, args.last)
        if m is None or s is None:
            continue
        groups[m["setting"]][m["role"]][int(m["seed"])] = s
        where.setdefault(m["setting"], run)
    for pair in args.clean_from:
        setting, other = pair.split("=", 1)
        groups[setting]["clean"] = groups[other]["clean"]
    print(f"score: mean of the last {args.last} epochs' val evaluations, percent\n")
    print(
        "| setting | training | coarse labels | clean mIoU / BF (seeds) | baseline mIoU / BF (seeds) | gap mIoU / BF |"
    )
    print("|---|---|---|---|---|---|")
    for setting, roles in sorted(groups.items()):
        clean, base = roles.get("clean", {}), roles.get("base", {})
        labels = (
            next(
                (yaml.safe_load((args.runs / f"{setting}_base_s{k}" / "config.yaml").read_text())["data"]["labels"])
                for k in base
            )
            if base
            else "—"
        )
        cells = []
        for side in (clean, base):
            cells.append(
                f"{mean_std([v[0] for v in side.values()])} / {mean_std([v[1] for v in side.values()])} "
                f"({', '.join(map(str, sorted(side)))})"
                if side
                else "—"
            )
        gap = "—"
        if clean and base:
            gap_miou = statistics.mean(v[0] for v in clean.values()) - statistics.mean(v[0] for v in base.values())
            gap_bf = statistics.mean(v[1] for v in clean.values()) - statistics.mean(v[1] for v in base.values())
            gap = f"{gap_miou:.2f} / {gap_bf:.2f}"
        print(f"| {setting} | {describe(where[setting])} | {labels} | {cells[0]} | {cells[1]} | {gap} |")
    others = [
        (s, r, k, v)
        for s, roles in groups.items()
        for r, seeds in roles.items()
        if r not in ("clean", "base")
        for k, v in seeds.items()
    ]
    if others:
        print("\n| run | mIoU | BF | epochs |\n|---|---|---|---|")
        for s, r, k, v in sorted(others):
            print(f"| {s}_{r}_s{k} | {v[0]:.2f} | {v[1]:.2f} | {v[2]} |")


if __name__ == "__main__":
    main()
