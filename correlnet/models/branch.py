"""Three-branch networks (Fig. 2): one stem applied to each frame, fused, then encoder + decoder.

`TriNet` is the three-branch network without correlation (`efficient-trinet`, Table 2): the three
branch features are concatenated. `CorrelNet` (`correlnet` with the plain stem,
`efficient-correlnet` with the EfficientNet stem) fuses the centre features with corr(mid, prev) and
corr(mid, next) (Sec. 3.1) and has the streaming API (`models.base.StreamingNet`). The three branches
are ONE module applied to each frame, so they share a single parameter set by construction. After
fusion there is one path, the centre path, and its stage outputs are the decoder's skips: the side
branches never reach the decoder directly.

Fusion choice (documented design decision): concatenate, then a 1x1 conv + BN + activation
back to the stem width, so the encoder's first block sees the shape it was designed for (Correl-Net
applies the 1x1 conv part by part and sums, never materialising the concatenation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..correlation import Correlation
from .base import FrameModel, branch_features, streaming_forward
from .config import CORRELATION_ARCHS, ModelConfig
from .decoder import MOTION_GAIN, UNetDecoder
from .padding import check_padded



class TriNet(FrameModel):
    """Branch model without correlation: forward(x: (B, 3, H, W) frames prev, mid, next in [0, 1])
    -> logits (B, 1, H, W) (padding: `FrameModel`).

    stem: (B, 1, Hp, Wp) -> (B, stem_channels, Hp/2, Wp/2), the shared branch.
    body: fused (B, stem_channels, Hp/2, Wp/2) -> [features at strides 2, 4, ..., 2^depth].
    body_channels: channels of those features.
    """

    def __init__(self, config: ModelConfig, stem: nn.Module, stem_channels: int, body: nn.Module,
                 body_channels: list[int], act: type[nn.Module] = nn.ReLU):
        super().__init__(config, 2 ** config.encoder_depth)
        if (config.arch in CORRELATION_ARCHS) != isinstance(self, CorrelNet):
            wanted = "CorrelNet" if config.arch in CORRELATION_ARCHS else "TriNet"
            raise ValueError(f"{config.arch} is built as {wanted}, not {type(self).__name__}: "
                             "use correlnet.models.build_model_from_config")
        self.stem = stem
        self.stem_channels = stem_channels
        self.corr = self._correlation()
        self.fuse = nn.Sequential(
            nn.Conv2d(self._fused_channels(), stem_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(stem_channels),
            act(inplace=True),
        )
        self.body = body
        self.decoder = UNetDecoder.for_config(body_channels, config)

    def _correlation(self) -> Correlation | None:
        return None

    def _fused_channels(self) -> int:
        return 3 * self.stem_channels

    def stem_features(self, frame: torch.Tensor) -> torch.Tensor:
        """frame: (B, 1, Hp, Wp) in [0, 1], Hp and Wp multiples of `size_multiple`
        -> feats (B, C, Hp/2, Wp/2)."""
        check_padded(frame, 1, self.size_multiple, "frame")
        return self.stem(frame)

    def forward_padded(self, xp: torch.Tensor) -> torch.Tensor:
        """xp: (B, 3, Hp, Wp), Hp, Wp multiples of `size_multiple` -> logits (B, 1, Hp, Wp)."""
        prev, mid, nxt = branch_features(self, xp)
        skip = xp if self.config.input_skip else None
        return self.decoder(self.body(self.fuse(torch.cat([prev, mid, nxt], 1))), skip)


class CorrelNet(TriNet):
    """Correl-Net: TriNet's branches fused with the two correlations; the streaming API (design.md):
    per-frame features and per-pair correlations computed once. forward = the API composed."""

    def _correlation(self) -> Correlation:
        # Kernel-1 correlation here, the k x k patch average in head(): see pair_correlation.
        return Correlation(self.config.max_displacement, 1, self.config.stride1, self.config.stride2)

    def _fused_channels(self) -> int:
        return 2 * self.config.corr_channels + self.stem_channels + (2 if self.config.motion_fusion else 0)

    def pair_correlation(self, feats_a: torch.Tensor, feats_b: torch.Tensor) -> torch.Tensor:
        """feats_a, feats_b: (B, C, h, w) from `stem_features` -> corr (B, (2d+1)^2, h, w).

        The kernel-1 correlation: head() applies the k x k patch average (Sec. 3.1's kernel 3),
        which is the same as correlating with kernel k. Keeping the kernel-1 map here makes
        `flip_correlation(corr(a, b))` exactly corr(b, a), so streaming computes a pair once.
        """
        return self.corr(feats_a, feats_b)

    def head(self, feats_mid: torch.Tensor, corr_prev: torch.Tensor, corr_next: torch.Tensor,
             frames: torch.Tensor | None = None) -> torch.Tensor:
        """feats_mid (B, C, h, w), corr_prev = corr(mid, prev), corr_next = corr(mid, next)
        (B, (2d+1)^2, h, w) from pair_correlation -> logits (B, 1, 2h, 2w).
        frames: the padded triplet (B, 3, 2h, 2w) (prev, mid, next) when config.input_skip, else None.

        With config.motion_fusion the concatenation ends with the motion skip's two compensated
        differences of `frames`, averaged to (h, w) and scaled by MOTION_GAIN (the flow computed once,
        the decoder's skip gets the same differences at full resolution).
        Equals fuse(concat(patch_average(corr_prev), patch_average(corr_next), feats_mid)) then
        the encoder and decoder, computed cheaply: the 1x1 fusion conv is applied to each part
        (no concatenated copy: 2 * 441 + C channels, ~1.9 GB at 1080p for efficientnet_b0),
        and the k x k patch average runs after the conv on C channels instead of 2 * 441, which
        is exact because both are linear and the average acts on each channel alike. The conv's
        bias (none when trained; the BatchNorm's shift once `correlnet.inference` folds it in) is
        added after the sum, as the conv on the concatenation would: so folding stays exact.
        """
        check_padded(feats_mid, self.stem_channels, max(1, self.size_multiple // 2), "feats_mid")
        n = self.config.corr_channels
        for name, c in (("corr_prev", corr_prev), ("corr_next", corr_next)):
            if c.shape != (feats_mid.shape[0], n, *feats_mid.shape[-2:]):
                raise ValueError(
                    f"{name} must be (B, {n}, h, w) matching feats_mid {tuple(feats_mid.shape)}; got "
                    f"{tuple(c.shape)}: compute it with pair_correlation(feats_mid, feats_other)")
        w, bias = self.fuse[0].weight, self.fuse[0].bias
        c = self.stem_channels
        fused = self._patch_average(F.conv2d(corr_prev, w[:, :n]) + F.conv2d(corr_next, w[:, n : 2 * n]))
        fused = fused + F.conv2d(feats_mid, w[:, 2 * n : 2 * n + c])
        motion = self.decoder.motion(frames) if self.decoder.motion is not None and frames is not None else None
        if self.config.motion_fusion:
            if motion is None:
                raise ValueError("this model fuses the motion evidence: pass the padded triplet as frames")
            half = MOTION_GAIN * F.avg_pool2d(motion, 2).to(fused.dtype)
            fused = fused + F.conv2d(half, w[:, 2 * n + c :].to(fused.dtype))
        if bias is not None:
            fused = fused + bias.reshape(1, -1, 1, 1)
        return self.decoder(self.body(self.fuse[1:](fused)), frames, motion)

    def _patch_average(self, x: torch.Tensor) -> torch.Tensor:
        # local_correlation's kernel k: mean over the k x k patch, zero outside the image.
        k = self.config.kernel_size
        return x if k == 1 else F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=True)

    def forward_padded(self, xp: torch.Tensor) -> torch.Tensor:
        """xp: (B, 3, Hp, Wp), Hp, Wp multiples of `size_multiple` -> logits (B, 1, Hp, Wp)."""
        return streaming_forward(self, xp)


def triplet_net(config: ModelConfig, stem: nn.Module, stem_channels: int, body: nn.Module,
                body_channels: list[int], act: type[nn.Module] = nn.ReLU) -> TriNet:
    """The branch network `config.arch` asks for: `CorrelNet` with correlation, else `TriNet`."""
    cls = CorrelNet if config.arch in CORRELATION_ARCHS else TriNet
    return cls(config, stem, stem_channels, body, body_channels, act)
