"""Optimisers and learning-rate schedules: Ranger (RAdam + Lookahead + gradient centralisation) and
the factories that turn config names into optimisers and schedules.

The paper (§3.1) trains with Ranger, weight decay 5e-4, a learning rate of 0.1 halved every 25 of 100
epochs. :class:`Ranger` is pytorch-optimizer's, set up as RAdam does it (see the class);
:func:`build_optimizer` and :func:`build_scheduler` turn config names into those objects; the
schedulers step once per optimiser step, so a schedule is defined over ``total_steps``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import pytorch_optimizer
import torch
from pytorch_optimizer import Lookahead
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from nlkd.errors import ConfigError, NLKDError, did_you_mean

__all__ = [
    "Lookahead",
    "OptimizerName",
    "Ranger",
    "SchedulerName",
    "build_optimizer",
    "build_scheduler",
]

OptimizerName = Literal["ranger", "sgd", "adamw"]
SchedulerName = Literal["step", "poly", "cosine", "constant"]


class Ranger(pytorch_optimizer.Ranger):
    """Ranger: RAdam with gradient centralisation, wrapped in Lookahead (pytorch-optimizer's).

    Every step centralises the gradient of each weight with ``ndim > 1`` (conv and linear weights:
    minus its mean over all dims but the first), decays the weights decoupled (AdamW style), takes a
    rectified Adam step, and every ``k``-th step moves the slow weights ``alpha`` of the way to the
    fast ones and restarts the fast weights from there.

    Set up as torch's ``RAdam`` is: ``eps`` 1e-8, and before the variance estimate is usable (the first
    5 steps at β₂ = 0.999) a momentum SGD step (``degenerated_to_sgd``; the library's default would
    step *up* the gradient then). Updates match RAdam + gradient centralisation + Lookahead to float
    rounding (tests/test_optim.py checks 40 steps against a step-by-step reference).

    Args:
        params: parameters or parameter-group dicts.
        lr: learning rate.
        weight_decay: weight decay coefficient (the paper uses 5e-4).
        betas: RAdam's moment coefficients.
        k: Lookahead fast steps per slow update.
        alpha: Lookahead slow step size.
        gc: centralise gradients of ``ndim > 1`` parameters.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        weight_decay: float,
        betas: tuple[float, float] = (0.95, 0.999),
        k: int = 6,
        alpha: float = 0.5,
        gc: bool = True,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            alpha=alpha,
            k=k,
            weight_decay=weight_decay,
            weight_decouple=True,
            use_gc=gc,
            degenerated_to_sgd=True,
            eps=1e-8,
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the state of nlkd's former own Ranger is refused in one line."""
        if {"base", "slow", "lookahead_step"} <= set(state_dict):
            raise NLKDError(
                "the checkpoint's optimiser state is from nlkd's own former Ranger (before pytorch-optimizer); "
                "this nlkd cannot resume it: start the run again, or finish it with the nlkd that wrote it"
            )
        super().load_state_dict(state_dict)


def build_optimizer(
    name: OptimizerName,
    params: Iterable[Any],
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
) -> Optimizer:
    """Create the optimiser a config names: ``"ranger"``, ``"sgd"`` (with ``momentum``) or ``"adamw"``.

    Raises:
        ConfigError: ``name`` is not one of the valid names.
    """
    valid = get_args(OptimizerName)
    if name == "ranger":
        return Ranger(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(
        f"optim.name: unknown optimizer {name!r}{did_you_mean(name, valid)}; valid names are {', '.join(valid)}"
    )


@dataclass(frozen=True)
class _LRFactor:
    """LR multiplier at optimiser step ``s`` (0-based); a class so LambdaLR can save its state."""

    name: str
    total_steps: int
    warmup_steps: int
    milestones: tuple[int, ...]

    def __call__(self, s: int) -> float:
        if s < self.warmup_steps:
            warm = (s + 1) / self.warmup_steps
        else:
            warm = 1.0
        if self.name == "step":
            return warm * 0.5 ** sum(s >= m for m in self.milestones)
        if self.name == "constant":
            return warm
        if s < self.warmup_steps:
            return warm
        t = min(1.0, (s - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        if self.name == "poly":
            return (1.0 - t) ** 0.9
        return 0.5 * (1.0 + math.cos(math.pi * t))  # cosine


def build_scheduler(
    name: SchedulerName,
    optimizer: Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    warmup_steps: int = 0,
) -> LRScheduler:
    """Create an LR schedule to be stepped once after every optimiser step.

    * ``"step"``: the paper's schedule, x0.5 at 25, 50 and 75 % of the epochs; each decay happens at
      the first epoch boundary at or after that fraction of ``total_steps``.
    * ``"poly"``: ``(1 - t) ** 0.9``; ``"cosine"``: ``(1 + cos(pi t)) / 2``, both decaying to 0 with
      ``t`` the fraction of the post-warmup steps done; ``"constant"``: factor 1.

    With ``warmup_steps > 0`` the factor first rises linearly, ``(s + 1) / warmup_steps`` at step ``s``;
    for ``"step"`` and ``"constant"`` it multiplies the schedule, ``"poly"`` and ``"cosine"`` start after.

    Raises:
        ConfigError: ``name`` is not one of the valid names, or ``warmup_steps`` is out of range.
        ValueError: ``total_steps`` or ``steps_per_epoch`` is below 1.
    """
    valid = get_args(SchedulerName)
    if name not in valid:
        hint = did_you_mean(name, valid)
        raise ConfigError(f"optim.schedule: unknown schedule {name!r}{hint}; valid names are {', '.join(valid)}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if not 0 <= warmup_steps < total_steps:
        raise ConfigError(f"optim.warmup_steps: must lie in [0, total_steps={total_steps}), got {warmup_steps}")
    # ceil(q/4 * total_steps / steps_per_epoch) epochs, in integer arithmetic
    milestones = tuple(-(-q * total_steps // (4 * steps_per_epoch)) * steps_per_epoch for q in (1, 2, 3))
    factor = _LRFactor(name, total_steps, warmup_steps, milestones)
    return LambdaLR(optimizer, lr_lambda=factor)
