"""Table 1 baselines from segmentation-models-pytorch on the 3 stacked frames: `unet`, `deeplabv3plus`.

Encoders come from timm through smp's "tu-<name>" bridge (efficientnet_b0 by default, the same
backbone family as Correl-Net) or any native smp encoder name; weights are never downloaded.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch

from .base import FrameModel
from .config import ModelConfig


def smp_encoder_name(name: str) -> str:
    """A native smp encoder name or "tu-..." stays; any other name is taken as a timm model."""
    if name.startswith("tu-") or name in smp.encoders.get_encoder_names():
        return name
    return f"tu-{name}"


class SmpNet(FrameModel):
    """forward(x: (B, 3, H, W) in [0, 1]) -> logits (B, 1, H, W) (padding: `FrameModel`).

    deeplabv3plus keeps smp's own decoder width (256) and output stride 16; its ASPP pooling
    branch has a BatchNorm over a 1x1 map, so training needs a batch of at least 2.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config, 2 ** config.encoder_depth)
        common = dict(encoder_name=smp_encoder_name(config.encoder), encoder_weights=None, in_channels=3,
                      classes=1, encoder_depth=config.encoder_depth)
        if config.arch == "unet":
            self.net = smp.Unet(decoder_channels=config.decoder_channels, **common)
        elif config.arch == "deeplabv3plus":
            self.net = smp.DeepLabV3Plus(**common)
        else:
            raise ValueError(f"SmpNet builds 'unet' or 'deeplabv3plus', not {config.arch!r}")

    def forward_padded(self, xp: torch.Tensor) -> torch.Tensor:
        """xp: (B, 3, Hp, Wp), Hp, Wp multiples of `size_multiple` -> logits (B, 1, Hp, Wp)."""
        return self.net(xp)
