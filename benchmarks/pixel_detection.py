"""How well the pixel-level strategies' rules find the corrupted pixels of coarse labels (issue 14), offline.

    python benchmarks/pixel_detection.py --data runs/nb/data --labels train_de50 --size 120x160 \
        --teacher runs/nb/bench/noise-bench/baseline-de50/seed0/last.pt \
        --student runs/nb/bench/noise-bench/nlkd-de50/seed0/last.pt \
        [--adele runs/nb/bench/noise-bench/adele-de50/seed0/last.pt]
    python benchmarks/pixel_detection.py --quick   # 16 synthetic images at 32x48, a one-epoch teacher: seconds

No training. Every training image at ``--size`` (un-augmented, in dataset order) goes through each rule as
``nlkd train`` feeds it: ``StepInputs`` with the annotation of ``--labels``, the teacher's cached probability
maps (``extras["teacher_prob"]``, :mod:`nlkd.teacher_cache`, uint8 as in training), the fine masks of the
label folder's manifest (``extras["fine_mask"]``), the teacher's cached per-image scores, and as logits the
``--student``'s prediction (in eval mode; without ``--student`` the teacher's log-probabilities, which no rule
but a student-reading one looks at). A *corrupted* pixel is one whose annotation differs from the fine mask;
pixels unlabelled in either map are left out of every count.

Rules: every pixel-level strategy of the registry at its default config (its own ``loss_weights``; ``relax``
and ``band_kd`` once per ``doubt_rule``; ``nlkd_pixel`` at the warm-up, λ = 0, and with ``--student`` at the
last epoch, λ = ``final_lambda``; ``adele`` with ``--adele``: that run's network and its triggered classes,
else fresh, i.e. plain CE), plain CE, and reference rules: drop the pixels whose teacher argmax disagrees with
the annotation (``doubt_rule=teacher``'s mask), optionally only within r px of the annotated boundary.

Per pixel p a rule's *annotation weight* a(p) in [0, 1] is the weight its loss keeps on the annotated class
y_p: the pixel weight (1 without), times the soft target's mass on y_p, or, for a target set, 1 when the set
is exactly {y_p} and 0 when it was widened or changed. Image weights are not part of a(p). Columns:

* recall: 1 − mean a over corrupted pixels (a dropped corrupted pixel counts 1, a halved one ½);
* false positives: 1 − mean a over clean pixels;
* AUROC: P(a(corrupted) < a(clean)) + ½ P(tie), i.e. of 1 − a for corrupted vs clean (a binned to 1/65535);
* fine label taught: mean over corrupted pixels of the weight the loss puts on the *fine* class (a soft
  target's mass on it; 1 when a target set holds it; 0 for a weight rule on the annotation);
* loss on corrupted: the share of the loss weight on corrupted pixels, as the loop logs it
  (:func:`nlkd.separation.corrupted_loss_share`: image weight × pixel weight / counted pixels of the image;
  every counted pixel of a soft target or set counts 1); plain CE's row is the images' mean corrupted share.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import torch
from torch import Tensor, nn

from nlkd.checkpoint import check_matches_data, load_checkpoint, model_from_checkpoint
from nlkd.config import DoubtRuleName, StrategyConfig, TrainConfig, parse_size
from nlkd.data.extras import EXTRA_PROVIDERS
from nlkd.data.folder import FolderDataset, make_loader
from nlkd.data.info import DatasetInfo
from nlkd.errors import DataError, NLKDError
from nlkd.pixelwise import boundary_distance, moved_side_band
from nlkd.progress import progress
from nlkd.runtime import dataset_info, resolve_device
from nlkd.separation import corrupted_loss_share
from nlkd.strategies import STRATEGIES, LossWeights, StepInputs, Strategy, create_strategy
from nlkd.strategies.doubt import TEACHER_PROB, DoubtRule
from nlkd.teacher import teacher_scores
from nlkd.weighting import per_image_cross_entropy

BINS = 65535  # AUROC resolution of the annotation weights
FINE = "fine_mask"


@dataclass
class Rule:
    """One row: ``weights(step)`` gives the :class:`LossWeights` the loop would train network 0 with.
    ``network``: whose logits the rule reads ("student", or "adele" for that run's network)."""

    name: str
    weights: Callable[[StepInputs], LossWeights] | None  # None: not measurable here (the name says why)
    network: str = "student"
    kinds: set[str] = field(default_factory=set)  # what the LossWeights set (acts_by), over the batches


def annotation_weight(lw: LossWeights, target: Tensor, labelled: Tensor) -> Tensor:
    """a(p): the weight the loss keeps on the annotated class (module docstring). (B, H, W) float64."""
    y = target.masked_fill(~labelled, 0).long().unsqueeze(1)
    a = torch.ones(target.shape, dtype=torch.float64, device=target.device)
    if lw.soft_target is not None:
        a = lw.soft_target.double().gather(1, y).squeeze(1)
    elif lw.target_set is not None:
        s = lw.target_set.bool()
        a = (s.gather(1, y).squeeze(1) & (s.sum(1) == 1)).double()
    return a if lw.pixel is None else a * lw.pixel.double()


def fine_label_weight(lw: LossWeights, target: Tensor, fine: Tensor, valid: Tensor) -> Tensor:
    """The weight the loss puts on the fine class at each pixel (module docstring). (B, H, W) float64."""
    f = fine.masked_fill(~valid, 0).long().unsqueeze(1)
    if lw.soft_target is not None:
        t = lw.soft_target.double().gather(1, f).squeeze(1)
    elif lw.target_set is not None:
        t = lw.target_set.bool().gather(1, f).squeeze(1).double()
    else:
        t = (target == fine).double()
    return t if lw.pixel is None else t * lw.pixel.double()


@dataclass
class Tally:
    """Counts of one rule over the training set (sums, so batches simply add)."""

    hist: Tensor = field(default_factory=lambda: torch.zeros(2, BINS + 1, dtype=torch.float64))  # [corrupted, clean]
    kept: Tensor = field(default_factory=lambda: torch.zeros(2, dtype=torch.float64))  # Σ a, [corrupted, clean]
    taught: float = 0.0  # Σ fine-label weight over corrupted pixels
    share: Tensor = field(default_factory=lambda: torch.zeros(2, dtype=torch.float64))  # loss [corrupted, total]

    def add(self, lw: LossWeights, target: Tensor, fine: Tensor, ignore_index: int | None) -> None:
        """One batch: ``lw`` for (B, H, W) ``target``; ``fine`` (B, H, W) the fine masks."""
        valid = torch.ones_like(target, dtype=torch.bool)
        if ignore_index is not None:
            valid = (target != ignore_index) & (fine != ignore_index)
        corrupted = valid & (target != fine)
        a = annotation_weight(lw, target, valid)
        binned = (a.clamp(0, 1) * BINS).round().long()
        for k, where in enumerate((corrupted, valid & ~corrupted)):
            self.hist[k] += torch.bincount(binned[where], minlength=BINS + 1).double().cpu()
            self.kept[k] += float(a[where].sum())
        self.taught += float(fine_label_weight(lw, target, fine, valid)[corrupted].sum())
        self.share += corrupted_loss_share(lw, target, torch.where(valid, fine, target), ignore_index)

    def row(self) -> dict[str, float]:
        """recall, false_pos, auroc, taught, share (NaN where undefined, e.g. no corrupted pixel)."""
        n_bad, n_ok = (float(v) for v in self.hist.sum(1))
        bad, ok = self.hist
        above = n_ok - ok.cumsum(0)  # clean pixels with a larger weight than each bin
        auroc = float((bad * (above + ok / 2)).sum()) / (n_bad * n_ok) if n_bad and n_ok else math.nan
        return {
            "recall": 1 - float(self.kept[0]) / n_bad if n_bad else math.nan,
            "false_pos": 1 - float(self.kept[1]) / n_ok if n_ok else math.nan,
            "auroc": auroc,
            "taught": self.taught / n_bad if n_bad else math.nan,
            "share": float(self.share[0] / self.share[1]) if self.share[1] > 0 else math.nan,
            "n_corrupted": n_bad,
            "n_clean": n_ok,
        }


def acts_by(lw: LossWeights) -> str:
    """How a rule's :class:`LossWeights` act on pixels, e.g. ``pixel weight`` or ``target set``."""
    parts = [n for n, t in (("pixel weight", lw.pixel), ("soft target", lw.soft_target)) if t is not None]
    parts += ["target set"] if lw.target_set is not None else []
    return " + ".join(parts) or "image weight"


def strategy_rule(name: str, strategy: Strategy, epoch: int, network: str = "student") -> Rule:
    """A registered strategy's own ``loss_weights`` at the first step of ``epoch``."""
    return Rule(name, lambda s: strategy.loss_weights(dataclasses.replace(s, epoch=epoch, step=0))[0], network)


def disagree_rule(ignore_index: int | None, radius: int | None) -> Rule:
    """Pixel weight 0 where the teacher's argmax differs from the annotation (``doubt_rule=teacher``'s mask),
    optionally only within ``radius`` px (Euclidean, 0 on the boundary) of the annotated boundary."""
    doubt = DoubtRule("teacher", 0.5)

    def weights(step: StepInputs) -> LossWeights:
        flag = doubt.mask(step, ignore_index)
        if radius is not None:
            flag = flag & (boundary_distance(step.target, ignore_index, max_distance=radius + 1) <= radius)
        return LossWeights(Strategy.ones(step), pixel=(~flag).float())

    where = "" if radius is None else f", ≤ {radius} px from the annotated boundary"
    return Rule(f"reference: teacher argmax ≠ annotation{where}", weights)


def fine_side_rule(info: DatasetInfo, radius: float) -> Rule:
    """``band_side=teacher``'s ceiling: the side of each boundary the *fine mask* says the annotation moved into
    (:func:`nlkd.pixelwise.moved_side_band` voting with the fine mask instead of the teacher), in every image.
    In an image whose annotation equals its fine mask no side wins a vote, so nothing is dropped there."""

    def weights(step: StepInputs) -> LossWeights:
        fine = step.extras[FINE]
        if info.ignore_index is not None:  # unlabelled in the fine mask only: no class for the vote
            fine = fine.masked_fill(fine == info.ignore_index, -1)
        drop = moved_side_band(step.target, fine, info.num_classes, radius, info.ignore_index)
        return LossWeights(Strategy.ones(step), pixel=(~drop).float())

    return Rule(f"reference: band_ignore's side chosen by the fine mask, band_radius={radius:g}", weights)


def pixel_level_strategies() -> list[str]:
    """Registered strategies with their own ``loss_weights`` (per-pixel weights, soft targets or sets)."""
    return [n for n, cls in STRATEGIES.items() if cls.loss_weights is not Strategy.loss_weights]


def build_rules(
    info: DatasetInfo, teacher: str, epochs: int, scores: Tensor, student: bool, adele: dict | None
) -> list[Rule]:
    """The rows (module docstring), in registry order; each strategy set up with the teacher scores."""
    ignore = info.ignore_index

    def make(name: str, **options: object) -> Strategy:
        cfg = StrategyConfig(name=name, teacher=teacher, **options)  # type: ignore[arg-type]
        s = create_strategy(cfg, info.num_classes, ignore, epochs)
        if s.needs_teacher:
            s.setup(scores)
        return s

    last = epochs - 1
    rules = [strategy_rule("baseline (plain CE)", make("baseline"), last)]
    for name in pixel_level_strategies():
        s = make(name)
        missing = sorted(set(s.needs_extras) - {TEACHER_PROB, FINE})
        if missing:
            rules.append(Rule(f"{name} (not measured: needs {', '.join(missing)})", None))
        elif hasattr(s, "doubt"):  # relax, band_kd, band_ignore: the pixels in doubt, by each rule
            rules += [strategy_rule(f"{name}, doubt_rule={d}", make(name, doubt_rule=d), last) for d in DOUBT_RULES]
            if hasattr(s, "side"):  # band_ignore: also only the side the teacher says moved, two band widths
                rules += [
                    strategy_rule(
                        f"{name}, doubt_rule={d}, band_side=teacher"
                        + ("" if r == s.radius else f", band_radius={r:g}"),
                        make(name, doubt_rule=d, band_side="teacher", band_radius=r),
                        last,
                    )
                    for r in (s.radius, s.radius + 1)
                    for d in (DOUBT_RULES if r == s.radius else ("all", "score"))
                ]
                rules += [fine_side_rule(info, r) for r in (s.radius, s.radius + 1)]
        elif hasattr(s, "weighter"):  # nlkd_pixel: Eq. 6's λ, 0 in the warm-up, final_lambda at the end
            rules.append(strategy_rule(f"{name}, warm-up (λ = 0: teacher only)", s, 0))
            if student:
                lam = s.weighter.schedule(last)
                rules.append(strategy_rule(f"{name}, last epoch (λ = {lam:.2f}: teacher + student)", s, last))
        elif name == "adele" and adele is not None:  # its classes trigger in training: that run's state
            s.load_state_dict(adele["strategy"])
            triggered = f"{int(s.triggered.sum())} of {info.num_classes} classes triggered"
            rules.append(strategy_rule(f"adele, --adele run ({triggered})", s, adele["epoch"], "adele"))
        elif name == "adele":
            rules.append(strategy_rule("adele, fresh (no class triggered yet: plain CE)", s, last))
        else:
            rules.append(strategy_rule(name, s, last))
    return rules + [disagree_rule(ignore, r) for r in (None, 1, 2, 3)]


DOUBT_RULES: tuple[str, ...] = get_args(DoubtRuleName)


def _network(
    path: str | None, info: DatasetInfo, device: torch.device, strategy: str | None = None
) -> tuple[nn.Module | None, dict | None]:
    """The network 0 of checkpoint ``path`` (and the checkpoint), checked against the data set's classes."""
    if path is None:
        return None, None
    ckpt = load_checkpoint(path)
    model, cfg, ckpt_info = model_from_checkpoint(ckpt, device)
    check_matches_data(ckpt_info, info, path, ignore_index=False)
    if strategy is not None and (cfg.strategy.name != strategy or "strategy" not in ckpt):
        raise DataError(f"{path}: needs the last.pt of a '{strategy}' run, got a {cfg.strategy.name!r} checkpoint"
                        + ("" if "strategy" in ckpt else " without strategy state"))  # fmt: skip
    return model, ckpt


@torch.no_grad()
def measure(args: argparse.Namespace, cache: Path) -> tuple[list[str], list[Rule], list[Tally]]:
    """Header lines, the rules and their tallies over the training set."""
    device = resolve_device(args.device)
    teacher, teacher_cfg, teacher_info = model_from_checkpoint(load_checkpoint(args.teacher), device)
    del teacher
    cfg = TrainConfig(out=str(cache))
    cfg.data.root, cfg.data.labels, cfg.strategy.teacher = args.data, args.labels, args.teacher
    cfg.data.size = parse_size(args.size) if args.size else list(teacher_cfg.data.size or [])
    if not cfg.data.size:
        raise NLKDError("the teacher was trained without a fixed size: pass --size HxW")
    info = dataset_info(cfg)
    check_matches_data(teacher_info, info, args.teacher)  # as nlkd train checks its teacher
    ds = FolderDataset(args.data, "train", args.labels, info=info, size=tuple(cfg.data.size), train=False)
    quiet = contextlib.redirect_stdout(sys.stderr)  # the providers' notes, off the table
    with quiet:
        st = cfg.strategy
        scores = teacher_scores(ds, teacher=args.teacher, scores_csv=None, metric=st.metric, tolerance=st.tolerance,
                                cache_dir=cache, device=device, log=print)  # fmt: skip
        for name in (TEACHER_PROB, FINE):
            ds.add_extra(name, EXTRA_PROVIDERS[name](cfg, ds, device))
    student, _ = _network(args.student, info, device)
    adele_net, adele = _network(args.adele, info, device, "adele")
    epochs = args.epochs or teacher_cfg.epochs
    rules = build_rules(info, args.teacher, epochs, scores.to(device), student is not None, adele)
    tallies = [Tally() for _ in rules]
    loader = make_loader(ds, batch_size=args.batch_size, shuffle=False, seed=0)
    steps = math.ceil(len(ds) / args.batch_size)
    for batch in progress(loader, "rules", unit="batch"):
        target, index = batch["mask"].to(device), batch["index"].to(device)
        extras = {k: v.to(device) for k, v in batch["extras"].items()}
        image = batch["image"].to(device)
        nets = {"student": student(image) if student is not None else extras[TEACHER_PROB].clamp(min=1e-6).log()}
        if adele_net is not None:
            nets["adele"] = adele_net(image)
        step = StepInputs(index=index, target=target, logits=[], losses=[], epoch=0, step=0, steps_per_epoch=steps,
                          teacher_scores=scores.to(device)[index], extras=extras)  # fmt: skip
        for rule, tally in zip(rules, tallies):
            if rule.weights is None:
                continue
            logits = nets[rule.network].float()
            ce = per_image_cross_entropy(logits, target, info.ignore_index)
            lw = rule.weights(dataclasses.replace(step, logits=[logits], losses=[ce]))
            rule.kinds.add(acts_by(lw))
            tally.add(lw, target, extras[FINE], info.ignore_index)
    h, w = cfg.data.size
    header = [
        f"Data: {args.data}, labels {args.labels}: {len(ds)} training images at {h}x{w} (un-augmented), "
        f"{info.num_classes} classes, ignore index {info.ignore_index}.",
        f"Teacher: {args.teacher}; student: {args.student or 'none'}; adele run: {args.adele or 'none'}; "
        f"strategies built for {epochs} epochs at their default config.",
    ]
    return header, rules, tallies


def _pct(v: float) -> str:
    return "—" if math.isnan(v) else f"{100 * v:.2f}"


def table(rules: list[Rule], tallies: list[Tally]) -> list[str]:
    """The markdown table (percent; AUROC as a fraction) and a line on the corrupted pixels."""
    first = next((t.row() for r, t in zip(rules, tallies) if r.weights is not None), None)
    n_bad, n_ok = (first["n_corrupted"], first["n_clean"]) if first else (0.0, 0.0)
    share = n_bad / (n_bad + n_ok) if n_bad + n_ok else math.nan
    lines = [
        f"Corrupted pixels (annotation ≠ fine mask, both labelled): {n_bad:.0f} of {n_bad + n_ok:.0f} "
        f"({_pct(share)} %)."
    ]
    if not n_bad:
        lines.append("No corrupted pixels: recall, AUROC and fine label taught are undefined (—).")
    lines += [
        "",
        "| rule | acts by | recall: corrupted px down-weighted (%) | false positives: clean px down-weighted (%) "
        "| AUROC | fine label taught on corrupted px (%) | loss weight on corrupted px (%) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for rule, tally in zip(rules, tallies):
        if rule.weights is None:
            lines.append(f"| {rule.name} | — | — | — | — | — | — |")
            continue
        r = tally.row()
        auroc = "—" if math.isnan(r["auroc"]) else f"{r['auroc']:.3f}"
        cells = [_pct(r["recall"]), _pct(r["false_pos"]), auroc, _pct(r["taught"]), _pct(r["share"])]
        lines.append(f"| {rule.name} | {' / '.join(sorted(rule.kinds))} | {' | '.join(cells)} |")
    return lines


def quick_inputs(work: Path) -> list[str]:
    """``--quick``: a tiny synthetic set (16 training images at 32x48, ``train_coarse`` half dilated/eroded)
    and a one-epoch teacher trained on it, also used as the student; returns the arguments."""
    from nlkd.data.synth import make_synthetic
    from nlkd.train import train

    data = make_synthetic(work / "data", seed=0, n_train=16, n_val=4, n_test=4, size=(32, 48))
    cfg = TrainConfig(epochs=1, batch_size=4, seed=0, out=str(work / "teacher"), device="cpu")
    cfg.data.root, cfg.data.labels, cfg.data.size = str(data), "train_coarse", [32, 48]
    train(cfg, log=lambda *a, **k: None)
    ckpt = str(work / "teacher" / "last.pt")
    return ["--data", str(data), "--labels", "train_coarse", "--teacher", ckpt, "--student", ckpt, "--device", "cpu"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", metavar="ROOT", help="data set root (required unless --quick)")
    p.add_argument("--labels", metavar="NAME", help="coarse label folder written by `nlkd corrupt` (with its manifest)")
    p.add_argument("--teacher", metavar="CKPT", help="the teacher: the plain-CE run on the same coarse labels")
    p.add_argument("--student", metavar="CKPT", help="the student of rules that mix teacher and student")
    p.add_argument("--adele", metavar="CKPT", help="last.pt of an adele run: its network and triggered classes")
    p.add_argument("--size", metavar="HxW", help="the training resolution (default: the teacher's)")
    p.add_argument("--epochs", type=int, help="the runs' length, for schedules (default: the teacher's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache", type=Path, metavar="DIR", help="keep the teacher's maps and scores here (default: temp)")
    p.add_argument("--quick", action="store_true", help="tiny synthetic data and a one-epoch teacher (seconds)")
    args = p.parse_args(argv)
    if args.quick:
        with tempfile.TemporaryDirectory() as work:
            rest = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--quick"]
            return main([*quick_inputs(Path(work)), *rest])
    if not (args.data and args.labels and args.teacher):
        p.error("--data, --labels and --teacher are required (or --quick)")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            header, rules, tallies = measure(args, args.cache or Path(tmp))
    except NLKDError as e:
        print(f"pixel_detection: error: {e}", file=sys.stderr)
        return 2
    print("\n".join([*header, *table(rules, tallies)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
