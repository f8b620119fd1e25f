"""Training strategies behind one interface (:class:`nlkd.strategies.base.Strategy`), by name."""

from __future__ import annotations

from nlkd.config import StrategyConfig
from nlkd.errors import ConfigError, did_you_mean
from nlkd.strategies.adele import Adele
from nlkd.strategies.band_ignore import BandIgnore
from nlkd.strategies.band_kd import BandKD
from nlkd.strategies.base import LossWeights, StepInputs, Strategy
from nlkd.strategies.discard import Discard
from nlkd.strategies.fixed import Fixed
from nlkd.strategies.nlkd_pixel import NLKDPixel
from nlkd.strategies.oracle import OracleImage, OraclePixel
from nlkd.strategies.relax import Relax
from nlkd.strategies.simple import NLKD, Baseline, Reweight
from nlkd.strategies.two_network import CoTeaching, CoTeachingPlus, Decoupling

__all__ = ["STRATEGIES", "LossWeights", "StepInputs", "Strategy", "create_strategy", "register_strategy"]

STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    STRATEGIES[cls.name] = cls
    return cls


for _cls in (
    Baseline,
    Reweight,
    NLKD,
    Fixed,
    Discard,
    Decoupling,
    CoTeaching,
    CoTeachingPlus,
    OracleImage,
    OraclePixel,
):
    register_strategy(_cls)
for _cls in (Relax, BandKD, NLKDPixel, Adele, BandIgnore):  # pixel level
    register_strategy(_cls)


def create_strategy(cfg: StrategyConfig, num_classes: int, ignore_index: int | None, epochs: int) -> Strategy:
    """Build the strategy named ``cfg.name``; an unknown name lists the valid ones."""
    if cfg.name not in STRATEGIES:
        hint = did_you_mean(cfg.name, STRATEGIES)
        raise ConfigError(f"unknown strategy {cfg.name!r}{hint}; choose one of: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[cfg.name](cfg, num_classes, ignore_index, epochs)
