"""``nlkd corrupt``: write a copy of a label folder with a random fraction of masks made coarse."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nlkd.data.info import DatasetInfo, load_dataset_info
from nlkd.data.notes import ignore_index_warning, print_warnings
from nlkd.errors import ConfigError, DataError
from nlkd.noise import MODE_PARAMS, MODES, corrupt_dataset

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``corrupt`` parser to the ``nlkd`` sub-commands."""
    p = subparsers.add_parser(
        "corrupt",
        help="copy a label folder, corrupting a random fraction of masks (dilate/erode, polygons or markov)",
        description="Copy SRC/*.png class-index masks to DST; round(ratio * N) of them, chosen by --seed, "
        "are corrupted with --mode. Writes DST/manifest.json listing the corrupted ids. SRC is never "
        "modified.",
    )
    p.add_argument("--src", required=True, help="label folder with class-index PNG masks")
    p.add_argument("--dst", required=True, help="new label folder to write (not inside --src)")
    p.add_argument("--ratio", type=float, default=0.5, help="fraction of masks to corrupt (default 0.5)")
    p.add_argument("--mode", choices=MODES, default="dilate_erode", help="corruption (default dilate_erode)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--ignore-index",
        type=int,
        default=None,
        metavar="I",
        help="label of unlabelled pixels, never grown or shrunk (default: from ROOT/dataset.yaml when --src is "
        "ROOT/labels/NAME, else none: every value is a class)",
    )
    p.add_argument(
        "--radius",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="dilate_erode: grow/shrink radius range in px (default 6-10 px scaled to min(H, W) / 321)",
    )
    p.add_argument(
        "--tolerance-px", type=float, help="polygon: simplification tolerance in px (default 1.5 %% of min(H, W), >= 1)"
    )
    p.add_argument(
        "--band-px", type=float, help="polygon: width of the unlabelled band in px (default 2 %% of min(H, W), >= 2)"
    )
    p.add_argument("--steps", type=int, help="markov: random-walk steps T (default 150 * min(H, W) / 360)")
    p.add_argument("--expand-prob", type=float, help="markov: probability θ1 that a step expands (default 0.8)")
    p.add_argument("--flip-prob", type=float, help="markov: flip probability θ2 of a boundary pixel (default 0.05)")
    p.add_argument("--pixel-flip-prob", type=float, help="markov: final per-pixel flip probability θ3 (default 0.2)")
    p.add_argument("--blur-sigma", type=float, help="markov: σ of the final Gaussian blur in px (default 2; 0 none)")
    p.set_defaults(func=run)


def _mode_params(args: argparse.Namespace) -> dict[str, Any]:
    given = {
        "radius": tuple(args.radius) if args.radius is not None else None,
        "tolerance_px": args.tolerance_px,
        "band_px": args.band_px,
        **{k: getattr(args, k) for k in ("steps", "expand_prob", "flip_prob", "pixel_flip_prob", "blur_sigma")},
    }
    allowed = MODE_PARAMS[args.mode]
    params = {}
    for key, value in given.items():
        if value is None:
            continue
        if key not in allowed:
            raise ConfigError(f"--{key.replace('_', '-')}: not used by --mode {args.mode}")
        params[key] = value
    if "radius" in params and not 0 <= params["radius"][0] <= params["radius"][1]:
        raise ConfigError(f"--radius: expected 0 <= LO <= HI, got {params['radius'][0]} {params['radius'][1]}")
    if params.get("tolerance_px", 1.0) <= 0 or params.get("band_px", 0.0) < 0:
        raise ConfigError("--tolerance-px must be > 0 and --band-px >= 0")
    for key in ("expand_prob", "flip_prob", "pixel_flip_prob"):
        if not 0 <= params.get(key, 0.0) <= 1:
            raise ConfigError(f"--{key.replace('_', '-')}: expected a probability in [0, 1], got {params[key]}")
    if params.get("steps", 0) < 0 or params.get("blur_sigma", 0.0) < 0:
        raise ConfigError("--steps and --blur-sigma must be >= 0")
    return params


def _dataset_yaml(src: str | Path) -> tuple[DatasetInfo, bool, Path] | None:
    """``(classes, whether the yaml gives num_classes, yaml path)`` of ``ROOT/dataset.yaml`` when ``src`` is
    ``ROOT/labels/NAME`` and the yaml exists; None otherwise. The yaml may lack ``num_classes`` here:
    corrupting needs no class count (256 then stands in, admitting every 8-bit ignore_index)."""
    folder = Path(src).resolve()
    path = folder.parent.parent / "dataset.yaml"
    if folder.parent.name != "labels" or not path.is_file():
        return None
    try:
        return load_dataset_info(path.parent), True, path
    except DataError:  # raised only for a missing num_classes
        return load_dataset_info(path.parent, num_classes=256), False, path


def _ignore_index(args: argparse.Namespace) -> tuple[int | None, str]:
    """The ignore index to corrupt with, and where it came from (for the summary line); warns (stderr) when
    it is one of ``ROOT/dataset.yaml``'s class indices."""
    found = _dataset_yaml(args.src)
    if args.ignore_index is not None:
        ignore_index, source = args.ignore_index, "--ignore-index"
    elif found is None:
        return None, "no --ignore-index, no ROOT/dataset.yaml"
    else:
        ignore_index = found[0].ignore_index
        source = str(found[2]) if ignore_index is not None else f"{found[2]} has none"
    warning = ignore_index_warning(found[0].num_classes, ignore_index) if found is not None and found[1] else None
    print_warnings("corrupt", [warning] if warning else [])
    return ignore_index, source


def run(args: argparse.Namespace) -> int:
    """Corrupt the label folder and print a one-line summary; user errors raise NLKDError."""
    params = _mode_params(args)
    ignore_index, source = _ignore_index(args)
    manifest = corrupt_dataset(
        args.src,
        args.dst,
        ratio=args.ratio,
        mode=args.mode,
        seed=args.seed,
        ignore_index=ignore_index,
        **params,
    )
    used = manifest["ignore_index"]
    if used is None:
        unlabelled = f"none ({source}): every mask value is treated as a class"
    elif used == ignore_index:
        unlabelled = f"value {used}, from {source}" + ("" if args.mode == "polygon" else "; never moved")
    else:
        unlabelled = f"value {used}, the polygon band's default (--ignore-index sets it)"
    changed = len(manifest["corrupted"]) - len(manifest["unchanged"])
    print(
        f"corrupted {changed} of {manifest['n_images']} masks ({args.mode}, seed "
        f"{args.seed}) -> {args.dst} (manifest.json lists them)\nunlabelled pixels: {unlabelled}"
    )
    if manifest["unchanged"]:
        print_warnings("corrupt", [_unchanged_warning(manifest["unchanged"], args.mode)])
    return 0


def _unchanged_warning(unchanged: list[str], mode: str) -> str:
    """What to say about the masks chosen for corruption that came out unchanged (ids: the first five)."""
    shown = ", ".join(unchanged[:5]) + (f", ... ({len(unchanged)} in all)" if len(unchanged) > 5 else "")
    hint = (
        " (nothing to move within the radius: one class only, or every boundary behind an unlabelled band wider"
        " than the radius; --radius LO HI sets it)"
    )
    return (
        f"{len(unchanged)} of the masks chosen for corruption came out unchanged (manifest.json lists them as "
        f"'unchanged'; the audit does not count them as bad): {shown}{hint if mode == 'dilate_erode' else ''}"
    )
