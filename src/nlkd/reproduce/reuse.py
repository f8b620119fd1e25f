"""Tables share runs: a cell whose run (same config, same teacher, same seed) finished in another table
under the output folder links that run instead of training it again.

On CPU training is deterministic per seed (RESULTS.md checks it), so the linked run is bit for bit the
one the cell would train; on a GPU it is a run of the same config.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml

from nlkd.config import TrainConfig, config_to_dict, load_config
from nlkd.errors import NLKDError
from nlkd.io import atomic_write_text
from nlkd.reproduce.results import finished_record
from nlkd.reproduce.scales import Setup

__all__ = ["find_twin", "reuse_run", "run_key"]


def run_key(cfg: TrainConfig) -> str:
    """What makes two runs the same run: the config without ``out``, the teacher's path replaced by the
    teacher run's own key (read from the ``config.yaml`` beside its checkpoint; a checkpoint that is no
    run folder's keeps its path). Settings that cannot change the numbers are kept too (conservative), but
    kept checkpoints and ``init_from`` (the same run, tests/test_late_start.py)."""
    d = config_to_dict(cfg)
    for key in ("out", "keep_epochs", "init_from"):  # where it lives, what it keeps, how it got there
        d.pop(key)
    teacher = d["strategy"]["teacher"]
    if teacher is not None and (Path(teacher).parent / "config.yaml").is_file():
        d["strategy"]["teacher"] = {"run": run_key(load_config(Path(teacher).parent / "config.yaml"))}
    return json.dumps(d, sort_keys=True)


def find_twin(setup: Setup, cfg: TrainConfig) -> Path | None:
    """A finished run under ``setup.out`` (``<table>/<cell>/seed<k>/``) with the same :func:`run_key` as
    ``cfg``, other than ``cfg.out`` itself; None if there is none."""
    key, own = run_key(cfg), Path(cfg.out).resolve()
    for path in sorted(setup.out.glob("*/*/seed*/config.yaml")):
        folder = path.parent
        if folder.resolve() == own or finished_record(folder, cfg.epochs) is None:
            continue
        try:
            if run_key(load_config(path)) == key:
                return folder
        except NLKDError:  # e.g. a config of an older nlkd: not a twin
            continue
    return None


def reuse_run(source: Path, cfg: TrainConfig) -> None:
    """Make ``cfg.out`` the finished run ``source``: hard links to its files (copies where linking fails),
    ``config.yaml`` written for ``cfg``, and ``reused_from.txt`` naming the source."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    atomic_write_text(out / "reused_from.txt", f"{source.resolve()}\n")
    files = [p for p in source.iterdir() if p.is_file() and not p.name.startswith(".")]
    files = [p for p in files if p.name not in ("config.yaml", "reused_from.txt")]
    # metrics.jsonl last: the run counts as finished (finished_record) only once everything is in place
    for src in sorted(files, key=lambda p: (p.name == "metrics.jsonl", p.name)):
        tmp = out / f".{src.name}.link"
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, out / src.name)
