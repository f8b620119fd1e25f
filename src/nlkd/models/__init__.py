"""Segmentation models behind one factory: ``create_model(name, num_classes, **options)``.

Registered names (see :func:`list_models`): ``unet`` and ``deeplabv3plus`` (students, smp),
``ocrnet`` (HRNet + object-contextual representations) and ``pointrend`` (semantic FPN + point head),
the teachers. Every model maps ``(B, 3, H, W)`` images to ``(B, C, H, W)`` logits at the input size in
train and eval mode. Training-time extras go through :func:`auxiliary_loss`, which returns a per-image
loss ``(B,)`` (zeros for models without extras) to add to the per-image CE before weighting::

    model = create_model("pointrend", num_classes=12)
    logits = model(images)                                     # (B, C, H, W)
    loss = per_image_ce(logits, target) + auxiliary_loss(model, target, ignore_index=255)  # (B,)

New models are added with the :func:`register_model` decorator.
"""

from __future__ import annotations

from nlkd.models import ocrnet, pointrend, smp_models  # noqa: F401  (importing registers the models)
from nlkd.models.registry import auxiliary_loss, create_model, list_models, register_model, unwrap

__all__ = ["auxiliary_loss", "create_model", "list_models", "register_model", "unwrap"]
