"""nlkd: semantic segmentation on coarse and noisy annotations (NLKD), and which annotations are bad.

The public API in one screen:

* metrics: :func:`boundary_f1`, :func:`per_image_iou`, :func:`bfmiou`, :class:`SegmentationMetrics`
* weighting: :func:`per_image_cross_entropy`, :func:`per_image_loss` (per-pixel weights, soft targets,
  target sets), :func:`quality_score`, :class:`LambdaSchedule`, :func:`distill_weights`,
  :func:`weighted_loss`, :class:`NLKDWeighter`
* weights that separate: :class:`ScoreTransform` (raw / rank / gmm), :func:`rank_among`,
  :func:`fit_gaussian_mixture2`, :func:`normalise_batch_mean`; :func:`weight_auroc`, :func:`weight_ratio`
* pixel level: :func:`relaxed_label_set`, :func:`relaxed_label_loss`, :func:`boundary_distance`,
  :func:`reliability_weight`, :func:`soften_probabilities`, :func:`agreement_map` (:mod:`nlkd.pixelwise`);
  ADELE's :func:`class_overlap_counts`, :func:`is_triggered`, :func:`correct_labels` (:mod:`nlkd.early_learning`)
"""

from nlkd.early_learning import class_overlap_counts, correct_labels, is_triggered
from nlkd.metrics import (
    SegmentationMetrics,
    bfmiou,
    boundary_f1,
    per_image_iou,
    tolerance_from_diagonal,
)
from nlkd.pixelwise import (
    agreement_map,
    boundary_distance,
    boundary_pixels,
    relaxed_label_loss,
    relaxed_label_set,
    reliability_weight,
    soften_probabilities,
)
from nlkd.score_transforms import ScoreTransform, fit_gaussian_mixture2, normalise_batch_mean, rank_among
from nlkd.separation import weight_auroc, weight_ratio
from nlkd.weighting import (
    LambdaSchedule,
    NLKDWeighter,
    distill_weights,
    per_image_cross_entropy,
    per_image_loss,
    quality_score,
    weighted_loss,
)

__version__ = "0.1.0"

__all__ = [
    "LambdaSchedule",
    "NLKDWeighter",
    "ScoreTransform",
    "SegmentationMetrics",
    "__version__",
    "agreement_map",
    "bfmiou",
    "boundary_distance",
    "boundary_f1",
    "boundary_pixels",
    "class_overlap_counts",
    "correct_labels",
    "distill_weights",
    "fit_gaussian_mixture2",
    "is_triggered",
    "normalise_batch_mean",
    "per_image_cross_entropy",
    "per_image_iou",
    "per_image_loss",
    "quality_score",
    "rank_among",
    "relaxed_label_loss",
    "relaxed_label_set",
    "reliability_weight",
    "soften_probabilities",
    "tolerance_from_diagonal",
    "weight_auroc",
    "weight_ratio",
    "weighted_loss",
]
