"""Per-image weights that separate: quality scores turned into ranks or mixture posteriors.

Raw BFmIoU scores of corrupted and clean masks differ by little (RESULTS.md: a mean-weight ratio of
0.82), so weighting by them removes little of the bad gradient. Two monotone-ish maps spread them out,
both fitted once on the cached teacher scores of the whole training set (``reference``):

* ``rank`` — the score's percentile among the reference scores (mid-rank for ties), in [0, 1];
* ``gmm`` — the posterior of the higher-mean component of a two-component 1-D Gaussian mixture fitted
  to the reference scores by EM (DivideMix does this on per-sample losses).

Transformed weights are then scaled to mean 1 over the batch (:func:`normalise_batch_mean`), so the
effective learning rate stays that of plain CE. ``raw`` leaves the score as it is (the paper's method).

    t = ScoreTransform("gmm", teacher_scores_of_the_training_set)         # (N,)
    w = normalise_batch_mean(t(batch_scores))                             # (B,)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

__all__ = [
    "TRANSFORMS",
    "GaussianMixture2",
    "ScoreTransform",
    "Transform",
    "fit_gaussian_mixture2",
    "normalise_batch_mean",
    "rank_among",
]

Transform = Literal["raw", "rank", "gmm"]
TRANSFORMS: tuple[str, ...] = get_args(Transform)


def rank_among(scores: Tensor, reference: Tensor) -> Tensor:
    """Percentile of each score among ``reference``: (#ref < s + ½·#ref == s) / #ref.

    Args:
        scores: (B,) scores (NaN stays NaN).
        reference: (N,) scores; NaN entries are left out.

    Returns:
        (B,) float32 in [0, 1].

    >>> rank_among(torch.tensor([0.0, 0.5, 2.0]), torch.tensor([0.1, 0.5, 0.9, 1.0])).tolist()
    [0.0, 0.375, 1.0]
    """
    ref = reference.detach().double().flatten()
    ref = ref[~torch.isnan(ref)].sort().values.to(scores.device)
    if ref.numel() == 0:
        raise ValueError("reference holds no finite score to rank against")
    s = scores.detach().double()
    below = torch.searchsorted(ref, s.nan_to_num(0.0), side="left")
    upto = torch.searchsorted(ref, s.nan_to_num(0.0), side="right")
    pct = (below + upto).double() / (2 * ref.numel())
    return torch.where(torch.isnan(s), s, pct).float()


@dataclass(frozen=True)
class GaussianMixture2:
    """A two-component 1-D Gaussian mixture; component 1 has the higher mean."""

    weights: tuple[float, float]
    means: tuple[float, float]
    variances: tuple[float, float]

    def posterior_high(self, x: Tensor) -> Tensor:
        """(B,) values -> (B,) float32 posterior of the higher-mean component (NaN stays NaN)."""
        xd = x.detach().double()
        logp = torch.stack([_log_weighted_normal(xd, self, k) for k in (0, 1)])
        return torch.softmax(logp, dim=0)[1].float()


def _log_weighted_normal(x: Tensor, g: GaussianMixture2, k: int) -> Tensor:
    var = g.variances[k]
    return math.log(g.weights[k]) - 0.5 * (math.log(2 * math.pi * var) + (x - g.means[k]) ** 2 / var)


def fit_gaussian_mixture2(x: Tensor, iterations: int = 10, tol: float = 1e-2, reg: float = 5e-4) -> GaussianMixture2:
    """Fit a two-component 1-D Gaussian mixture to ``x`` (N,) by EM (NaN entries left out).

    Deterministic start: the two halves below/above the median (weights ½, their means, the overall
    variance); ``reg`` is added to each variance (as sklearn's ``reg_covar``) so a component collapsing
    on tied scores stays finite. Stops when the mean log-likelihood improves by less than ``tol``.

    The defaults are DivideMix's (sklearn ``GaussianMixture(max_iter=10, tol=1e-2, reg_covar=5e-4)``):
    EM run to convergence finds the likeliest mixture, and on real teacher scores that can be a
    component of two outliers (CamVid, 50 % dilate/erode: weight 0.006, mean 0.76), whose posterior is
    ~0 for every other image; the early stop keeps the two halves of the median split apart instead.
    Pass ``iterations=200, tol=1e-10`` for the converged fit.
    """
    v = x.detach().double().flatten()
    v = v[~torch.isnan(v)].sort().values
    if v.numel() < 2:
        raise ValueError(f"need at least 2 finite scores to fit a mixture, got {v.numel()}")
    half = v.numel() // 2
    var0 = float(v.var(unbiased=False)) + reg
    g = GaussianMixture2((0.5, 0.5), (float(v[:half].mean()), float(v[half:].mean())), (var0, var0))
    last = -math.inf
    for _ in range(iterations):
        logp = torch.stack([_log_weighted_normal(v, g, k) for k in (0, 1)])  # (2, N)
        total = torch.logsumexp(logp, dim=0)
        r = torch.exp(logp - total)  # responsibilities (2, N)
        n = r.sum(1).clamp(min=1e-12)
        means = (r * v).sum(1) / n
        variances = (r * (v - means[:, None]) ** 2).sum(1) / n + reg
        g = GaussianMixture2(tuple((n / v.numel()).tolist()), tuple(means.tolist()), tuple(variances.tolist()))  # type: ignore[arg-type]
        ll = float(total.mean())
        if ll - last < tol:
            break
        last = ll
    if g.means[0] > g.means[1]:
        g = GaussianMixture2(g.weights[::-1], g.means[::-1], g.variances[::-1])
    return g


def normalise_batch_mean(w: Tensor) -> Tensor:
    """(B,) weights (NaN counts as 0) scaled to mean 1; all-zero weights stay 0. No gradient."""
    w = w.detach().float().nan_to_num(0.0)
    mean = w.mean() if w.numel() else w.new_zeros(())
    return torch.where(mean > 0, w / torch.where(mean > 0, mean, torch.ones_like(mean)), w)


class ScoreTransform:
    """Maps quality scores to weights, fitted once on the reference scores of the training set.

    Args:
        kind: ``"raw"`` (identity), ``"rank"`` (:func:`rank_among`) or ``"gmm"`` (posterior of the
            higher component of :func:`fit_gaussian_mixture2`).
        reference: (N,) cached teacher scores of the whole training set.
    """

    def __init__(self, kind: Transform, reference: Tensor) -> None:
        if kind not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {kind!r}")
        self.kind: Transform = kind
        self.reference = reference.detach().float().cpu()
        self.mixture = fit_gaussian_mixture2(self.reference) if kind == "gmm" else None

    def __call__(self, scores: Tensor) -> Tensor:
        """(B,) scores -> (B,) transformed scores on the same device (NaN stays NaN)."""
        if self.kind == "raw":
            return scores
        if self.kind == "rank":
            return rank_among(scores, self.reference)
        assert self.mixture is not None
        return self.mixture.posterior_high(scores).to(scores.device)
