"""An ``nlkd train`` command line for a run of a table: what ``--dry-run`` prints and the noise bench
launches."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import yaml

from nlkd.config import TrainConfig, config_to_dict, load_config

__all__ = ["train_command"]

_SECTIONS = ("data", "model", "optim", "strategy")


def _flatten(cfg: dict[str, Any]) -> dict[str, Any]:
    flat = {}
    for key, value in cfg.items():
        if key in _SECTIONS:
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _value(value: Any) -> str:
    """``--set`` text that parses (as YAML) back to ``value``."""
    if isinstance(value, str) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value, ensure_ascii=False)


def train_command(config_path: Path, cfg: TrainConfig) -> str:
    """An ``nlkd train`` command line that trains run ``cfg``: the scale's config file plus ``--set``
    for every key that differs from it."""
    ref, new = _flatten(config_to_dict(load_config(config_path))), _flatten(config_to_dict(cfg))
    sets = [f"--set={k}={_value(v)}" for k, v in new.items() if k != "out" and ref.get(k) != v]
    resume = ["--resume"] if (Path(cfg.out) / "last.pt").is_file() else []  # --resume refuses a missing run
    return shlex.join(["nlkd", "train", "--config", str(config_path), *sets, "--out", cfg.out, *resume])
