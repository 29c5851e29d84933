"""`nasfpn`: NAS-FPN neck (Ghiasi et al., CVPR 2019) over the EfficientNet encoder, with a
segmentation head; a Table 1 baseline on the 3 stacked frames.

The neck is the paper's published 7-cell architecture over P3-P7 (strides 8-128). Each merging
cell resizes its two inputs to the output level (nearest upsampling or max pooling), merges them
with `sum` or `gp` (global pooling: the second input's global average, through a sigmoid, gates
the first, then they are added), then applies ReLU -> 3x3 conv -> BN. The block is repeated
`fpn_repeats` times. P6 and P7 come from stride-2 max pooling of P5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FrameModel
from .blocks import ConvBNReLU
from .config import ModelConfig
from .efficient import efficientnet_parts


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest upsampling or max pooling to `size` (sizes need not divide: P6/P7 round up)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_max_pool2d(x, size)
    return F.interpolate(x, size=size, mode="nearest")


class MergeCell(nn.Module):
    """out = BN(conv3x3(ReLU(op(resize(a), resize(b))))), op in {"sum", "gp"}."""

    def __init__(self, channels: int, op: str):
        super().__init__()
        if op not in ("sum", "gp"):
            raise ValueError(f"merging op must be 'sum' or 'gp'; got {op!r}")
        self.op = op
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(channels))

    def forward(self, a: torch.Tensor, b: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        a, b = resize_to(a, size), resize_to(b, size)
        if self.op == "sum":
            merged = a + b
        else:
            merged = b + torch.sigmoid(F.adaptive_avg_pool2d(b, 1)) * a
        return self.out(merged)


class NASFPNBlock(nn.Module):
    """One NAS-FPN block: [P3..P7] -> [P3..P7], the published arrangement of merging cells."""

    # (name, op): inputs and output level are wired in forward(), following the paper's figure.
    CELLS = (("p4_1", "gp"), ("p4_2", "sum"), ("p3", "sum"), ("p4", "sum"), ("p5_tmp", "gp"),
             ("p5", "sum"), ("p7_tmp", "gp"), ("p7", "sum"), ("p6", "gp"))

    def __init__(self, channels: int):
        super().__init__()
        self.cells = nn.ModuleDict({name: MergeCell(channels, op) for name, op in self.CELLS})

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5, p6, p7 = feats
        s = [f.shape[-2:] for f in feats]
        c = self.cells
        p4_1 = c["p4_1"](p6, p4, s[1])
        p4_2 = c["p4_2"](p4_1, p4, s[1])
        p3_out = c["p3"](p4_2, p3, s[0])
        p4_out = c["p4"](p3_out, p4_2, s[1])
        p5_out = c["p5"](p5, c["p5_tmp"](p4_out, p3_out, s[2]), s[2])
        p7_out = c["p7"](p7, c["p7_tmp"](p5_out, p4_2, s[4]), s[4])
        p6_out = c["p6"](p7_out, p5_out, s[3])
        return [p3_out, p4_out, p5_out, p6_out, p7_out]


class NASFPNNet(FrameModel):
    """forward(x: (B, 3, H, W) in [0, 1]) -> logits (B, 1, H, W) (padding: `FrameModel`).

    Head: all five levels upsampled (bilinear) to P3 and summed, conv-BN-ReLU, 1x1 conv to one
    logit, bilinear upsampling x8 to the input resolution.
    """

    def __init__(self, config: ModelConfig):
        if config.encoder_depth != 5:
            raise ValueError(f"nasfpn needs encoder_depth=5 (features at strides 8, 16, 32); "
                             f"got {config.encoder_depth}")
        super().__init__(config, 32)
        ch = config.fpn_channels
        self.stem, _, self.body = efficientnet_parts(config.encoder, 3, 5)
        self.laterals = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, ch, 1, bias=False), nn.BatchNorm2d(ch)) for c in self.body.channels[2:]
        )
        self.blocks = nn.ModuleList(NASFPNBlock(ch) for _ in range(config.fpn_repeats))
        self.fuse = ConvBNReLU(ch, ch)
        self.logits = nn.Conv2d(ch, 1, 1)

    def forward_padded(self, xp: torch.Tensor) -> torch.Tensor:
        """xp: (B, 3, Hp, Wp), Hp, Wp multiples of 32 -> logits (B, 1, Hp, Wp)."""
        c3, c4, c5 = self.body(self.stem(xp))[2:]
        p = [lat(c) for lat, c in zip(self.laterals, (c3, c4, c5))]
        p.append(F.max_pool2d(p[-1], 2, ceil_mode=True))
        p.append(F.max_pool2d(p[-1], 2, ceil_mode=True))
        for block in self.blocks:
            p = block(p)
        size = p[0].shape[-2:]
        merged = sum(F.interpolate(q, size=size, mode="bilinear", align_corners=False) for q in p)
        return F.interpolate(self.logits(self.fuse(merged)), size=xp.shape[-2:], mode="bilinear",
                             align_corners=False)
