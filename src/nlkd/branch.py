"""Continue a plain-CE run's checkpoint with a strategy that starts late (``init_from``).

A strategy with ``strategy.start: s`` trains plain CE for the first ``round(s · epochs)`` epochs, so up to
there it is the plain-CE run of the same config and seed, step for step. ``init_from: RUN/epochN/last.pt``
(kept by that run's ``keep_epochs: [N]``) starts from that run's state after epoch N, as ``--resume``
would, instead of training those epochs again: the same run, at a fraction of the cost. Refused unless
it is the same run: the configs may differ only in the strategy (not its reduction) and in where the run
lives, the checkpoint's run was plain CE through epoch N, and this run's strategy starts after it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nlkd.checkpoint import load_checkpoint
from nlkd.config import TrainConfig, config_diffs, config_from_dict, config_to_dict
from nlkd.errors import DataError, NLKDError

__all__ = ["RUN_PLACE", "branch_point", "differences", "strategy_start_epoch"]

# keys that say where and how a run is kept, not what it computes
RUN_PLACE = ("out", "device", "threads", "data.num_workers", "log", "log_images_every", "keep_epochs", "init_from")


def strategy_start_epoch(cfg: TrainConfig) -> int:
    """The first epoch (from 0) in which the strategy is asked; plain CE before it."""
    return round(cfg.strategy.start * cfg.epochs)


def _strategy_only(key: str) -> bool:
    return key in RUN_PLACE or (key.startswith("strategy.") and key != "strategy.reduction")


def differences(plain: TrainConfig, late: TrainConfig) -> list[str]:
    """What keeps ``late`` from continuing a checkpoint of the run ``plain`` (``"key: a -> b"``): any
    difference but the strategy's (its reduction counts) and where the runs live."""
    return config_diffs(config_to_dict(plain), config_to_dict(late), _strategy_only)


def branch_point(cfg: TrainConfig) -> dict[str, Any]:
    """The state to continue from ``cfg.init_from`` (a ``last.pt``), with a fresh strategy state and the
    key ``branched_from``; a checkpoint that would not give the same run is a one-line error."""
    path = Path(str(cfg.init_from))
    ckpt = load_checkpoint(path)
    if "optimizers" not in ckpt:
        raise DataError(f"{path}: holds weights only; init_from needs a run's last.pt (or its epochN/last.pt)")
    old = config_from_dict(ckpt["config"])
    done = ckpt["epoch"] + 1
    diffs = differences(old, cfg)
    if diffs:
        differ = "; ".join(diffs)
        raise NLKDError(f"{path} was written with a different config ({differ}); init_from continues the same run")
    if old.strategy.name != "baseline" and strategy_start_epoch(old) < done:
        raise NLKDError(f"{path}: its run trained strategy {old.strategy.name!r} before epoch {done}, not plain CE")
    start = strategy_start_epoch(cfg)
    if start < done:
        raise NLKDError(
            f"{path} holds epoch {done}, but strategy.start={cfg.strategy.start:g} starts the strategy at epoch "
            f"{start + 1}; init_from needs a checkpoint of epoch {start} or earlier"
        )
    return {**ckpt, "strategy": {}, "branched_from": str(path)}
