"""The base every network inherits, and the streaming API's typed protocol.

`FrameModel` (smp's `SegmentationModel` idea): `forward` checks the input once (`check_frames`), pads
it once to `size_multiple` (`InputPadder`, the one padding function), runs the subclass's
`forward_padded` and crops the logits back. No model pads for itself.

`StreamingNet`: the branch API (Sec. 3.1's per-frame stem and per-pair correlation, then the head)
that lets `correlnet.prediction` compute each frame's features and each pair's correlation once over
a film. Correl-Net models (`models.branch.CorrelNet`) and `correlnet.runtime.AcceleratedNet` satisfy
it; Tri-Net (no correlation), the one-branch baselines and `correlnet.sdi.SdiDetector` do not, and
are predicted on each stacked triplet. The check is structural (`is_streaming`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ..correlation import Correlation
from .config import ModelConfig
from .padding import InputPadder, check_frames


class FrameModel(nn.Module):
    """forward(x: (B, 3, H, W) float in [0, 1], frames prev, mid, next) -> logits (B, 1, H, W), any H, W.

    Subclasses set nothing but their layers and implement `forward_padded(xp)` on
    (B, 3, Hp, Wp) with Hp, Wp multiples of `size_multiple`, returning logits (B, 1, Hp, Wp).
    """

    def __init__(self, config: ModelConfig, size_multiple: int):
        super().__init__()
        self.config = config
        self.size_multiple = size_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_frames(x)
        padder = InputPadder(x.shape[-2], x.shape[-1], self.size_multiple)
        return padder.unpad(self.forward_padded(padder.pad(x)))

    def forward_padded(self, xp: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement forward_padded(xp)")


@runtime_checkable
class StreamingNet(Protocol):
    """The streaming API (shapes: docs/design.md). Hp, Wp are multiples of `size_multiple`.

    stem_features(frame (B, 1, Hp, Wp)) -> feats (B, C, Hp/2, Wp/2);
    pair_correlation(feats_a, feats_b) -> corr (B, (2d+1)^2, h, w), the kernel-1 map, so
        corr(b, a) is `flip_correlation(corr(a, b))` exactly when `corr` is a kernel-1 `Correlation`;
    head(feats_mid, corr_prev, corr_next, frames=None) -> logits (B, 1, Hp, Wp), with
        corr_prev = pair_correlation(feats_mid, feats_prev), frames the padded triplet
        (B, 3, Hp, Wp) when config.input_skip.
    """

    config: ModelConfig
    size_multiple: int
    corr: Correlation

    def stem_features(self, frame: torch.Tensor) -> torch.Tensor: ...

    def pair_correlation(self, feats_a: torch.Tensor, feats_b: torch.Tensor) -> torch.Tensor: ...

    def head(self, feats_mid: torch.Tensor, corr_prev: torch.Tensor, corr_next: torch.Tensor,
             frames: torch.Tensor | None = None) -> torch.Tensor: ...


def is_streaming(model: object) -> bool:
    """True when `model` has the streaming API (`StreamingNet`)."""
    return isinstance(model, StreamingNet)


def branch_features(net: nn.Module, xp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """xp: (B, 3, Hp, Wp) -> stem features (prev, mid, next), each (B, C, Hp/2, Wp/2).

    One stem call on the 3B single-channel frames: the same weights for every branch. `net`: any model
    with `stem_features` (a `StreamingNet`, or a Tri-Net, which has the stem but no correlation)."""
    B, _, Hp, Wp = xp.shape
    feats = net.stem_features(xp.reshape(B * 3, 1, Hp, Wp))
    prev, mid, nxt = feats.reshape(B, 3, *feats.shape[1:]).unbind(1)
    return prev, mid, nxt


def streaming_forward(net: StreamingNet, xp: torch.Tensor) -> torch.Tensor:
    """The forward of any `StreamingNet`, its API composed: xp (B, 3, Hp, Wp) -> logits (B, 1, Hp, Wp)."""
    prev, mid, nxt = branch_features(net, xp)
    skip = xp if net.config.input_skip else None
    return net.head(mid, net.pair_correlation(mid, prev), net.pair_correlation(mid, nxt), skip)
