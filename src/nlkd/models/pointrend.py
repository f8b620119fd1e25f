"""PointRend (Kirillov et al., 2020) for semantic segmentation (teacher).

A semantic-FPN coarse head over an smp encoder predicts logits at stride 4; a point head refines them
at selected points from point-wise features: fine-grained features (the FPN's stride-4 map ``P2``,
sampled bilinearly with ``grid_sample``) concatenated with the coarse logits at the same points, fed
to an MLP of 1×1 convolutions.

* Training: ``N`` points per image, chosen on the coarse prediction by uncertainty with oversampling
  factor ``k`` (3) and importance ratio ``β`` (0.75): ``kN`` uniform candidates, the ``βN`` most
  uncertain kept, ``(1-β)N`` uniform points added. ``forward`` returns the coarse logits upsampled to
  the input size; the point loss (per-image mean CE at the points, target sampled nearest) is the
  auxiliary loss.
* Inference: adaptive subdivision — upsample the logits ×2 and re-predict the ``N`` most uncertain
  points, repeated up to the input size.

Uncertainty of a point is minus the gap between its two largest logits.
"""

from __future__ import annotations

from typing import Any

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlkd.errors import ConfigError
from nlkd.models.registry import (
    AuxiliaryLossModule,
    pad_to_multiple,
    register_model,
)
from nlkd.models.smp_models import check_encoder
from nlkd.weighting import per_image_cross_entropy

__all__ = [
    "PointHead",
    "PointRend",
    "SemanticFPN",
    "build_pointrend",
    "point_sample",
    "sample_uncertain_points",
    "to_grid",
    "uncertainty",
]


def point_sample(features: Tensor, grid: Tensor) -> Tensor:
    """Bilinear features ``(B, C, h, w)`` at points ``grid (B, N, 2)`` (x, y in [-1, 1]) -> ``(B, C, N)``."""
    return F.grid_sample(features, grid.unsqueeze(2), mode="bilinear", align_corners=False).squeeze(3)


def uncertainty(logits: Tensor) -> Tensor:
    """Minus the gap between the two largest logits: ``(B, C, *S) -> (B, *S)``; higher = less sure."""
    top2 = logits.topk(2, dim=1).values
    return top2[:, 1] - top2[:, 0]


def sample_uncertain_points(
    coarse: Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_ratio: float,
    scale: tuple[float, float],
    generator: torch.Generator | None = None,
) -> Tensor:
    """Training points ``(B, N, 2)``, (x, y) in [0, 1] image coordinates, biased to uncertain ones.

    Args:
        coarse: ``(B, C, h, w)`` coarse logits over the padded frame.
        num_points: ``N``.
        oversample_ratio: ``k``; ``kN`` uniform candidates are scored.
        importance_ratio: ``β``; the ``βN`` most uncertain candidates are kept, the rest is uniform.
        scale: (x, y) fraction of the padded frame the image covers (points never land in padding).
        generator: source of randomness (default: torch's global generator).
    """
    batch = coarse.shape[0]
    device = generator.device if generator is not None else coarse.device
    num_candidates = max(int(num_points * oversample_ratio), num_points)
    num_important = int(num_points * importance_ratio)
    candidates = torch.rand(batch, num_candidates, 2, generator=generator, device=device).to(coarse.device)
    scores = uncertainty(point_sample(coarse, to_grid(candidates, scale)))  # (B, kN)
    index = scores.topk(num_important, dim=1).indices
    important = candidates.gather(1, index.unsqueeze(2).expand(-1, -1, 2))
    uniform = torch.rand(batch, num_points - num_important, 2, generator=generator, device=device)
    return torch.cat([important, uniform.to(coarse.device)], dim=1)


def to_grid(points: Tensor, scale: tuple[float, float]) -> Tensor:
    """Image coordinates ``(B, N, 2)`` in [0, 1] -> ``grid_sample`` coordinates of the padded frame."""
    return points * points.new_tensor(scale) * 2 - 1


class SemanticFPN(nn.Module):
    """Semantic FPN (Kirillov et al., 2019) over encoder features at strides 4, 8, 16, 32.

    Args:
        in_channels: channels of the four encoder maps.
        num_classes: ``C``.
        pyramid_channels: FPN width (also the width of the fine-grained map ``P2``).
        seg_channels: width of the per-level upsampling branches.
    """

    def __init__(self, in_channels: list[int], num_classes: int, pyramid_channels: int, seg_channels: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, pyramid_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(pyramid_channels, pyramid_channels, 3, padding=1) for _ in in_channels)
        self.branches = nn.ModuleList()
        for level in range(len(in_channels)):
            blocks: list[nn.Module] = []
            for i in range(max(level, 1)):
                blocks += [
                    nn.Conv2d(pyramid_channels if i == 0 else seg_channels, seg_channels, 3, padding=1, bias=False),
                    nn.GroupNorm(min(32, seg_channels), seg_channels),
                    nn.ReLU(inplace=True),
                ]
                if level > 0:
                    blocks.append(nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False))
            self.branches.append(nn.Sequential(*blocks))
        self.classifier = nn.Conv2d(seg_channels, num_classes, 1)

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Maps at strides 4..32 -> (coarse logits ``(B, C, h, w)``, ``P2 (B, P, h, w)``), stride 4."""
        laterals = [conv(f) for conv, f in zip(self.lateral, features)]
        for i in range(len(laterals) - 2, -1, -1):  # top-down pathway
            laterals[i] = laterals[i] + F.interpolate(laterals[i + 1], size=laterals[i].shape[-2:], mode="nearest")
        pyramid = [conv(p) for conv, p in zip(self.output, laterals)]
        merged = sum(branch(p) for branch, p in zip(self.branches, pyramid))
        return self.classifier(merged), pyramid[0]


class PointHead(nn.Module):
    """MLP (1×1 convolutions) over point features; the coarse logits are re-appended to every layer.

    Args:
        fine_channels: channels ``F`` of the fine-grained features.
        num_classes: ``C``.
        hidden_channels: MLP width (256 in PointRend).
        num_layers: hidden layers (3 in PointRend).
    """

    def __init__(self, fine_channels: int, num_classes: int, hidden_channels: int = 256, num_layers: int = 3):
        super().__init__()
        widths = [fine_channels] + [hidden_channels] * num_layers
        self.layers = nn.ModuleList(nn.Conv1d(w + num_classes, hidden_channels, 1) for w in widths[:-1])
        self.predictor = nn.Conv1d(widths[-1] + num_classes, num_classes, 1)

    def forward(self, fine: Tensor, coarse: Tensor) -> Tensor:
        """``fine (B, F, N)``, ``coarse (B, C, N)`` -> point logits ``(B, C, N)``."""
        x = fine
        for layer in self.layers:
            x = F.relu(layer(torch.cat([x, coarse], dim=1)))
        return self.predictor(torch.cat([x, coarse], dim=1))


class PointRend(AuxiliaryLossModule):
    """Encoder + :class:`SemanticFPN` coarse head + :class:`PointHead`; see the module docstring.

    Args:
        num_classes: ``C``.
        encoder: an smp encoder returning 6 maps (strides 1, 2, 4, 8, 16, 32).
        train_points: ``N`` points per image in training.
        oversample_ratio: ``k``.
        importance_ratio: ``β``.
        subdivision_points: points re-predicted per subdivision step at inference.
    """

    def __init__(
        self,
        num_classes: int,
        encoder: nn.Module,
        *,
        train_points: int,
        oversample_ratio: float,
        importance_ratio: float,
        subdivision_points: int,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.coarse_head = SemanticFPN(list(encoder.out_channels[2:]), num_classes, 256, 128)
        self.point_head = PointHead(256, num_classes)
        self.train_points = train_points
        self.oversample_ratio = oversample_ratio
        self.importance_ratio = importance_ratio
        self.subdivision_points = subdivision_points
        self.pad_multiple = 32

    def forward(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Images ``(B, 3, H, W)`` -> logits ``(B, C, H, W)``.

        In training: the coarse logits upsampled bilinearly (point logits are stored for the
        auxiliary loss); ``generator`` drives the point sampling. In eval: adaptive subdivision.
        """
        padded, (height, width) = pad_to_multiple(x, self.pad_multiple)
        coarse, fine = self.coarse_head(self.encoder(padded)[2:])
        padded_h, padded_w = padded.shape[-2:]
        if not self.training:
            self._store_extras(None, (height, width))
            return self._subdivide(coarse, fine, (padded_h, padded_w), (height, width))[..., :height, :width]
        scale = (width / padded_w, height / padded_h)
        with torch.no_grad():
            points = sample_uncertain_points(
                coarse, self.train_points, self.oversample_ratio, self.importance_ratio, scale, generator
            )
        grid = to_grid(points, scale)
        point_logits = self.point_head(point_sample(fine, grid), point_sample(coarse, grid))
        self._store_extras({"batch": x.shape[0], "points": points, "point_logits": point_logits}, (height, width))
        upsampled = F.interpolate(coarse, size=(padded_h, padded_w), mode="bilinear", align_corners=False)
        return upsampled[..., :height, :width]

    def _subdivide(self, coarse: Tensor, fine: Tensor, padded_size: tuple[int, int], size: tuple[int, int]) -> Tensor:
        """Upsample ×2 and re-predict the most uncertain points until ``padded_size`` is reached."""
        logits = coarse
        while logits.shape[-2] < padded_size[0]:
            logits = F.interpolate(logits, scale_factor=2.0, mode="bilinear", align_corners=False)
            batch, num_classes, h, w = logits.shape
            scores = uncertainty(logits)  # (B, h, w)
            # Pixels whose centre lies in the padding are never worth refining.
            rows = (torch.arange(h, device=logits.device) + 0.5) * (padded_size[0] / h) < size[0]
            cols = (torch.arange(w, device=logits.device) + 0.5) * (padded_size[1] / w) < size[1]
            scores = scores.masked_fill(~(rows[:, None] & cols[None, :]), float("-inf"))
            index = scores.flatten(1).topk(min(self.subdivision_points, h * w), dim=1).indices  # (B, n)
            xs = (index % w + 0.5) / w * 2 - 1
            ys = torch.div(index, w, rounding_mode="floor").add(0.5) / h * 2 - 1
            grid = torch.stack([xs, ys], dim=2).to(fine.dtype)
            point_logits = self.point_head(point_sample(fine, grid), point_sample(coarse, grid))
            flat = logits.reshape(batch, num_classes, h * w)
            flat = flat.scatter(2, index.unsqueeze(1).expand(-1, num_classes, -1), point_logits)
            logits = flat.view(batch, num_classes, h, w)
        return logits

    def _auxiliary_loss(self, extras: dict[str, Any], target: Tensor, ignore_index: int | None) -> Tensor:
        """Per-image mean CE of the point logits vs ``target`` sampled (nearest) at the points."""
        height, width = extras["input_size"]
        points = extras["points"]
        xs = (points[..., 0] * width).long().clamp(max=width - 1)
        ys = (points[..., 1] * height).long().clamp(max=height - 1)
        labels = target.flatten(1).gather(1, ys * width + xs)  # (B, N)
        return per_image_cross_entropy(extras["point_logits"], labels, ignore_index)


@register_model("pointrend")
def build_pointrend(
    num_classes: int,
    *,
    encoder: str = "resnet18",
    encoder_weights: str | None = None,
    train_points: int = 2048,
    oversample_ratio: float = 3.0,
    importance_ratio: float = 0.75,
    subdivision_points: int = 8192,
) -> nn.Module:
    """PointRend with a semantic-FPN coarse head over an smp encoder.

    Args:
        num_classes: number of output classes ``C``.
        encoder: smp encoder name (``resnet18``, ``resnet50``, ...).
        encoder_weights: ``None`` (random init, offline) or a pretrained tag such as ``"imagenet"``.
        train_points: points per image in training (2048 as in PointRend's semantic setting).
        oversample_ratio: ``k`` >= 1 (3).
        importance_ratio: ``β`` in [0, 1] (0.75).
        subdivision_points: points re-predicted per subdivision step at inference (8192).

    Returns:
        A :class:`PointRend` mapping ``(B, 3, H, W) -> (B, C, H, W)``; auxiliary loss = point loss.
    """
    check_encoder("pointrend", encoder)
    for key, value in (("train_points", train_points), ("subdivision_points", subdivision_points)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"model 'pointrend': {key} must be a positive int, got {value!r}")
    if not oversample_ratio >= 1:
        raise ConfigError(f"model 'pointrend': oversample_ratio must be >= 1, got {oversample_ratio!r}")
    if not 0 <= importance_ratio <= 1:
        raise ConfigError(f"model 'pointrend': importance_ratio must be in [0, 1], got {importance_ratio!r}")
    net = smp.encoders.get_encoder(encoder, in_channels=3, depth=5, weights=encoder_weights)
    return PointRend(
        num_classes,
        net,
        train_points=train_points,
        oversample_ratio=oversample_ratio,
        importance_ratio=importance_ratio,
        subdivision_points=subdivision_points,
    )
