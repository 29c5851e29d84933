"""corr(a, b) -> corr(b, a) without a or b (`flip_correlation`), and the re-indexing it shares with
the correlation's backward pass (`flipper`).

corr(a, b)[delta, y] = a(y) . b(y + delta) = corr(b, a)[-delta, y + delta]: the reverse map is the
forward one read at the opposite displacement and the displaced position. Streaming detection uses
it to compute each pair of neighbouring frames once (`correlnet.prediction`).
"""

from __future__ import annotations

import torch


def flipper(corr_last: torch.Tensor, r: int, s: int):
    """corr_last: (B, H, W, D*D) -> function bi -> (H, W, D, D) view of sample bi's flipped map.

    flipped[y, x, i, j] = corr[y + di, x + dj, D-1-i, D-1-j] with (di, dj) = ((i - r)*s, (j - r)*s),
    zero where (y + di, x + dj) leaves the image. In a copy padded by d = r*s, the negative step over
    the reversed displacement is absorbed by the positive spatial step, so all strides are positive
    and the flip is a view. The padded copy is one sample, reused.
    """
    B, H, W, DD = corr_last.shape
    D, d = 2 * r + 1, r * s
    hp, wp = H + 2 * d, W + 2 * d
    padded = corr_last.new_zeros(hp, wp, DD)
    view = padded.as_strided((H, W, D, D), (wp * DD, DD, s * wp * DD - D, s * DD - 1), DD - 1)

    def flipped_of(bi: int) -> torch.Tensor:
        padded[d : d + H, d : d + W] = corr_last[bi]
        return view

    return flipped_of


def flip_correlation(corr: torch.Tensor, max_displacement: int, stride2: int = 1) -> torch.Tensor:
    """Turn corr(a, b) into corr(b, a) without a or b: out[delta, y] = corr[-delta, y + delta], zero outside.

    corr: (B, D*D, H, W) from `local_correlation(a, b, max_displacement, kernel_size, stride1=1, stride2)`.
    Returns (B, D*D, H, W), a new tensor in channels_last memory format (differentiable).

    Exact for kernel_size=1. For kernel_size k > 1 it is exact except in a band of width k//2 next to
    where y + delta leaves the image: there corr(b, a) sums products whose patch centre in `a` lies
    outside the image, which corr(a, b) never stored. For exact reuse with k > 1, keep the kernel-1 map:
    `patch_average(flip_correlation(c1, d, s2), k)` equals `local_correlation(b, a, d, k, 1, s2)` where
    `c1 = local_correlation(a, b, d, 1, 1, s2)`.
    Raises ValueError if corr is not 4-D or its channel count is not (2*(max_displacement//stride2)+1)^2.
    """
    if isinstance(max_displacement, bool) or not isinstance(max_displacement, int) or max_displacement < 0:
        raise ValueError(f"max_displacement must be an int >= 0; got {max_displacement!r}")
    if isinstance(stride2, bool) or not isinstance(stride2, int) or stride2 < 1:
        raise ValueError(f"stride2 must be an int >= 1; got {stride2!r}")
    r = max_displacement // stride2
    D = 2 * r + 1
    if not isinstance(corr, torch.Tensor) or corr.dim() != 4 or corr.shape[1] != D * D:
        raise ValueError(
            f"flip_correlation expects corr of shape (B, {D * D}, H, W) for max_displacement={max_displacement}, "
            f"stride2={stride2}; got {tuple(getattr(corr, 'shape', ()))} (pass the max_displacement and stride2 "
            "given to local_correlation, which must have used stride1=1)"
        )
    return _Flip.apply(corr, r, stride2)


def _flip(corr: torch.Tensor, r: int, s: int) -> torch.Tensor:
    B, DD, H, W = corr.shape
    flipped_of = flipper(corr.permute(0, 2, 3, 1), r, s)
    out = corr.new_empty(B, H, W, DD)
    for bi in range(B):
        out[bi] = flipped_of(bi).reshape(H, W, DD)
    return out.permute(0, 3, 1, 2)


class _Flip(torch.autograd.Function):
    """The flip is its own adjoint: corr[-delta, z] is read exactly by out[delta, z - delta]."""

    @staticmethod
    def forward(ctx, corr: torch.Tensor, r: int, s: int) -> torch.Tensor:
        ctx.r, ctx.s = r, s
        return _flip(corr, r, s)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _flip(grad, ctx.r, ctx.s), None, None
