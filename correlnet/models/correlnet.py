"""`correlnet`: the paper's Fig. 2 network with a plain U-Net style (conv-BN-ReLU) encoder."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvBNReLU
from .branch import CorrelNet, triplet_net
from .config import ModelConfig


class PlainStages(nn.Module):
    """The encoder after fusion: a conv at stride 2, then (depth - 1) stride-2 stages doubling the
    width up to 8x `base` (U-Net's doubling, capped to keep the deep stages light).

    forward(fused (B, base, h, w)) -> [features at strides 2, 4, ..., 2^depth].
    """

    def __init__(self, base: int, depth: int):
        super().__init__()
        self.widths = [min(base * 2 ** i, base * 8) for i in range(depth)]
        self.first = ConvBNReLU(base, base)
        self.downs = nn.ModuleList(
            nn.Sequential(ConvBNReLU(cin, cout, stride=2), ConvBNReLU(cout, cout))
            for cin, cout in zip(self.widths[:-1], self.widths[1:])
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.first(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return feats


def build_plain_correlnet(config: ModelConfig) -> CorrelNet:
    """Branch = full-resolution conv then a stride-2 conv (the correlation runs at stride 2, as
    after the EfficientNet stem, so a displacement of 10 covers 20 input pixels)."""
    if config.encoder != "plain":
        raise ValueError(f"arch 'correlnet' uses the plain encoder; got encoder={config.encoder!r}: "
                         "use encoder='plain' or arch='efficient-correlnet'")
    c = config.base_channels
    stem = nn.Sequential(ConvBNReLU(1, max(c // 2, 1)), ConvBNReLU(max(c // 2, 1), c, stride=2))
    body = PlainStages(c, config.encoder_depth)
    return triplet_net(config, stem, c, body, body.widths, act=nn.ReLU)
