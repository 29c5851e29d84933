"""Three-branch networks (Fig. 2): one stem applied to each frame, fused, then encoder + decoder.

`TripletNet` is shared by `correlnet` (plain stem) and `efficient-correlnet`/`efficient-trinet`
(EfficientNet stem). The three branches are ONE module applied to each frame, so they share a
single parameter set by construction. With correlation (Sec. 3.1) the centre features are
fused with corr(mid, prev) and corr(mid, next); without it (`efficient-trinet`, Table 2) the
three branch features are concatenated. After fusion there is one path, the centre path, and
its stage outputs are the decoder's skips: the side branches never reach the decoder directly.

Fusion choice (documented design decision): concatenate, then a 1x1 conv + BN + activation
back to the stem width, so the encoder's first block sees the shape it was designed for (the
1x1 conv is applied part by part and summed, never materialising the concatenation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..correlation import Correlation
from .config import ModelConfig
from .decoder import UNetDecoder
from .padding import InputPadder, check_frames, check_padded


class TripletNet(nn.Module):
    """Branch model: forward(x: (B, 3, H, W) frames prev, mid, next in [0, 1]) -> logits (B, 1, H, W).

    stem: (B, 1, Hp, Wp) -> (B, stem_channels, Hp/2, Wp/2), the shared branch.
    body: fused (B, stem_channels, Hp/2, Wp/2) -> [features at strides 2, 4, ..., 2^depth].
    body_channels: channels of those features.
    """

    def __init__(self, config: ModelConfig, stem: nn.Module, stem_channels: int, body: nn.Module,
                 body_channels: list[int], act: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.config = config
        self.size_multiple = 2 ** config.encoder_depth
        self.use_correlation = config.arch in ("correlnet", "efficient-correlnet")
        self.stem = stem
        self.stem_channels = stem_channels
        if self.use_correlation:
            # Kernel-1 correlation here, the k x k patch average in head(): see pair_correlation.
            self.corr = Correlation(config.max_displacement, 1, config.stride1, config.stride2)
            fused_in = 2 * config.corr_channels + stem_channels
        else:
            self.corr = None
            fused_in = 3 * stem_channels
        self.fuse = nn.Sequential(
            nn.Conv2d(fused_in, stem_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(stem_channels),
            act(inplace=True),
        )
        self.body = body
        self.decoder = UNetDecoder.for_config(body_channels, config)

    # --- streaming API (design.md): per-frame features and per-pair correlations computed once ---
    def stem_features(self, frame: torch.Tensor) -> torch.Tensor:
        """frame: (B, 1, Hp, Wp) in [0, 1], Hp and Wp multiples of `size_multiple`
        -> feats (B, C, Hp/2, Wp/2)."""
        check_padded(frame, 1, self.size_multiple, "frame")
        return self.stem(frame)

    def pair_correlation(self, feats_a: torch.Tensor, feats_b: torch.Tensor) -> torch.Tensor:
        """feats_a, feats_b: (B, C, h, w) from `stem_features` -> corr (B, (2d+1)^2, h, w).

        The kernel-1 correlation: head() applies the k x k patch average (Sec. 3.1's kernel 3),
        which is the same as correlating with kernel k. Keeping the kernel-1 map here makes
        `flip_correlation(corr(a, b))` exactly corr(b, a), so streaming computes a pair once.
        """
        self._need_correlation("pair_correlation")
        return self.corr(feats_a, feats_b)

    def head(self, feats_mid: torch.Tensor, corr_prev: torch.Tensor, corr_next: torch.Tensor,
             frames: torch.Tensor | None = None) -> torch.Tensor:
        """feats_mid (B, C, h, w), corr_prev = corr(mid, prev), corr_next = corr(mid, next)
        (B, (2d+1)^2, h, w) from pair_correlation -> logits (B, 1, 2h, 2w).
        frames: the padded triplet (B, 3, 2h, 2w) (prev, mid, next) when config.input_skip, else None.

        Equals fuse(concat(patch_average(corr_prev), patch_average(corr_next), feats_mid)) then
        the encoder and decoder, computed cheaply: the 1x1 fusion conv is applied to each part
        (no concatenated copy: 2 * 441 + C channels, ~1.9 GB at 1080p for efficientnet_b0),
        and the k x k patch average runs after the conv on C channels instead of 2 * 441, which
        is exact because both are linear and the average acts on each channel alike.
        """
        self._need_correlation("head")
        check_padded(feats_mid, self.stem_channels, max(1, self.size_multiple // 2), "feats_mid")
        n = self.config.corr_channels
        for name, c in (("corr_prev", corr_prev), ("corr_next", corr_next)):
            if c.shape != (feats_mid.shape[0], n, *feats_mid.shape[-2:]):
                raise ValueError(
                    f"{name} must be (B, {n}, h, w) matching feats_mid {tuple(feats_mid.shape)}; got "
                    f"{tuple(c.shape)}: compute it with pair_correlation(feats_mid, feats_other)")
        w = self.fuse[0].weight
        fused = self._patch_average(F.conv2d(corr_prev, w[:, :n]) + F.conv2d(corr_next, w[:, n : 2 * n]))
        fused = fused + F.conv2d(feats_mid, w[:, 2 * n :])
        return self.decoder(self.body(self.fuse[1:](fused)), frames)

    def _patch_average(self, x: torch.Tensor) -> torch.Tensor:
        # local_correlation's kernel k: mean over the k x k patch, zero outside the image.
        k = self.config.kernel_size
        return x if k == 1 else F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=True)

    def _need_correlation(self, what: str) -> None:
        if not self.use_correlation:
            raise AttributeError(f"{self.config.arch} has no correlation, so no {what}(): "
                                 "call the model on (B, 3, H, W)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) frames prev, mid, next in [0, 1], any H, W -> logits (B, 1, H, W)."""
        check_frames(x)
        B, _, H, W = x.shape
        padder = InputPadder(H, W, self.size_multiple)
        xp = padder.pad(x)
        Hp, Wp = padder.padded_size
        # One call on 3B single-channel frames: the same stem (same weights) for every branch.
        feats = self.stem_features(xp.reshape(B * 3, 1, Hp, Wp))
        feats = feats.reshape(B, 3, *feats.shape[1:])
        prev, mid, nxt = feats.unbind(1)
        skip = xp if self.config.input_skip else None
        if self.use_correlation:
            logits = self.head(mid, self.pair_correlation(mid, prev), self.pair_correlation(mid, nxt), skip)
        else:
            logits = self.decoder(self.body(self.fuse(torch.cat([prev, mid, nxt], 1))), skip)
        return padder.unpad(logits)
