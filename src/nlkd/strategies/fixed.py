"""Fixed reweighting (the paper's Table 1): images flagged coarse weigh ``coarse_weight``, the others 1.

The flags come from the label folder's ``manifest.json`` (written by ``nlkd corrupt``) or from
``strategy.coarse_list``; the loop reads them (``needs_coarse_flags``) and passes them per batch.

    nlkd train --data ROOT --labels train_coarse --strategy fixed --set strategy.coarse_weight=0.5
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nlkd.config import StrategyConfig
from nlkd.errors import ConfigError
from nlkd.strategies.base import StepInputs, Strategy

__all__ = ["Fixed"]


class Fixed(Strategy):
    """Constant weights: ``coarse_weight`` (default 0.5) for images flagged coarse, 1 for the rest.

    Logs ``coarse_share`` (share of the batch flagged coarse) and ``w_mean`` (mean weight).
    """

    name = "fixed"
    needs_coarse_flags = True

    def __init__(self, cfg: StrategyConfig, num_classes: int, ignore_index: int | None, epochs: int) -> None:
        super().__init__(cfg, num_classes, ignore_index, epochs)
        w = cfg.coarse_weight
        if not math.isfinite(w) or w < 0:
            raise ConfigError(f"strategy.coarse_weight must be a finite number >= 0, got {w!r}")
        self.coarse_weight = float(w)

    def weights(self, step: StepInputs) -> list[Tensor]:
        """(B,) ``coarse_weight`` where ``step.coarse`` (B,) is True, else 1."""
        if step.coarse is None:
            raise ValueError("strategy 'fixed' needs StepInputs.coarse, the (B,) coarse flags; got None")
        ones = self.ones(step)
        w = torch.where(step.coarse.to(ones.device), ones * self.coarse_weight, ones)
        n = len(w)
        self.log.add("coarse_share", step.coarse.float(), n)
        self.log.add("w_mean", w, n)
        return [w]
