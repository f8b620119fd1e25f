"""nlkd: semantic segmentation on coarse and noisy annotations (NLKD), and which annotations are bad.

The public API in one screen:

* metrics: :func:`boundary_f1`, :func:`per_image_iou`, :func:`bfmiou`, :class:`SegmentationMetrics`
* weighting: :func:`per_image_cross_entropy`, :func:`quality_score`, :class:`LambdaSchedule`,
  :func:`distill_weights`, :func:`weighted_loss`, :class:`NLKDWeighter`
"""

from nlkd.metrics import (
    SegmentationMetrics,
    bfmiou,
    boundary_f1,
    per_image_iou,
    tolerance_from_diagonal,
)
from nlkd.weighting import (
    LambdaSchedule,
    NLKDWeighter,
    distill_weights,
    per_image_cross_entropy,
    quality_score,
    weighted_loss,
)

__version__ = "0.1.0"

__all__ = [
    "LambdaSchedule",
    "NLKDWeighter",
    "SegmentationMetrics",
    "__version__",
    "bfmiou",
    "boundary_f1",
    "distill_weights",
    "per_image_cross_entropy",
    "per_image_iou",
    "quality_score",
    "tolerance_from_diagonal",
    "weighted_loss",
]
