"""The k x k box sum behind the correlation's kernel k (`correlnet.correlation`), in cache-sized blocks.

A kernel-k correlation is the kernel-1 map summed over k x k patches (zero padding). Summing a
(H, W, D*D) channels-last map in place, one sample at a time, in blocks of rows that stay in cache
costs far less than an avg_pool2d forward and backward over the whole (B, D*D, H, W) map in fresh
allocations. The adjoint of a zero-padded box sum is the same box sum (its kernel is symmetric),
so the backward pass uses these functions too.
"""

from __future__ import annotations

import torch

# Rows per block of the box sum: 4 rows of a (W=128, 441) map plus the 2p halo rows are ~1.4 MB, about
# the L2 cache of the dev CPU, so each pass over a block reads memory once.
_BOX_ROWS = 4


def _row_sum(src: torch.Tensor, dst: torch.Tensor, p: int) -> None:
    """dst[:, x] = sum of src[:, x-p..x+p] (zero outside); src, dst (n, W, K), distinct memory."""
    if src.shape[1] == 1:
        dst.copy_(src)
        return
    # the first shift is written with the centre: one pass fewer than copying the centre first
    torch.add(src[:, 1:], src[:, :-1], out=dst[:, 1:])
    dst[:, 0] = src[:, 0]
    dst[:, :-1] += src[:, 1:]
    for t in range(2, min(p, src.shape[1] - 1) + 1):
        dst[:, t:] += src[:, :-t]
        dst[:, :-t] += src[:, t:]


def box_sum(src: torch.Tensor, dst: torch.Tensor, p: int, halo: torch.Tensor) -> None:
    """dst = (2p+1) x (2p+1) box sum over the first two dims of src (H, W, K), zero padding; dst may be src.

    Separable, in blocks of _BOX_ROWS rows: `halo` ((_BOX_ROWS + 2p, W, K) buffer, reused) holds the
    row-summed rows y0-p .. y1+p-1 of the block [y0, y1); the 2p rows shared with the next block are
    moved down instead of recomputed. Source rows are read before any block writes them (y0+p >= y0).
    """
    H = src.shape[0]
    halo[: 2 * p].zero_()
    _row_sum(src[:p], halo[p : p + min(p, H)], p)
    for y0 in range(0, H, _BOX_ROWS):
        n = min(_BOX_ROWS, H - y0)
        lo, hi = y0 + p, min(y0 + n + p, H)  # new source rows; rows past the image stay zero
        if hi > lo:
            _row_sum(src[lo:hi], halo[2 * p : 2 * p + hi - lo], p)
        halo[2 * p + max(hi - lo, 0) : 2 * p + n].zero_()
        out = dst[y0 : y0 + n]
        torch.add(halo[:n], halo[1 : 1 + n], out=out)
        for t in range(2, 2 * p + 1):
            out += halo[t : t + n]
        halo[: 2 * p].copy_(halo[n : n + 2 * p].clone() if n < 2 * p else halo[n : n + 2 * p])


def box_buffer(like: torch.Tensor, p: int) -> torch.Tensor:
    """The `halo` buffer of `box_sum` for (H, W, K) maps like `like`."""
    return like.new_empty(_BOX_ROWS + 2 * p, *like.shape[1:])


def box_summer(g5: torch.Tensor, p: int):
    """g5: (B, H, W, D, D) -> function bi -> box sum of sample bi (`box_sum`), in one reused buffer.

    The adjoint of a zero-padded box sum is the same box sum (its kernel is symmetric). g5 is the
    caller's gradient and is left untouched.
    """
    B, H, W, D, _ = g5.shape
    summed = g5.new_empty(H, W, D, D)
    halo = box_buffer(summed.view(H, W, D * D), p)

    def summed_of(bi: int) -> torch.Tensor:
        box_sum(g5[bi].view(H, W, D * D), summed.view(H, W, D * D), p, halo)
        return summed

    return summed_of
