"""Light U-Net decoder: from the deepest features back to full resolution, one conv per stage."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvBNReLU
from .config import ModelConfig


# Scale of the motion skip's differences: a faint speck (0.05-0.2 gray levels) then reaches the range
# of the frames themselves (0-1) at the stage's input, so its zero-initialised weights need not grow
# large before the evidence counts.
MOTION_GAIN = 4.0


class MotionEvidence(nn.Module):
    """forward(frames (B, 3, Hp, Wp), the padded triplet) -> (B, 2, Hp, Wp): its
    `correlnet.sdi.compensated_channels` (the motion skip's input; no weights). A module of its own so
    that an exported network can take the differences as an input instead (`correlnet.model_export`)."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        from correlnet.sdi import compensated_channels  # here: correlnet.sdi imports correlnet.models

        return compensated_channels(frames)


class UNetDecoder(nn.Module):
    """U-Net decoder ending in one logit channel at the input resolution.

    encoder_channels: channels of the encoder features at strides 2, 4, ..., 2^depth (high-res
        first); the last one is the bottleneck, the others are skips.
    decoder_channels: width of each decoder stage, deepest first; stage i upsamples x2, concats
        the skip at that stride and applies one 3x3 conv-BN-ReLU. One conv per stage rather
        than U-Net's two keeps the full-resolution stages cheap at 1080p.
    input_channels: channels of an optional full-resolution skip (the input frames) concatenated
        before the last stage; 0 for none (the last stage then only sees upsampled features).
    refine: number of `ResidualRefine` blocks after the last stage (`ModelConfig.refine_convs`).
    motion_skip: the full-resolution skip (the input frames, `input_channels` == 3) also gets
        MOTION_GAIN times their two motion-compensated differences (`correlnet.sdi.compensated_channels`,
        `ModelConfig.motion_skip`), appended after the frames, so the last stage's conv has
        input_channels + 2 skip channels and a checkpoint without them widens into it
        (`correlnet.checkpoint.init_from_checkpoint`: zero weights on the new channels).
    """

    def __init__(self, encoder_channels: list[int], decoder_channels: tuple[int, ...], input_channels: int = 0,
                 refine: int = 0, motion_skip: bool = False):
        super().__init__()
        if motion_skip and input_channels != 3:
            raise ValueError(f"motion_skip needs the three input frames as the skip; got {input_channels} channels")
        if len(encoder_channels) != len(decoder_channels):
            raise ValueError(
                f"one decoder width per encoder stage: {len(encoder_channels)} stages, got {decoder_channels}"
            )
        # Deepest skip first; at stride 1 the optional input skip.
        self.input_channels = input_channels
        self.motion = MotionEvidence() if motion_skip else None  # None: no motion skip
        skips = list(encoder_channels[:-1])[::-1] + [input_channels + (2 if motion_skip else 0)]
        in_ch = encoder_channels[-1]
        stages = []
        for skip_ch, out_ch in zip(skips, decoder_channels):
            stages.append(ConvBNReLU(in_ch + skip_ch, out_ch))
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)
        # Empty without refinement (no state-dict entries): older checkpoints load as they were.
        self.refine = nn.ModuleList(ResidualRefine(in_ch) for _ in range(refine))
        self.logits = nn.Conv2d(in_ch, 1, kernel_size=1)

    @classmethod
    def for_config(cls, encoder_channels: list[int], config: ModelConfig) -> "UNetDecoder":
        """The decoder a `ModelConfig` describes (widths, input skip, refine blocks) on these encoder channels."""
        return cls(encoder_channels, config.decoder_channels, 3 if config.input_skip else 0, config.refine_convs,
                   config.motion_skip)

    def forward(self, features: list[torch.Tensor], inputs: torch.Tensor | None = None,
                motion: torch.Tensor | None = None) -> torch.Tensor:
        """features: [(B, C_k, Hp/2^k, Wp/2^k) for k = 1..depth] -> logits (B, 1, Hp, Wp).

        inputs: (B, input_channels, Hp, Wp), required when input_channels > 0, else None.
        motion: with motion_skip, the inputs' `correlnet.sdi.compensated_channels` (B, 2, Hp, Wp) when
            the caller has them already (Correl-Net's fusion uses them too); None computes them here.
        """
        if (inputs is None) != (self.input_channels == 0):
            raise ValueError(
                f"this decoder takes a full-resolution skip of {self.input_channels} channels; got "
                + ("none" if inputs is None else f"a tensor of shape {tuple(inputs.shape)}"))
        x = features[-1]
        skips = list(features[:-1][::-1])
        if inputs is not None:
            if inputs.shape[1] != self.input_channels or inputs.shape[-2:] != tuple(2 * n for n in features[0].shape[-2:]):
                raise ValueError(f"inputs must be (B, {self.input_channels}, {2 * features[0].shape[-2]}, "
                                 f"{2 * features[0].shape[-1]}); got {tuple(inputs.shape)}")
            if self.motion is not None:
                motion = self.motion(inputs) if motion is None else motion
                inputs = torch.cat([inputs, MOTION_GAIN * motion.to(inputs.dtype)], 1)
            skips.append(inputs.to(x.dtype))
        for i, stage in enumerate(self.stages):
            if i < len(skips):
                x = F.interpolate(x, size=skips[i].shape[-2:], mode="nearest")
                x = torch.cat([x, skips[i]], 1)
            else:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = stage(x)
        for block in self.refine:
            x = block(x)
        return self.logits(x)


class ResidualRefine(nn.Module):
    """relu(x + BN(conv3x3(x))) at constant width; forward((B, C, H, W)) -> (B, C, H, W).

    BN's scale starts at zero, so a new block is exactly the identity on the non-negative
    (post-ReLU) features it follows, in training and in eval mode: adding blocks to a trained
    network and warm-starting it (`correlnet.checkpoint.init_from_checkpoint`) changes nothing
    until training moves them. `body` is a plain Sequential so inference folds its BN.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        nn.init.zeros_(self.body[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))
