"""Optimisers and learning-rate schedules: Lookahead, Ranger (RAdam + GC + Lookahead), factories.

The paper (§3.1) trains with Ranger, weight decay 5e-4, a learning rate of 0.1 halved every 25 of 100
epochs. :func:`build_optimizer` and :func:`build_scheduler` turn config names into those objects; the
schedulers step once per optimiser step, so a schedule is defined over ``total_steps``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from nlkd.errors import ConfigError

__all__ = [
    "Lookahead",
    "OptimizerName",
    "Ranger",
    "SchedulerName",
    "build_optimizer",
    "build_scheduler",
    "centralize_gradient_",
]

OptimizerName = Literal["ranger", "sgd", "adamw"]
SchedulerName = Literal["step", "poly", "cosine", "constant"]

_HAS_DECOUPLED_RADAM = "decoupled_weight_decay" in inspect.signature(torch.optim.RAdam).parameters


def centralize_gradient_(grad: torch.Tensor) -> torch.Tensor:
    """Gradient centralisation, in place: subtract from ``grad`` its mean over all dims but the first.

    Args:
        grad: gradient of a weight of shape (C_out, ...), e.g. (C_out, C_in, kH, kW) for a convolution
            or (C_out, C_in) for a linear layer. Tensors with ``ndim <= 1`` (biases, norm scales) are
            returned unchanged.

    Returns:
        ``grad`` itself, where every slice ``grad[i]`` now has mean zero.
    """
    if grad.ndim > 1:
        grad.sub_(grad.mean(dim=tuple(range(1, grad.ndim)), keepdim=True))
    return grad


class Lookahead(Optimizer):
    """Lookahead (Zhang et al., 2019) around any optimiser: ``k`` fast steps, then one slow update.

    The base optimiser takes the fast steps. After every ``k``-th step the slow weights move towards
    the fast ones, ``slow += alpha * (fast - slow)``, and the fast weights restart from there
    (``fast = slow``). Slow weights are snapshots of the parameters taken at the first :meth:`step`.

    ``param_groups`` is the base optimiser's own list, so an LR scheduler attached to the wrapper
    drives the base optimiser. :meth:`state_dict` holds the base state, the slow weights and the step
    counter, so a run restored mid-cycle continues exactly as if uninterrupted.

    Args:
        base: the inner (fast) optimiser, e.g. ``torch.optim.RAdam``.
        k: fast steps per slow update, >= 1.
        alpha: slow step size in (0, 1].
    """

    def __init__(self, base: Optimizer, k: int = 6, alpha: float = 0.5) -> None:
        if not isinstance(base, Optimizer):
            raise TypeError(f"base must be a torch.optim.Optimizer, got {type(base).__name__}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must lie in (0, 1], got {alpha!r}")
        self.base = base
        self.k = k
        self.alpha = float(alpha)
        self.lookahead_step = 0
        # Registers the base's group dicts (unchanged) and creates self.state for the slow weights ...
        super().__init__(base.param_groups, base.defaults)
        # ... then shares the list itself, so add_param_group and schedulers act on the base directly.
        self.param_groups = base.param_groups

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update(base=self.base, k=self.k, alpha=self.alpha, lookahead_step=self.lookahead_step)
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k}, alpha={self.alpha}, base={self.base!r})"

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One fast step of the base optimiser; every ``k``-th call also a slow update.

        Args:
            closure: re-evaluates the model and returns the loss; passed to the base optimiser.

        Returns:
            Whatever the base optimiser's ``step`` returns (the closure's loss, or None).
        """
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if "slow_buffer" not in self.state[p]:
                        self.state[p]["slow_buffer"] = p.detach().clone()
        loss = self.base.step(closure)
        self.lookahead_step += 1
        if self.lookahead_step % self.k == 0:
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        slow = self.state[p]["slow_buffer"]
                        slow.add_(p.detach() - slow, alpha=self.alpha)
                        p.copy_(slow)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all parameters (delegated to the base optimiser)."""
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: ``{"base", "slow", "k", "alpha", "lookahead_step"}``."""
        return {
            "base": self.base.state_dict(),
            "slow": super().state_dict(),
            "k": self.k,
            "alpha": self.alpha,
            "lookahead_step": self.lookahead_step,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`: base state, slow weights, ``k``, ``alpha`` and step counter."""
        missing = {"base", "slow", "k", "alpha", "lookahead_step"} - set(state_dict)
        if missing:
            raise ValueError(
                f"state_dict is not a Lookahead state (missing keys {sorted(missing)}); "
                "was it saved from the base optimiser instead?"
            )
        super().load_state_dict(state_dict["slow"])  # casts slow weights to each param's device/dtype
        self.base.load_state_dict(state_dict["base"])
        self.param_groups = self.base.param_groups  # the base rebuilt its list: share it again
        self.k = int(state_dict["k"])
        self.alpha = float(state_dict["alpha"])
        self.lookahead_step = int(state_dict["lookahead_step"])


class _CentralizedRAdam(torch.optim.RAdam):
    """RAdam that centralises the gradients of ``ndim > 1`` weights of groups with ``gc=True``."""

    def __init__(self, params: Iterable[Any], gc: bool, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.defaults["gc"] = gc
        for group in self.param_groups:
            group.setdefault("gc", gc)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                if group.get("gc", False):
                    for p in group["params"]:
                        if p.grad is not None:
                            centralize_gradient_(p.grad)
        super().step()
        return loss


class Ranger(Lookahead):
    """Ranger: RAdam with optional gradient centralisation, wrapped in :class:`Lookahead`.

    Gradient centralisation (``gc=True``) subtracts from each weight gradient with ``ndim > 1``
    (conv and linear weights) its mean over all dims but the first, before the RAdam step. Weight
    decay is decoupled (AdamW style) when the installed torch's RAdam supports it.

    Args:
        params: parameters or parameter-group dicts (a group may set ``"gc": False``).
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
        extra = {"decoupled_weight_decay": True} if _HAS_DECOUPLED_RADAM else {}
        base = _CentralizedRAdam(params, gc=gc, lr=lr, betas=betas, weight_decay=weight_decay, **extra)
        super().__init__(base, k=k, alpha=alpha)


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
    raise ConfigError(f"optim.name: unknown optimizer {name!r}; valid names are {', '.join(valid)}")


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
        raise ConfigError(f"optim.schedule: unknown schedule {name!r}; valid names are {', '.join(valid)}")
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
