"""correlnet.correlation against a naive per-displacement reference, a hand-computed case and gradcheck."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from correlnet.device import resolve_device
from correlnet.correlation import Correlation, flip_correlation, local_correlation, patch_average


def naive_correlation(a, b, max_displacement, kernel_size=1, stride1=1, stride2=1):
    """The definition, one displacement and one patch offset at a time (no shared code with the module)."""
    B, C, H, W = a.shape
    r = max_displacement // stride2
    k, h = kernel_size, kernel_size // 2
    pad = r * stride2 + h
    ap = F.pad(a, (h, h, h, h))
    bp = F.pad(b, (pad, pad, pad, pad))
    maps = []
    for i in range(2 * r + 1):
        for j in range(2 * r + 1):
            dy, dx = (i - r) * stride2, (j - r) * stride2
            total = torch.zeros(B, H, W, dtype=a.dtype)
            for py in range(k):
                for px in range(k):
                    a_shift = ap[:, :, py : py + H, px : px + W]
                    y0, x0 = pad - h + py + dy, pad - h + px + dx
                    total = total + (a_shift * bp[:, :, y0 : y0 + H, x0 : x0 + W]).sum(1)
            maps.append(total / (C * k * k))
    return torch.stack(maps, 1)[:, :, ::stride1, ::stride1]


def _pair(shape, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype), torch.randn(shape, generator=g, dtype=dtype)


CASES = [
    # (B, C, H, W), max_displacement, kernel_size, stride1, stride2
    ((2, 5, 9, 13), 3, 1, 1, 1),
    ((2, 5, 9, 13), 3, 3, 1, 1),
    ((1, 3, 4, 3), 4, 1, 1, 1),  # displacement larger than the image
    ((3, 8, 17, 16), 2, 3, 2, 1),
    ((2, 4, 11, 7), 4, 1, 1, 2),
    ((2, 4, 11, 7), 5, 3, 2, 2),  # max_displacement not a multiple of stride2
    ((1, 6, 10, 19), 3, 1, 3, 3),
    ((1, 16, 23, 25), 10, 3, 1, 1),  # the paper's setting (Sec. 3.1) on a small map
    ((2, 3, 5, 6), 0, 3, 1, 1),
]


@pytest.mark.parametrize("shape, d, k, s1, s2", CASES)
def test_matches_naive_reference(shape, d, k, s1, s2):
    a, b = _pair(shape, seed=sum(shape) + d)
    got = local_correlation(a, b, d, k, s1, s2)
    want = naive_correlation(a, b, d, k, s1, s2)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-5


def test_output_shape_and_channel_order():
    a, b = _pair((2, 3, 9, 10), seed=1)
    corr = local_correlation(a, b, max_displacement=5, kernel_size=1, stride1=2, stride2=2)
    assert corr.shape == (2, 25, 5, 5)  # D = 2*(5//2)+1 = 5, H' = ceil(9/2), W' = ceil(10/2)
    # channel i*D + j is displacement ((i-2)*2, (j-2)*2): check (dy, dx) = (-2, +4) at one pixel
    i, j, y, x = 1, 4, 2, 1
    want = (a[:, :, 2 * y, 2 * x] * b[:, :, 2 * y - 2, 2 * x + 4]).sum(1) / 3
    assert torch.allclose(corr[:, i * 5 + j, y, x], want, atol=1e-6)


def test_hand_computed_tiny_case():
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    b = torch.tensor([[[[5.0, 6.0], [7.0, 8.0]]]])
    corr = local_correlation(a, b, max_displacement=1)
    assert corr.shape == (1, 9, 2, 2)
    assert corr[0, 4].tolist() == [[5.0, 12.0], [21.0, 32.0]]  # (0, 0)
    assert corr[0, 5].tolist() == [[6.0, 0.0], [24.0, 0.0]]  # (0, +1): b to the right, zero past the edge
    assert corr[0, 8].tolist() == [[8.0, 0.0], [0.0, 0.0]]  # (+1, +1)
    assert corr[0, 0].tolist() == [[0.0, 0.0], [0.0, 20.0]]  # (-1, -1): 4 * 5
    # two channels: the mean over channels, not the sum
    two = local_correlation(torch.cat([a, 2 * a], 1), torch.cat([b, b], 1), max_displacement=1)
    assert two[0, 4].tolist() == [[7.5, 18.0], [31.5, 48.0]]
    # 3x3 patch on a 2x2 image: every patch covers the whole image, 70 / (C * 9)
    box = local_correlation(a, b, max_displacement=0, kernel_size=3)
    assert torch.allclose(box, torch.full((1, 1, 2, 2), 70.0 / 9.0))


@pytest.mark.parametrize("d, k, s1, s2, fast", [(2, 1, 1, 1, False), (2, 3, 1, 1, True), (3, 3, 2, 2, True)])
def test_gradcheck_float64(d, k, s1, s2, fast):
    a, b = _pair((2, 2, 4, 5), seed=7, dtype=torch.float64)
    a.requires_grad_(True)
    b.requires_grad_(True)
    fn = lambda x, y: local_correlation(x, y, d, k, s1, s2)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (a, b), fast_mode=fast)


@pytest.mark.parametrize("d, k, s2", [(10, 3, 1), (4, 1, 2)])
def test_gradients_match_naive_on_larger_maps(d, k, s2):
    a, b = _pair((2, 6, 21, 30), seed=3, dtype=torch.float64)
    shape = naive_correlation(a, b, d, k, 1, s2).shape
    weights = torch.randn(shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    grads = []
    for fn in (local_correlation, naive_correlation):
        x, y = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        (fn(x, y, d, k, 1, s2) * weights).sum().backward()
        grads.append((x.grad, y.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-10)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-10)


@pytest.mark.parametrize(
    "shape, d, k, s2",
    [
        ((2, 3, 6, 7), 2, 5, 1),  # the in-Function box sum with a 2-pixel halo and a short last row block
        ((1, 2, 1, 2), 1, 3, 1),  # map smaller than the patch in both directions
        ((2, 3, 2, 1), 3, 5, 1),  # a single column
        ((1, 2, 9, 10), 4, 7, 2),  # box sum with stride2
    ],
)
def test_patch_sums_and_gradients_match_naive_for_any_kernel(shape, d, k, s2):
    a, b = _pair(shape, seed=11, dtype=torch.float64)
    want_shape = naive_correlation(a, b, d, k, 1, s2).shape
    weights = torch.randn(want_shape, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    weights_before = weights.clone()
    results = []
    for fn in (local_correlation, naive_correlation):
        x, y = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        out = fn(x, y, d, k, 1, s2)
        out.backward(weights)
        results.append((out.detach(), x.grad, y.grad))
    for got, want in zip(*results):
        assert (got - want).abs().max().item() <= 1e-12
    # the backward box-sums the incoming gradient in its own buffers, never in place
    assert torch.equal(weights, weights_before)


def test_gradient_only_for_inputs_that_need_it():
    a, b = _pair((1, 2, 6, 7), seed=5)
    a.requires_grad_(True)
    local_correlation(a, b, 2).sum().backward()
    assert a.grad is not None and b.grad is None


@pytest.mark.parametrize(
    "a_shape, b_shape, kwargs, message",
    [
        ((3, 8, 8), (3, 8, 8), {}, "unsqueeze"),
        ((1, 3, 8, 8), (1, 3, 8, 9), {}, "same shape"),
        ((1, 3, 8, 8), (1, 3, 8, 8), {"kernel_size": 2}, "odd kernel_size"),
        ((1, 3, 8, 8), (1, 3, 8, 8), {"max_displacement": -1}, "max_displacement >= 0"),
        ((1, 3, 8, 8), (1, 3, 8, 8), {"stride1": 0}, "strides >= 1"),
        ((1, 3, 8, 8), (1, 3, 8, 8), {"stride2": 1.5}, "must be ints"),
        ((1, 0, 8, 8), (1, 0, 8, 8), {}, "non-empty"),
    ],
)
def test_bad_input_raises_helpful_error(a_shape, b_shape, kwargs, message):
    with pytest.raises(ValueError, match=message):
        local_correlation(torch.zeros(a_shape), torch.zeros(b_shape), **kwargs)


def test_bad_dtypes_raise():
    with pytest.raises(ValueError, match="floating point"):
        local_correlation(torch.zeros(1, 2, 4, 4, dtype=torch.int64), torch.zeros(1, 2, 4, 4, dtype=torch.int64), 1)
    with pytest.raises(ValueError, match="dtype and device"):
        local_correlation(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4, dtype=torch.float64), 1)


@pytest.mark.parametrize("shape, d, s2", [((2, 4, 9, 13), 3, 1), ((1, 5, 12, 7), 4, 2), ((1, 3, 4, 3), 5, 1)])
def test_flip_correlation_kernel1_is_exact(shape, d, s2):
    a, b = _pair(shape, seed=11)
    corr_ab = local_correlation(a, b, d, 1, 1, s2)
    flipped = flip_correlation(corr_ab, d, s2)
    assert (flipped - naive_correlation(b, a, d, 1, 1, s2)).abs().max().item() <= 1e-5
    # zero filling loses nothing for kernel 1, so flipping twice is the identity
    assert torch.equal(flip_correlation(flipped, d, s2), corr_ab)


@pytest.mark.parametrize("d, s2", [(3, 1), (4, 2)])
def test_flip_correlation_kernel3(d, s2):
    a, b = _pair((2, 4, 11, 14), seed=12)
    want = naive_correlation(b, a, d, 3, 1, s2)
    # exact route: flip the kernel-1 map, then average over the patch
    c1 = local_correlation(a, b, d, 1, 1, s2)
    assert (patch_average(flip_correlation(c1, d, s2), 3) - want).abs().max().item() <= 1e-5
    # direct flip of the kernel-3 map: exact wherever the displaced patch centre stays in the image
    flipped = flip_correlation(local_correlation(a, b, d, 3, 1, s2), d, s2)
    r, D = d // s2, 2 * (d // s2) + 1
    H, W = a.shape[-2:]
    for ch in range(D * D):
        dy, dx = (ch // D - r) * s2, (ch % D - r) * s2
        ys, xs = slice(max(0, -dy), min(H, H - dy)), slice(max(0, -dx), min(W, W - dx))
        assert (flipped[:, ch, ys, xs] - want[:, ch, ys, xs]).abs().max().item() <= 1e-5


def test_flip_correlation_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"\(B, 49, H, W\)"):
        flip_correlation(torch.zeros(1, 25, 5, 5), max_displacement=3)


def test_patch_average_matches_kernel_size():
    a, b = _pair((1, 3, 8, 9), seed=13)
    got = patch_average(local_correlation(a, b, 2, 1), 3)
    assert torch.allclose(got, local_correlation(a, b, 2, 3), atol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        patch_average(got, 4)


def test_module_wrapper():
    layer = Correlation(max_displacement=4, kernel_size=3, stride1=1, stride2=2)
    assert layer.out_channels == 25
    assert "max_displacement=4" in repr(layer)
    a, b = _pair((1, 3, 7, 8), seed=14)
    out = layer(a, b)
    assert out.shape == (1, layer.out_channels, 7, 8)
    assert torch.equal(out, local_correlation(a, b, 4, 3, 1, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
def test_cuda_matches_cpu():
    a, b = _pair((2, 8, 13, 17), seed=15)
    cpu = local_correlation(a, b, 4, 3)
    device = resolve_device("cuda")
    x, y = a.to(device).requires_grad_(True), b.to(device).requires_grad_(True)
    out = local_correlation(x, y, 4, 3)
    out.sum().backward()
    assert out.device.type == "cuda"
    assert (out.cpu() - cpu).abs().max().item() <= 1e-4
    assert x.grad is not None and y.grad is not None


def test_flip_correlation_gradient():
    corr = torch.randn(2, 25, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: flip_correlation(c, 2), (corr,))
