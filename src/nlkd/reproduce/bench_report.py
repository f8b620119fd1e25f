"""``DIR/noise-bench.md``: the decision (:mod:`~nlkd.reproduce.bench_decision`), then one table per noise
kind (every row's metrics as mean ± std over seeds, its paired difference to the baseline with a 95 %
t-interval, the verdict); and its figures (:mod:`~nlkd.reproduce.bench_figures`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from nlkd.io import atomic_write_text
from nlkd.reproduce.bench_decision import decision_lines
from nlkd.reproduce.bench_figures import plot_curves, plot_gains
from nlkd.reproduce.bench_plan import BENCH, BenchRow, BenchSetting
from nlkd.reproduce.bench_scores import METRICS
from nlkd.reproduce.bench_table import DECIDING, KEY_SEEDS, OTHER_SEEDS, KindTable, kind_table
from nlkd.reproduce.stats import MIN_VERDICT_SEEDS, PairedDifference, interval_half_width, seeds_to_detect, summarize

__all__ = ["render_bench", "write_bench_report"]


def _pct(values: Mapping[int, float]) -> str:
    s = summarize([100 * v for v in values.values()])
    return "—" if s is None else f"{s.mean:.2f} ± {s.std:.2f}" if s.n > 1 else f"{s.mean:.2f}"


def _interval(d: PairedDifference | None) -> str:
    if d is None:
        return "—"
    if d.n < 2:
        return f"{100 * d.mean:+.2f} (1 seed)"
    return f"{100 * d.mean:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]"


def _verdict(t: KindTable, row: BenchRow, against: str = "baseline") -> str:
    diffs = {label: t.diff(row, label, against) for label in DECIDING}
    if all(d is None for d in diffs.values()):
        return "—"
    beats = [label for label, d in diffs.items() if d is not None and d.verdict == "beats"]
    below = [label for label, d in diffs.items() if d is not None and d.verdict == "below"]
    parts = ([f"beats ({', '.join(beats)})"] if beats else []) + ([f"below ({', '.join(below)})"] if below else [])
    return "; ".join(parts) or "no measurable difference"


def _gap(t: KindTable, row: BenchRow) -> str:
    if row.clean:
        return "(ceiling)"
    return t.gap_text(row)


def _row_line(t: KindTable, setting: BenchSetting, row: BenchRow, n_seeds: int, unavailable: Mapping[str, str]) -> str:
    if row.slug in unavailable:
        return f"| {row.title} | not available | " + " | ".join(["—"] * 11) + " |"
    slug = t.slugs[row.slug]
    sc = t.scores.get(slug, {})
    cells = [f"{len(t.runs.get(slug, []))}/{n_seeds}", *(_pct(sc.get(label, {})) for label, _, _ in METRICS)]
    if row.slug == "baseline":
        cells += ["(reference)", "(reference)", "", ""]
    else:
        cells += [_interval(t.diff(row, label)) for label in DECIDING] + [_verdict(t, row), _gap(t, row)]
    auroc = sc.get(setting.detection.get("auroc", ""), {})
    cells += [_pct({} if _same_weight_everywhere(auroc) else auroc)]
    cells += [_pct(sc.get(setting.detection.get("share", ""), {}))]
    return f"| {row.title} | " + " | ".join(cells) + " |"


def _same_weight_everywhere(auroc: Mapping[int, float]) -> bool:
    """Whether a row's runs gave every image the same weight: the loop logs an AUROC of exactly ½ for equal
    weights (every pair a tie), which a row whose weights vary does not reach in a mean over epochs. Such a
    row weighs no image against another, so the table shows "—" rather than a detector at chance."""
    return bool(auroc) and all(v == 0.5 for v in auroc.values())


def _per_seed_lines(t: KindTable, rows: Sequence[BenchRow], seeds: Sequence[int]) -> list[str]:
    """Each row's paired difference to the baseline seed by seed (mIoU / BF θ=2), the figures behind its
    interval; the clean row's are the gap of each seed."""
    base = t.scores.get(t.slugs["baseline"], {})
    lines = ["Δ to the baseline of the same seed, per seed (mIoU / BF θ=2):", ""]
    lines += ["| method | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|" + "---|" * (len(seeds) + 1)]
    for row in rows:
        sc = t.scores.get(t.slugs[row.slug], {})
        cells = []
        for s in seeds:
            pair = [(sc.get(m, {}), base.get(m, {})) for m in DECIDING]
            d = ["—" if s not in v or s not in b else f"{100 * (v[s] - b[s]):+.2f}" for v, b in pair]
            cells.append("—" if d == ["—", "—"] else " / ".join(d))
        lines.append(f"| {row.title} | " + " | ".join(cells) + " |")
    return lines


def _control_lines(t: KindTable, rows: Sequence[BenchRow]) -> list[str]:
    """For each row of ``rows`` that is the control of another row of the table: that row − its control,
    paired by seed (mIoU / BF θ=2, 95 % t-interval), with the verdict."""
    lines = []
    by_slug = {r.slug: r for r in rows}
    for control in rows:
        row = by_slug.get(control.control_of)
        if row is None or t.diff(row, "mIoU", control.slug) is None:
            continue
        d = {label: _interval(t.diff(row, label, control.slug)) for label in DECIDING}
        lines.append(
            f"{row.title} − {control.title}, paired by seed: {d['mIoU']} mIoU / {d['BF θ=2']} BF θ=2: "
            f"{_verdict(t, row, control.slug)}."
        )
    return lines


def _shortfall_line(t: KindTable, unavailable: Mapping[str, str]) -> str:
    """The rows with a finished run that are still short of their seeds (the rows without one are
    listed as not run), or that every row has its seeds."""
    best = [r.title for r in t.key_rows() if r.slug not in ("baseline", "nlkd")]
    others = f", NLKD and the best other rows so far, {' and '.join(f'“{b}”' for b in best)}" if best else " and NLKD"
    rule = f"{KEY_SEEDS} for plain CE{others}; {OTHER_SEEDS} for the rest"
    short = t.seed_shortfall(skip=list(unavailable))
    if not short:
        return f"Every row has its seeds ({rule})."
    ran = [f"{r.title} {have}/{need}" for r, have, need in short if have > 0]
    return f"Seeds still short ({rule}): " + ("; ".join(ran) if ran else "only the rows not run yet") + "."


def _resolution_line(t: KindTable, n: int, gap: Mapping[str, PairedDifference | None]) -> str | None:
    """What the table can tell apart: the seed-to-seed spread of the paired differences
    (:meth:`KindTable.spread`), the half-width of an interval over ``n`` seeds at that spread, and the
    seeds from which that interval is narrower than half the clean − baseline gap."""
    spread = {label: t.spread(label) for label in DECIDING}
    if n < 2 or any(v is None for v in spread.values()):
        return None
    sd = {label: v[0] for label, v in spread.items() if v is not None}
    df = spread["mIoU"][1]  # type: ignore[index]
    widths = " / ".join(f"±{100 * interval_half_width(sd[label], n):.2f}" for label in DECIDING)
    line = (
        f"Resolution: a row's paired difference to plain CE varies from seed to seed by "
        f"{100 * sd['mIoU']:.2f} mIoU / {100 * sd['BF θ=2']:.2f} BF θ=2 (pooled std over the rows with "
        f"≥ {MIN_VERDICT_SEEDS} paired seeds, {df} degrees of freedom), so a 95 % interval over {n} seeds is "
        f"{widths}: a smaller mean gain cannot be told from 0"
    )
    half = {label: d.mean / 2 for label, d in gap.items() if d is not None and d.mean > 0}
    if len(half) == len(DECIDING):
        need = [seeds_to_detect(half[label], sd[label]) for label in DECIDING]
        counts = " / ".join("more than 1000" if k is None else str(k) for k in need)
        line += (
            f". The interval is narrower than half the gap ({100 * half['mIoU']:.2f} / {100 * half['BF θ=2']:.2f}) "
            f"from {counts} seeds on; a row that closes half the gap then clears 0 about half the time"
        )
    return line + "."


def _table_lines(
    t: KindTable, setting: BenchSetting, seeds: Sequence[int], unavailable: Mapping[str, str]
) -> list[str]:
    avail = [r for r in t.rows if r.slug not in unavailable]
    done = sum(len({x.seed for x in t.runs.get(t.slugs[r.slug], [])} & set(seeds)) for r in avail)
    total = len(avail) * len(seeds)
    state = "" if done >= total else f" — PARTIAL: {done} of {total} runs finished"
    head = ["method", "runs", *(m[0] for m in METRICS), "Δ mIoU (95 % CI)", "Δ BF θ=2 (95 % CI)", "verdict"]
    head += ["gap closed (mIoU / BF)", "weight AUROC", "loss weight on corrupted px"]
    lines = [f"### {t.kind.title}{state}", ""]
    gap = {label: t.diff(t.rows[0], label) for label in DECIDING} if t.rows[0].clean else {}
    if gap and all(d is not None for d in gap.values()):
        lines += [f"Clean − baseline gap: {_interval(gap['mIoU'])} mIoU, {_interval(gap['BF θ=2'])} BF θ=2.", ""]
    resolution = _resolution_line(t, len(seeds), gap)
    if resolution:
        lines += [resolution, ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    seen = set(seeds) | {x.seed for runs in t.runs.values() for x in runs}  # finished runs of other seeds count too
    idle = [r for r in avail if not t.runs.get(t.slugs[r.slug])]  # no finished run of any seed yet
    lines += [_row_line(t, setting, r, len(seen), unavailable) for r in t.rows if r not in idle]
    if idle:
        lines += ["", "Not run yet: " + "; ".join(r.title for r in idle) + "."]
    lines += ["", _shortfall_line(t, unavailable)]
    paired = [r for r in avail if r not in idle and r.slug != "baseline"]
    if paired and t.runs.get(t.slugs["baseline"]):
        lines += ["", *_per_seed_lines(t, paired, sorted(seen))]
    controls = _control_lines(t, paired)
    if controls:
        lines += ["", *controls]
    how = set(t.sources.values())
    sources = next(iter(how)) if len(how) == 1 else "; ".join(f"{k}: {v}" for k, v in t.sources.items())
    return [*lines, "", f"Score of a run, every row alike: {sources}.", ""]


def render_bench(
    setting: BenchSetting,
    tables: Sequence[KindTable],
    seeds: Sequence[int],
    unavailable: Mapping[str, str],
    command: str,
    settings: str,
    notes: Sequence[str] = (),
) -> str:
    """The markdown report of the benchmark."""
    lines = ["# Noise benchmark: which strategy to run on coarse labels", "", settings, ""]
    lines += [
        "Values in percent, mean ± sample std over the finished seeds (the *runs* column). Δ: the paired",
        "difference to the baseline run of the same seed, mean and 95 % t-interval over seeds. A row *beats*",
        f"the baseline only when its interval lies above 0 over at least {MIN_VERDICT_SEEDS} paired seeds; otherwise",
        "*no measurable difference* (or *below*, the interval under 0).",
        "*Gap closed*: the share of the clean − baseline gap the row's mean gain recovers, both over the seeds",
        "the row, clean and baseline share. BF θ is in pixels at the training resolution; band mIoU: pixels",
        "closer than 3 px to a true boundary, interior: the rest. *Weight AUROC*: how well the row's image",
        "weights tell clean from corrupted masks (50 = chance); — for a row that gives every image the same weight.",
        "",
    ]
    lines += decision_lines(tables)
    for t in tables:
        lines += _table_lines(t, setting, seeds, unavailable)
    if unavailable:
        lines += ["Rows not available with this nlkd:", ""]
        lines += [f"- {s}: {why}" for s, why in unavailable.items()] + [""]
    lines += [*(f"- {n}" for n in notes), "", "Command:", "", "```", command, "```", ""]
    return "\n".join(lines)


def write_bench_report(
    setting: BenchSetting,
    out: Path,
    epochs: int,
    seeds: Sequence[int],
    extra_rows: Mapping[str, Sequence[str]],
    planned: Sequence[str],
    unavailable: Mapping[str, str],
    command: str,
    settings: str,
    notes: Sequence[str] = (),
    archive: Path | None = None,
) -> Path:
    """Write ``out/noise-bench.md`` and ``.png`` from the finished runs under ``out/noise-bench/`` (and,
    for the seeds missing there, the archived runs under ``archive``)."""
    tables = [kind_table(setting, k, out / BENCH, epochs, extra_rows.get(k.key, ()), planned, archive)
              for k in setting.noise]  # fmt: skip
    md = out / f"{BENCH}.md"
    atomic_write_text(md, render_bench(setting, tables, seeds, unavailable, command, settings, notes))
    plot_gains(tables, out / f"{BENCH}.png")
    plot_curves(tables[0], out / f"{BENCH}-curves.png", setting.last_k)
    return md
