"""FlowNet-style local correlation between two feature maps (Correl-Net Sec. 3.1, FlowNet's layer).

Why blocked matrix products: correlating a (B, C, H, W) pair over (2d+1)^2 displacements is
(2d+1)^2 * C * H * W multiply-adds, but one displacement at a time it streams both maps through
memory (2d+1)^2 times, far below the CPU's arithmetic peak. Here each row of `a` is cut into tiles of
_TILE columns; a tile is multiplied (a GEMM over C) with the window of `b` it can reach: rows y-d..y+d,
columns x0-d..x0+_TILE-1+d. Only a diagonal band of that product is wanted, so the waste is
(_TILE + 2d) / (2d + 1) (1.33x at d=10); the window is a strided view of a re-laid-out copy of one
sample of `b` ((_TILE+2d)/_TILE times its size), never a (2d+1)^2 * C * H * W unfolded tensor.
The backward pass is the same tiled product (`_correlation_transpose`); the gradient for `b` is the
one for `a` with the output gradient flipped (as in `flip_correlation`). Kernel k is one path, the one
the models use: the kernel-1 map, then the k x k mean with zero padding (`patch_average`). The models
apply that mean after their 1x1 fusion conv, on C channels instead of (2d+1)^2 (`CorrelNet.head`),
which is exact because both are linear; an in-Function box sum for k > 1 that only tests and a
benchmark reached was removed (issue 18). The band is
contiguous along the displacement, so maps come out in channels_last memory format: converting to
NCHW strides would be one more pass over the largest tensor, and convolutions and torch.cat accept
either."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .correlation_flip import flip_correlation, flipper

__all__ = ["Correlation", "flip_correlation", "local_correlation", "patch_average"]

# Output columns per GEMM tile. Measured on the 2-core dev CPU at C=64, d=10: 8 beat 4 and 16.
_TILE = 8


def _check(a: torch.Tensor, b: torch.Tensor, max_displacement: int, kernel_size: int, stride1: int,
           stride2: int) -> None:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise ValueError(f"local_correlation expects two tensors; got {type(a).__name__} and {type(b).__name__}")
    if a.dim() != 4 or b.dim() != 4:
        raise ValueError(
            f"local_correlation expects a and b of shape (B, C, H, W); got {tuple(a.shape)} and {tuple(b.shape)} "
            "(add a batch dimension with .unsqueeze(0) for a single feature map)"
        )
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dtype != b.dtype or a.device != b.device:
        raise ValueError(f"a and b must share dtype and device; got {a.dtype}/{a.device} and {b.dtype}/{b.device}")
    if not a.is_floating_point():
        raise ValueError(f"a and b must be floating point; got {a.dtype} (convert with .float())")
    if min(a.shape) < 1:
        raise ValueError(f"a and b must be non-empty; got shape {tuple(a.shape)}")
    args = (max_displacement, kernel_size, stride1, stride2)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in args):
        raise ValueError(f"max_displacement, kernel_size, stride1 and stride2 must be ints; got {args}")
    if max_displacement < 0 or kernel_size < 1 or kernel_size % 2 == 0 or stride1 < 1 or stride2 < 1:
        raise ValueError(
            "need max_displacement >= 0, an odd kernel_size >= 1 and strides >= 1; got "
            f"max_displacement={max_displacement}, kernel_size={kernel_size}, stride1={stride1}, stride2={stride2}"
        )


def _geometry(H: int, W: int, r: int, s: int) -> tuple[int, int, int, int]:
    """(tile, n_tiles, hq, wn): tile width, tiles per row, rows per residue block, window width."""
    tile = min(_TILE, W)
    return tile, -(-W // tile), -(-H // s) + 2 * r, tile + 2 * r * s


def _tiles(x: torch.Tensor, r: int, s: int) -> torch.Tensor:
    """x: (B, C, H, W) -> (B, s, nT, Hq, tile, C): [bi, m, ti, u] holds row m + s*u, columns of tile ti.

    Rows past the image are zero; they are computed along and dropped (see `_correlate_tiles`).
    """
    B, C, H, W = x.shape
    tile, n_tiles, hq, _ = _geometry(H, W, r, s)
    out = x.new_zeros(B, s, n_tiles, hq, tile, C)
    for m in range(min(s, H)):
        rows = F.pad(x[:, :, m::s], (0, n_tiles * tile - W))
        out[:, m, :, : rows.shape[2]] = rows.reshape(B, C, rows.shape[2], n_tiles, tile).permute(0, 3, 2, 4, 1)
    return out


def _window_maker(x: torch.Tensor, r: int, s: int):
    """x: (B, C, H, W) -> function bi -> (s, nT, Hq, tile + 2d, C) windows of sample bi, d = r*s.

    Zero padded by d on every side; padded row p = m + s*q is stored at [m, :, q], so the rows
    y, y+s, ..., y+2d that output row y = m + s*u reaches are q = u..u+2r: consecutive, and the reach
    of every (tile, u) is one strided view with a uniform step (see `_reach`). The returned tensor is
    a buffer reused for every sample: this keeps the copy small and avoids faulting in fresh pages.
    """
    B, C, H, W = x.shape
    tile, n_tiles, hq, wn = _geometry(H, W, r, s)
    d = r * s
    padded = x.new_zeros(hq * s, n_tiles * tile + 2 * d, C)
    windows = x.new_empty(s, n_tiles, hq, wn, C)
    cols = padded.unfold(1, wn, tile).reshape(hq, s, n_tiles, C, wn)  # a view

    def windows_of(bi: int) -> torch.Tensor:
        padded[d : d + H, d : d + W] = x[bi].permute(1, 2, 0)
        windows.copy_(cols.permute(1, 2, 0, 4, 3))
        return windows

    return windows_of


def _reach(win: torch.Tensor, n_rows: int, D: int) -> torch.Tensor:
    """win: (nT, Hq, Wn, C) of one (sample, row residue) -> (n_rows, D*Wn, C) overlapping view.

    Row k = ti*Hq + u of the view is the window of tile ti, rows u..u+2r, flattened; rows with
    u > Hq - D straddle two tiles and are garbage that the callers drop.
    """
    wn, c = win.shape[-2:]
    return win.as_strided((n_rows, D * wn, c), (wn * c, c, 1), win.storage_offset())


def _band(prod: torch.Tensor, n_tiles: int, D: int, s: int) -> torch.Tensor:
    """prod: contiguous (nT*Hq, T, D*Wn) tile products -> (nT, Hq, T, D, D) view of [t, i*Wn + t + j*s]."""
    rows, t, dwn = prod.shape
    wn = dwn // D
    return prod.as_strided((n_tiles, rows // n_tiles, t, D, D), ((rows // n_tiles) * t * dwn, t * dwn, dwn + 1, wn, s))


def _correlate_tiles(a: torch.Tensor, b: torch.Tensor, r: int, s: int) -> torch.Tensor:
    """Products: a, b (B, C, H, W) -> (B, H, W, D, D), D = 2r+1.

    Entry [y, x, i, j] is a[:, y, x] . b[:, y + (i-r)*s, x + (j-r)*s]. The result is displacement-last
    because the band of a tile product is contiguous along j. One batched GEMM per (sample, row residue)
    covers every tile: stacking the tiles' row blocks makes the batch step uniform, at the price of
    2r garbage rows per tile (16% more arithmetic at H=128, d=10).
    """
    B, C, H, W = a.shape
    D = 2 * r + 1
    tile, n_tiles, hq, wn = _geometry(H, W, r, s)
    a_t, windows_of = _tiles(a, r, s), _window_maker(b, r, s)
    out = a.new_empty(B, H, W, D, D)
    prod = a.new_empty(n_tiles * hq, tile, D * wn)
    n_rows = n_tiles * hq - 2 * r
    full = (W // tile) * tile
    for bi in range(B):
        b_w = windows_of(bi)
        for m in range(min(s, H)):
            rows = a_t[bi, m].view(n_tiles * hq, tile, C)[:n_rows]
            torch.bmm(rows, _reach(b_w[m], n_rows, D).transpose(1, 2), out=prod[:n_rows])
            band = _band(prod, n_tiles, D, s)[:, : -(-(H - m) // s)]
            dest = out[bi, m::s]
            dest[:, :full].view(band.shape[1], W // tile, tile, D, D).copy_(band[: W // tile].transpose(0, 1))
            if full < W:
                dest[:, full:] = band[-1, :, : W - full]
    return out


def _correlation_transpose(
    g_of, x: torch.Tensor, r: int, s: int, spread: torch.Tensor | None = None
) -> torch.Tensor:
    """Adjoint of the correlation in its first argument: out[c, z] = sum_delta g[z, delta] * x[c, z + delta].

    g_of: function bi -> (H, W, D, D) view of sample bi's g; x: (B, C, H, W). Returns (B, C, H, W) in
    channels_last memory format. Same tiled GEMM as the forward, with the band of g scattered into a
    zero (T, D*Wn) matrix per row (the zeros are the arithmetic the tiling wastes). `spread`: that
    zero-filled buffer from an earlier call with the same geometry, to reuse (only the band is written).
    """
    B, C, H, W = x.shape
    D = 2 * r + 1
    tile, n_tiles, hq, wn = _geometry(H, W, r, s)
    windows_of = _window_maker(x, r, s)
    out = x.new_empty(B, H, n_tiles, tile, C)
    if spread is None:
        spread = x.new_zeros(n_tiles * hq, tile, D * wn)
    res = x.new_empty(n_tiles * hq, tile, C)
    n_rows = n_tiles * hq - 2 * r
    full = (W // tile) * tile
    for bi in range(B):
        x_w, g = windows_of(bi), g_of(bi)
        for m in range(min(s, H)):
            n_y = -(-(H - m) // s)
            band = _band(spread, n_tiles, D, s)[:, :n_y]
            src = g[m::s]
            band[: W // tile].transpose(0, 1).copy_(src[:, :full].reshape(n_y, W // tile, tile, D, D))
            if full < W:
                band[-1, :, : W - full] = src[:, full:]
            torch.bmm(spread[:n_rows], _reach(x_w[m], n_rows, D), out=res[:n_rows])
            out[bi, m::s] = res.view(n_tiles, hq, tile, C)[:, :n_y].transpose(0, 1)
    return out.view(B, H, n_tiles * tile, C)[:, :, :W].permute(0, 3, 1, 2)


class _TiledCorrelation(torch.autograd.Function):
    """Stride1-1 kernel-1 correlation products (B, D*D, H, W), with a hand-written backward."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, r: int, s: int) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        ctx.r, ctx.s = r, s
        out = _correlate_tiles(a, b, r, s)
        B, H, W = out.shape[:3]
        return out.view(B, H, W, -1).permute(0, 3, 1, 2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        a, b = ctx.saved_tensors
        r, s = ctx.r, ctx.s
        D = 2 * r + 1
        g_last = grad.permute(0, 2, 3, 1).contiguous()  # a no-op for the usual channels_last grad
        grad_a = grad_b = None
        tile, n_tiles, hq, wn = _geometry(a.shape[2], a.shape[3], r, s)
        # both products share one zero-filled scatter buffer: 44 MB fewer to fault in and zero at d=10
        spread = a.new_zeros(n_tiles * hq, tile, D * wn)
        if ctx.needs_input_grad[0]:
            g5 = g_last.view(*g_last.shape[:3], D, D)
            grad_a = _correlation_transpose(lambda bi: g5[bi], b, r, s, spread)
        if ctx.needs_input_grad[1]:
            # corr[y, delta] = a[y] . b[y + delta], so b's gradient is the same adjoint with a, applied
            # to the gradient re-indexed by (y + delta, -delta): the flip of `flip_correlation`.
            grad_b = _correlation_transpose(flipper(g_last, r, s), a, r, s, spread)
        return grad_a, grad_b, None, None


def patch_average(corr: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Kernel-1 map -> kernel-k map: mean over the k x k patch with zero padding (count includes padding).

    corr: (B, D*D, H, W) from `local_correlation(..., kernel_size=1, stride1=1)`; returns the same shape,
    equal to `local_correlation(..., kernel_size=kernel_size, stride1=1)` with the same other arguments.
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd int >= 1; got {kernel_size!r}")
    if corr.dim() != 4:
        raise ValueError(f"patch_average expects corr of shape (B, D*D, H, W); got {tuple(corr.shape)}")
    if kernel_size == 1:
        return corr
    return F.avg_pool2d(corr, kernel_size, stride=1, padding=kernel_size // 2, count_include_pad=True)


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
    corr is in channels_last memory format (call .contiguous() where NCHW strides are needed).
    Raises ValueError on mismatched or non-4-D inputs and invalid parameters.
    """
    _check(a, b, max_displacement, kernel_size, stride1, stride2)
    r = max_displacement // stride2
    # Scaling a (C*H*W values) is cheaper than scaling the (2d+1)^2-times larger output.
    corr = patch_average(_TiledCorrelation.apply(a / a.shape[1], b, r, stride2), kernel_size)
    # stride1 samples the full map: simple and exact; Correl-Net itself uses stride1 = 1 (Sec. 3.1).
    if stride1 > 1:
        corr = corr[:, :, ::stride1, ::stride1].contiguous(memory_format=torch.channels_last)
    return corr


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
