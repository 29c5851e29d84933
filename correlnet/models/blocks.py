"""Small conv building blocks shared by the plain encoder and the decoders."""

from __future__ import annotations

from torch import nn


class ConvBNReLU(nn.Sequential):
    """3x3 (or k x k) conv -> BatchNorm -> ReLU; `stride` 2 halves H and W."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )
