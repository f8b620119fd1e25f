"""``DIR/<table>.md``: our numbers (mean ± std over seeds) beside the paper's, the pooled gains of line
tables, the setting and the notes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nlkd.reproduce.cells import TablePlan
from nlkd.reproduce.paper import NOTES, PAPER, PAPER_SETTING
from nlkd.reproduce.scales import Setup
from nlkd.reproduce.stats import mean_sd, paired_diffs

__all__ = ["pooled_gains", "render_markdown", "settings_paragraph"]


def settings_paragraph(setup: Setup, seeds: Sequence[int]) -> str:
    c, scale = setup.base, setup.scale
    size = "native size" if c.data.size is None else f"{c.data.size[0]}×{c.data.size[1]}"
    return " ".join(
        [
            f"Scale `{scale.name}` (configs/{scale.config_path.name}): epochs {c.epochs}, batch {c.batch_size},",
            f"{size}, {c.optim.name} lr {c.optim.lr:g} wd {c.optim.weight_decay:g}, {c.optim.schedule} schedule,",
            f"student {c.model.name}; teacher of reweight/NLKD in Tables 1–3:",
            f"{scale.teacher_model or 'the baseline trained on the same labels'}.",
            f"Seeds {' '.join(map(str, seeds))};",
            f"metrics of each run's last epoch on `{c.data.val_split}`, BF tolerance {c.eval_tolerance:g} px.",
        ]
    )


def pooled_gains(plan: TablePlan, results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Markdown lines: each row's gain over the plan's first row (the baseline), paired by column and
    seed and pooled over all columns where both ran (Table 2: every noise ratio). Per row: the columns,
    the number of pairs, mean ± sample std of the mIoU and BF gains (percent) and how many pairs gained
    mIoU. Empty when no row has a pair."""
    rows = list(dict.fromkeys(c.row for c in plan.cells))
    base = {c.column: c for c in plan.cells if c.row == rows[0]}
    out = []
    for row in rows[1:]:
        cols, miou, bf = [], [], []
        for cell in (c for c in plan.cells if c.row == row and c.column in base):
            runs, base_runs = results.get(cell.slug, []), results.get(base[cell.column].slug, [])
            pairs = paired_diffs(runs, base_runs, "val_miou")
            if pairs:
                cols.append(cell.column)
                miou += pairs
                bf += paired_diffs(runs, base_runs, "val_bf")
        if not cols:
            continue
        (m_miou, sd_miou), (m_bf, sd_bf) = mean_sd(miou, "val_miou"), mean_sd(bf, "val_bf")  # type: ignore[misc]
        wins = sum(d["val_miou"] > 0 for d in miou)
        gains = f"{m_miou:+.2f} ± {sd_miou:.2f} | {m_bf:+.2f} ± {sd_bf:.2f}"
        out.append(f"| {row} | {', '.join(cols)} | {len(miou)} | {gains} | {wins}/{len(miou)} |")
    if not out:
        return []
    what = (plan.column_name or "column").lower()
    return [
        f"Gain over the {rows[0]} run of the same {what} and seed, pooled over the {what} columns:",
        "",
        "| Method | Pooled over | Pairs | mIoU gain | BF gain | Pairs with mIoU gain > 0 |",
        "|---|---|---:|---:|---:|---:|",
        *out,
        "",
    ]


def render_markdown(
    plan: TablePlan,
    results: dict[str, list[dict[str, Any]]],
    *,
    n_seeds: int,
    command: str,
    settings: str,
    failures: Sequence[str] = (),
) -> str:
    """``DIR/<table>.md``: one line per cell, ours (mean ± sample std over seeds) beside the paper's.

    Args:
        results: cell slug -> last records of its finished runs (``val_miou``, ``val_bf`` as fractions,
            ``seed`` when known: the last column lists each run).
        n_seeds: seeds asked for (the Seeds column shows finished/asked).
        command: the command line that produced the table; settings: a paragraph on the setup.
        failures: one line per failed run.
    """
    paper = PAPER.get(plan.name, {})
    col = [plan.column_name] if plan.column_name else []
    head = ["Method", *col, "mIoU (ours)", "BF (ours)", "mIoU (paper)", "BF (paper)", "Seeds", "Per seed (mIoU / BF)"]
    lines = [f"# {plan.name}: {plan.title}", "", "Produced by:", "", f"    {command}", "", settings, ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in plan.cells:
        recs = results.get(cell.slug, [])
        ours = []
        for key in ("val_miou", "val_bf"):
            ms = mean_sd(recs, key)
            ours.append("not run" if ms is None else f"{ms[0]:.2f}" + (f" ± {ms[1]:.2f}" if len(recs) > 1 else ""))
        theirs = paper.get((cell.row, cell.column))
        ref = [f"{v:.2f}" for v in theirs] if theirs else ["—", "—"]
        where = [cell.column] if col else []
        each = ", ".join(
            (f"s{r['seed']} " if "seed" in r else "") + f"{100 * r['val_miou']:.2f} / {100 * r['val_bf']:.2f}"
            for r in recs
        )
        lines.append("| " + " | ".join([cell.row, *where, *ours, *ref, f"{len(recs)}/{n_seeds}", each]) + " |")
    lines += [
        "",
        "mIoU and BF in percent on the clean validation split. Ours: mean ± sample std over the",
        "finished seeds. '—': the paper reports no such run.",
        "",
    ]
    if plan.is_line_table:
        lines += pooled_gains(plan, results)
    lines += [
        "Notes:",
        "",
    ]
    lines += [f"- {n}" for n in (PAPER_SETTING, *NOTES.get(plan.name, []), *plan.notes)]
    if failures:
        lines += ["", "Failed runs:", "", *(f"- {f}" for f in failures)]
    return "\n".join([*lines, "", f"![{plan.name}]({plan.name}.png)", ""])
