"""FlowNet-style local correlation between two feature maps.

PLACEHOLDER-FREE REFERENCE VERSION: a per-displacement loop. The fast blocked version
replaces the body of `local_correlation` (issue 2); the semantics below are the contract.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check(a: torch.Tensor, b: torch.Tensor, max_displacement: int, kernel_size: int, stride1: int, stride2: int) -> None:
    if a.dim() != 4 or b.dim() != 4:
        raise ValueError(f"local_correlation expects a and b of shape (B, C, H, W); got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    if max_displacement < 0 or kernel_size < 1 or kernel_size % 2 == 0 or stride1 < 1 or stride2 < 1:
        raise ValueError(
            "need max_displacement >= 0, an odd kernel_size >= 1 and strides >= 1; got "
            f"max_displacement={max_displacement}, kernel_size={kernel_size}, stride1={stride1}, stride2={stride2}"
        )


def local_correlation(
    a: torch.Tensor,
    b: torch.Tensor,
    max_displacement: int = 10,
    kernel_size: int = 1,
    stride1: int = 1,
    stride2: int = 1,
) -> torch.Tensor:
    """Correlate `a` with displaced copies of `b`.

    a, b: (B, C, H, W), same dtype and device.
    Returns corr: (B, D*D, H', W') with D = 2*(max_displacement//stride2)+1 and
    H' = ceil(H/stride1), W' = ceil(W/stride1). Channel k = i*D + j holds displacement
    (dy, dx) = ((i - r)*stride2, (j - r)*stride2), r = max_displacement//stride2, i.e. row-major
    from (-d, -d) to (+d, +d). Each value is the sum over channels and the kernel_size^2 patch
    of a(y+p) * b(y+p+(dy,dx)), divided by C*kernel_size^2; outside the image both are zero.
    """
    _check(a, b, max_displacement, kernel_size, stride1, stride2)
    B, C, H, W = a.shape
    r = max_displacement // stride2
    d = r * stride2
    bp = F.pad(b, (d, d, d, d))
    outs = []
    for i in range(2 * r + 1):
        for j in range(2 * r + 1):
            dy, dx = i * stride2, j * stride2
            prod = (a * bp[:, :, dy : dy + H, dx : dx + W]).sum(1, keepdim=True)
            outs.append(prod)
    corr = torch.cat(outs, 1)
    if kernel_size > 1:
        k = kernel_size
        corr = F.avg_pool2d(corr, k, stride=1, padding=k // 2, count_include_pad=True) * (k * k)
    corr = corr / (C * kernel_size * kernel_size)
    return corr[:, :, ::stride1, ::stride1]


class Correlation(nn.Module):
    """nn.Module wrapper of `local_correlation` (FlowNet parameter names)."""

    def __init__(self, max_displacement: int = 10, kernel_size: int = 1, stride1: int = 1, stride2: int = 1):
        super().__init__()
        self.max_displacement = max_displacement
        self.kernel_size = kernel_size
        self.stride1 = stride1
        self.stride2 = stride2

    @property
    def out_channels(self) -> int:
        return (2 * (self.max_displacement // self.stride2) + 1) ** 2

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return local_correlation(a, b, self.max_displacement, self.kernel_size, self.stride1, self.stride2)

    def extra_repr(self) -> str:
        return (f"max_displacement={self.max_displacement}, kernel_size={self.kernel_size}, "
                f"stride1={self.stride1}, stride2={self.stride2}")
