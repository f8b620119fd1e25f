"""OCRNet (Yuan et al., 2020): object-contextual representations over an HRNet backbone (teacher).

Pipeline, at stride 4 of the (padded) input, with ``K`` classes:

1. backbone features (timm ``features_only``; for HRNet the four branch outputs) upsampled to the
   highest resolution and concatenated -> ``(B, C_in, h, w)``;
2. soft object regions: an auxiliary head gives coarse class logits ``(B, K, h, w)``;
3. object-region representations: each class's pixel features averaged with the spatial softmax of
   its region logits -> ``(B, K, M)``;
4. pixel-region relation: attention of every pixel (query) over the ``K`` regions (keys/values);
5. augmented representation: the attended context concatenated with the pixel features -> classifier.

The auxiliary head's per-image cross-entropy, weighted 0.4 as in OCRNet, is the model's auxiliary
loss (see :func:`nlkd.models.auxiliary_loss`).
"""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlkd.errors import ConfigError
from nlkd.models.registry import (
    AuxiliaryLossModule,
    pad_to_multiple,
    register_model,
)
from nlkd.weighting import per_image_cross_entropy

__all__ = ["OCRHead", "OCRNet", "build_ocrnet"]

AUX_WEIGHT = 0.4


def _conv_bn_relu(c_in: int, c_out: int, kernel: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _linear_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    """1×1 convolution over a set ``(B, c_in, K) -> (B, c_out, K)``."""
    return nn.Sequential(nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True))


def _upsample_crop(t: Tensor, padded_size: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Bilinear ``(B, K, h, w)`` -> ``(B, K, *padded_size)``, cropped to ``(B, K, *size)``."""
    upsampled = F.interpolate(t, size=padded_size, mode="bilinear", align_corners=False)
    return upsampled[..., : size[0], : size[1]]


class OCRHead(nn.Module):
    """Object-contextual representation head.

    Args:
        in_channels: channels ``C_in`` of the backbone feature map.
        num_classes: ``K``.
        mid_channels: ``M``, width of the pixel representation (512 in OCRNet).
        key_channels: width of the query/key/value space (256 in OCRNet).
        dropout: dropout before the classifier.
    """

    def __init__(
        self, in_channels: int, num_classes: int, mid_channels: int, key_channels: int, dropout: float
    ) -> None:
        super().__init__()
        self.aux_head = nn.Sequential(
            _conv_bn_relu(in_channels, in_channels, 3), nn.Conv2d(in_channels, num_classes, 1)
        )
        self.pixel_rep = _conv_bn_relu(in_channels, mid_channels, 3)
        self.query = nn.Sequential(_conv_bn_relu(mid_channels, key_channels), _conv_bn_relu(key_channels, key_channels))
        self.key = nn.Sequential(
            _linear_bn_relu(mid_channels, key_channels), _linear_bn_relu(key_channels, key_channels)
        )
        self.value = _linear_bn_relu(mid_channels, key_channels)
        self.context_up = _conv_bn_relu(key_channels, mid_channels)
        self.fuse = nn.Sequential(_conv_bn_relu(2 * mid_channels, mid_channels), nn.Dropout2d(dropout))
        self.classifier = nn.Conv2d(mid_channels, num_classes, 1)
        self.scale = key_channels**-0.5

    def forward(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        """Backbone features ``(B, C_in, h, w)`` -> ``(logits, region_logits)``, both ``(B, K, h, w)``."""
        region_logits = self.aux_head(feats)  # soft object regions
        pixels = self.pixel_rep(feats)  # (B, M, h, w)
        batch, _, height, width = pixels.shape
        # Object-region representations: pixel features weighted by each region's spatial softmax.
        weights = torch.softmax(region_logits.flatten(2), dim=2)  # (B, K, hw)
        regions = torch.bmm(weights, pixels.flatten(2).transpose(1, 2))  # (B, K, M)
        regions = regions.transpose(1, 2)  # (B, M, K)
        # Pixel-region relation: each pixel attends over the K regions.
        query = self.query(pixels).flatten(2).transpose(1, 2)  # (B, hw, D)
        key = self.key(regions)  # (B, D, K)
        value = self.value(regions).transpose(1, 2)  # (B, K, D)
        relation = torch.softmax(torch.bmm(query, key) * self.scale, dim=-1)  # (B, hw, K)
        context = torch.bmm(relation, value).transpose(1, 2).reshape(batch, -1, height, width)
        # Augmented representation: object context next to the pixel's own features.
        augmented = self.fuse(torch.cat([self.context_up(context), pixels], dim=1))
        return self.classifier(augmented), region_logits


class OCRNet(AuxiliaryLossModule):
    """Backbone feature pyramid + :class:`OCRHead`, logits at the input size.

    Args:
        num_classes: ``K``.
        backbone: a timm ``features_only`` model; its outputs at stride >= 4 are used.
        mid_channels, key_channels, dropout: see :class:`OCRHead`.
    """

    def __init__(
        self, num_classes: int, backbone: nn.Module, mid_channels: int, key_channels: int, dropout: float
    ) -> None:
        super().__init__()
        self.backbone = backbone
        info = backbone.feature_info
        reductions = info.reduction()
        self.feature_ids = [i for i, r in enumerate(reductions) if r >= 4]
        if not self.feature_ids:
            raise ConfigError("model 'ocrnet': the backbone has no feature map at stride >= 4")
        self.pad_multiple = max(reductions)
        in_channels = sum(info.channels()[i] for i in self.feature_ids)
        self.head = OCRHead(in_channels, num_classes, mid_channels, key_channels, dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(B, 3, H, W)`` -> logits ``(B, K, H, W)``; in training, stores the region logits."""
        padded, (height, width) = pad_to_multiple(x, self.pad_multiple)
        outputs = self.backbone(padded)
        feats = [outputs[i] for i in self.feature_ids]
        size = feats[0].shape[-2:]
        feats = [feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]]
        logits, region_logits = self.head(torch.cat(feats, dim=1))
        extras = {"batch": x.shape[0], "region_logits": region_logits} if self.training else None
        self._store_extras(extras, (height, width))
        return _upsample_crop(logits, padded.shape[-2:], (height, width))

    def _auxiliary_loss(self, extras: dict[str, Any], target: Tensor, ignore_index: int | None) -> Tensor:
        """0.4 × per-image CE of the soft object regions (upsampled to the input size) vs ``target``."""
        height, width = extras["input_size"]
        stride = self.pad_multiple
        padded_size = (height + (-height % stride), width + (-width % stride))
        region_logits = _upsample_crop(extras["region_logits"], padded_size, (height, width))
        return AUX_WEIGHT * per_image_cross_entropy(region_logits, target, ignore_index)


@register_model("ocrnet")
def build_ocrnet(
    num_classes: int,
    *,
    backbone: str = "hrnet_w18_small_v2",
    pretrained: bool = False,
    mid_channels: int = 512,
    key_channels: int = 256,
    dropout: float = 0.05,
) -> nn.Module:
    """OCRNet with a timm backbone (HRNet-W18-small-v2 by default).

    Args:
        num_classes: number of output classes ``K``.
        backbone: timm model name; HRNet variants (``hrnet_w18``, ``hrnet_w32``, ...) use their four
            branch outputs (18+36+72+144 channels for W18), other models their stride >= 4 features.
        pretrained: load timm's ImageNet weights (downloads; default False, offline).
        mid_channels: width of the pixel representation (512 as in OCRNet).
        key_channels: width of the attention space (256 as in OCRNet).
        dropout: dropout before the classifier.

    Returns:
        An :class:`OCRNet` mapping ``(B, 3, H, W) -> (B, K, H, W)`` logits; its auxiliary loss is the
        0.4-weighted soft-object-region CE.
    """
    if not isinstance(backbone, str) or not timm.is_model(backbone):
        raise ConfigError(
            f"model 'ocrnet': unknown timm backbone {backbone!r}; HRNet names: {', '.join(timm.list_models('hrnet*'))}"
        )
    for key, value in (("mid_channels", mid_channels), ("key_channels", key_channels)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"model 'ocrnet': {key} must be a positive int, got {value!r}")
    extra = {"feature_location": ""} if backbone.startswith("hrnet") else {}
    net = timm.create_model(backbone, features_only=True, pretrained=bool(pretrained), **extra)
    return OCRNet(num_classes, net, mid_channels, key_channels, dropout)
