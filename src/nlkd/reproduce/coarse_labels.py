"""The label folders a table trains on: coarse labels written once into the data root (and Table 1's
clean subset), checked against their manifest when they exist."""

from __future__ import annotations

import os
from pathlib import Path

from nlkd.data.folder import IMAGE_EXTENSIONS
from nlkd.errors import DataError
from nlkd.io import atomic_write_text
from nlkd.noise import corrupt_dataset, load_manifest
from nlkd.reproduce.cells import NoiseSpec, TablePlan
from nlkd.reproduce.scales import Log, Setup

__all__ = ["prepare_data"]


def _clean_subset(root: Path, spec: NoiseSpec, corrupted: list[str]) -> None:
    """Table 1: split ``<name>_clean`` (links to the uncorrupted pairs) and the list of coarse ids."""
    bad = set(corrupted)
    for kind, exts in (("images", IMAGE_EXTENSIONS), ("labels", (".png",))):
        src, dst = root / kind / "train", root / kind / spec.clean_split
        wanted = {p.name: p for p in src.iterdir() if p.suffix.lower() in exts and p.stem not in bad}
        dst.mkdir(parents=True, exist_ok=True)
        extra = sorted(p.name for p in dst.iterdir() if p.name not in wanted)
        if extra:
            raise DataError(f"{dst / extra[0]}: not part of the clean subset; delete {dst} and run again")
        for name, path in wanted.items():
            if (dst / name).exists():
                continue
            try:
                (dst / name).symlink_to(os.path.relpath(path, dst))
            except FileExistsError:  # made meanwhile by another process of the same grid (--seeds k each)
                continue
            except OSError:  # no symlinks (e.g. Windows without the privilege): copy
                (dst / name).write_bytes(path.read_bytes())
    listing = root / "splits" / f"{spec.name}.txt"
    text = "".join(f"{i}\n" for i in corrupted)
    if not listing.is_file() or listing.read_text() != text:
        atomic_write_text(listing, text)


def prepare_data(setup: Setup, plan: TablePlan, log: Log = print) -> None:
    """Write the plan's coarse label folders (and Table 1's clean subset) unless they exist."""
    src = setup.root / "labels" / "train"
    for spec in plan.noise:
        dst = setup.root / "labels" / spec.name
        ignore = setup.info.ignore_index
        if spec.mode == "polygon" and ignore is None:
            ignore = 255
        expected = {"mode": spec.mode, "ratio": float(spec.ratio), "seed": setup.noise_seed, "params": {}}
        expected.update(ignore_index=ignore, source=str(src.resolve()))
        manifest = load_manifest(dst)
        if manifest is None:
            log(f"== writing {dst} ({spec.mode}, {spec.ratio:.1%} of the masks, seed {setup.noise_seed})")
            manifest = corrupt_dataset(src, dst, spec.ratio, spec.mode, setup.noise_seed, ignore)  # type: ignore[arg-type]
        diffs = [f"{k} {manifest.get(k)!r} (want {v!r})" for k, v in expected.items() if manifest.get(k) != v]
        if diffs:
            raise DataError(f"{dst}: exists with other settings ({'; '.join(diffs)}); delete it or use another ROOT")
        if spec.subset:
            _clean_subset(setup.root, spec, list(manifest["corrupted"]))
