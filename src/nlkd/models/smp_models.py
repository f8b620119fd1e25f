"""Student models from segmentation_models_pytorch: ``unet`` and ``deeplabv3plus``.

smp models need the input height and width to divide by the encoder's output stride (32 for most
encoders); :class:`SmpSegmenter` zero-pads the input at the bottom and right and crops the logits
back, so any input size works. The encoder is any name smp accepts (``resnet18``, ``resnet34``,
``resnet50``, ..., or ``tu-<timm name>``); weights are random unless ``encoder_weights`` is given.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
from torch import Tensor, nn

from nlkd.errors import ConfigError, did_you_mean
from nlkd.models.registry import pad_to_multiple, register_model

__all__ = ["SmpSegmenter", "build_deeplabv3plus", "build_unet", "check_encoder"]


def check_encoder(model: str, encoder: str) -> None:
    """Raise ``ConfigError`` unless ``encoder`` is an smp encoder name (or ``tu-<timm model>``)."""
    if not isinstance(encoder, str):
        raise ConfigError(f"model {model!r}: encoder must be a string, got {encoder!r}")
    if encoder.startswith("tu-"):
        import timm

        if not timm.is_model(encoder[3:]):
            raise ConfigError(
                f"model {model!r}: unknown timm encoder {encoder[3:]!r} in {encoder!r}; "
                "see timm.list_models() for the names"
            )
        return
    names = smp.encoders.get_encoder_names()
    if encoder not in names:
        hint = did_you_mean(encoder, names, n=3)
        raise ConfigError(
            f"model {model!r}: unknown encoder {encoder!r}{hint}; valid: {', '.join(names)} or 'tu-<timm model name>'"
        )


class SmpSegmenter(nn.Module):
    """An smp segmentation model that accepts any input size.

    Args:
        net: an smp ``SegmentationModel`` mapping ``(B, 3, H', W') -> (B, C, H', W')`` for ``H', W'``
            divisible by ``pad_multiple``.
        pad_multiple: the stride the input is padded to.
    """

    def __init__(self, net: nn.Module, pad_multiple: int) -> None:
        super().__init__()
        self.net = net
        self.pad_multiple = pad_multiple

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(B, 3, H, W)`` -> logits ``(B, C, H, W)``."""
        padded, (height, width) = pad_to_multiple(x, self.pad_multiple)
        return self.net(padded)[..., :height, :width]


def _wrap(net: nn.Module) -> SmpSegmenter:
    stride = int(getattr(net.encoder, "output_stride", 32))
    return SmpSegmenter(net, pad_multiple=max(stride, 32))


@register_model("unet")
def build_unet(num_classes: int, *, encoder: str = "resnet18", encoder_weights: str | None = None) -> nn.Module:
    """U-Net (Ronneberger et al., 2015) with an smp encoder.

    Args:
        num_classes: number of output classes ``C``.
        encoder: smp encoder name, e.g. ``"resnet18"``, ``"resnet34"``, ``"resnet50"``.
        encoder_weights: ``None`` (random init, offline) or a pretrained tag such as ``"imagenet"``
            (downloads the weights).

    Returns:
        A module mapping ``(B, 3, H, W) -> (B, C, H, W)`` logits.
    """
    check_encoder("unet", encoder)
    return _wrap(smp.Unet(encoder_name=encoder, encoder_weights=encoder_weights, classes=num_classes))


@register_model("deeplabv3plus")
def build_deeplabv3plus(
    num_classes: int,
    *,
    encoder: str = "resnet18",
    encoder_weights: str | None = None,
    output_stride: int = 16,
) -> nn.Module:
    """DeepLabv3+ (Chen et al., 2018) with an smp encoder.

    Args:
        num_classes: number of output classes ``C``.
        encoder: smp encoder name, e.g. ``"resnet18"``, ``"resnet34"``, ``"resnet50"``.
        encoder_weights: ``None`` (random init, offline) or a pretrained tag such as ``"imagenet"``.
        output_stride: encoder output stride, 8 or 16 (dilated convolutions below it).

    Returns:
        A module mapping ``(B, 3, H, W) -> (B, C, H, W)`` logits.
    """
    check_encoder("deeplabv3plus", encoder)
    if output_stride not in (8, 16):
        raise ConfigError(f"model 'deeplabv3plus': output_stride must be 8 or 16, got {output_stride!r}")
    net = smp.DeepLabV3Plus(
        encoder_name=encoder,
        encoder_weights=encoder_weights,
        encoder_output_stride=output_stride,
        classes=num_classes,
    )
    return _wrap(net)
