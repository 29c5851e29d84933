"""EfficientNet-based networks: `efficient-correlnet`, `efficient-trinet` (Table 2 ablation without
correlation) and `efficient-unet` (Table 2 first row: one branch on the stacked frames).

The timm EfficientNet is split at its stem (conv_stem + bn1, stride 2): Sec. 3.1 places the
correlation right after the stem, before the MBConv blocks, which then run on the fused
features. The blocks are grouped into stages ending at each stride (timm's feature_info), and
the stage outputs feed the U-Net decoder.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from .base import FrameModel
from .branch import TriNet, triplet_net
from .config import ModelConfig
from .decoder import UNetDecoder


class EfficientStages(nn.Module):
    """EfficientNet blocks grouped by output stride.

    forward(x (B, stem_ch, h, w)) -> [features at strides 2, 4, ..., 2^depth] (first = h, w).
    """

    def __init__(self, blocks: nn.Sequential, feature_info: list[dict], depth: int):
        super().__init__()
        ends = [int(f["module"].split(".")[1]) for f in feature_info[:depth]]
        starts = [0] + [e + 1 for e in ends[:-1]]
        self.stages = nn.ModuleList(nn.Sequential(*blocks[s : e + 1]) for s, e in zip(starts, ends))
        self.channels = [int(f["num_chs"]) for f in feature_info[:depth]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def efficientnet_parts(name: str, in_chans: int, depth: int) -> tuple[nn.Module, int, EfficientStages]:
    """Build timm EfficientNet `name` (random init, never downloaded) and return
    (stem: conv_stem + bn1, stem width, stages up to stride 2^depth); the head is discarded."""
    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r}: use an EfficientNet such as efficientnet_b0 ... b7, "
                         "tf_efficientnet_b0 or test_efficientnet")
    net = timm.create_model(name, pretrained=False, in_chans=in_chans, num_classes=0)
    if not all(hasattr(net, a) for a in ("conv_stem", "bn1", "blocks", "feature_info")):
        raise ValueError(f"{name!r} is not an EfficientNet-style timm model (needs conv_stem, bn1, blocks)")
    info = list(net.feature_info)
    reductions = [int(f["reduction"]) for f in info[:depth]]
    in_blocks = all(f["module"].startswith("blocks.") for f in info[:depth])
    if reductions != [2**k for k in range(1, depth + 1)] or not in_blocks:
        raise ValueError(f"{name!r} does not have stages ending at strides 2..{2**depth}: got {reductions}")
    stem = nn.Sequential(net.conv_stem, net.bn1)
    return stem, int(net.conv_stem.out_channels), EfficientStages(net.blocks, info, depth)


def build_efficient_triplet(config: ModelConfig) -> TriNet:
    """`efficient-correlnet` or `efficient-trinet` (chosen by config.arch)."""
    stem, stem_ch, stages = efficientnet_parts(config.encoder, 1, config.encoder_depth)
    return triplet_net(config, stem, stem_ch, stages, stages.channels, act=nn.SiLU)


class EfficientUNet(FrameModel):
    """`efficient-unet`: the EfficientNet encoder on the 3 stacked frames, same decoder.

    forward(x: (B, 3, H, W) in [0, 1]) -> logits (B, 1, H, W) (padding: `FrameModel`).
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config, 2 ** config.encoder_depth)
        self.stem, _, self.body = efficientnet_parts(config.encoder, 3, config.encoder_depth)
        self.decoder = UNetDecoder.for_config(self.body.channels, config)

    def forward_padded(self, xp: torch.Tensor) -> torch.Tensor:
        """xp: (B, 3, Hp, Wp), Hp, Wp multiples of `size_multiple` -> logits (B, 1, Hp, Wp)."""
        return self.decoder(self.body(self.stem(xp)), xp if self.config.input_skip else None)
