"""Fractal Perlin noise: agreement with a naive per-pixel loop, range, determinism, any shape."""

from __future__ import annotations

import math

import numpy as np
import pytest

from correlnet.synth.noise import fractal_perlin, perlin


def naive_perlin(shape, res, rng):
    """Textbook gradient noise, one pixel at a time, drawing randoms in the same order."""
    h, w = shape
    phase_y, phase_x = rng.uniform(0, 1), rng.uniform(0, 1)
    cell_y, cell_x = h / res[0], w / res[1]
    if cell_y == int(cell_y) and cell_x == int(cell_x):  # whole-pixel cells: phase on a pixel
        phase_y, phase_x = math.floor(phase_y * cell_y) / cell_y, math.floor(phase_x * cell_x) / cell_x
    ys = [i * res[0] / h + phase_y for i in range(h)]
    xs = [j * res[1] / w + phase_x for j in range(w)]
    angles = rng.uniform(0, 2 * math.pi, size=(math.floor(ys[-1]) + 2, math.floor(xs[-1]) + 2))

    def fade(t):
        return 6 * t**5 - 15 * t**4 + 10 * t**3

    out = np.zeros(shape)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            cy, cx = math.floor(y), math.floor(x)
            fy, fx = y - cy, x - cx
            dots = {}
            for dy in (0, 1):
                for dx in (0, 1):
                    a = angles[cy + dy, cx + dx]
                    dots[dy, dx] = math.sin(a) * (fy - dy) + math.cos(a) * (fx - dx)
            ty, tx = fade(fy), fade(fx)
            top = dots[0, 0] * (1 - tx) + dots[0, 1] * tx
            bottom = dots[1, 0] * (1 - tx) + dots[1, 1] * tx
            out[i, j] = top * (1 - ty) + bottom * ty
    return out


@pytest.mark.parametrize(
    "shape,res",
    [
        ((12, 17), (2.5, 3.0)),  # fractional cells: general path
        ((1, 5), (1, 2)),  # 2.5 px cells along W: general path
        ((16, 16), (4, 4)),  # whole-pixel cells: aligned path
        ((24, 20), (3, 5)),
        ((32, 8), (1, 4)),
        ((9, 7), (9, 7)),  # 1 px cells
    ],
)
def test_perlin_matches_naive_loop(shape, res):
    fast = perlin(shape, res, np.random.default_rng(3))
    slow = naive_perlin(shape, res, np.random.default_rng(3))
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    assert fast.dtype == np.float32 and fast.shape == shape


def test_perlin_within_theoretical_bound():
    field = perlin((128, 128), (8, 8), np.random.default_rng(0))
    assert np.abs(field).max() <= math.sqrt(2) / 2 + 1e-6
    assert field.std() > 0.1  # not degenerate


def test_fractal_is_normalised_sum_of_octaves():
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    field = fractal_perlin((64, 48), res=(2, 3), octaves=3, persistence=0.5, lacunarity=2, rng=rng_a)
    total = sum(0.5**k * perlin((64, 48), (2 * 2**k, 3 * 2**k), rng_b) for k in range(3))
    np.testing.assert_allclose(field, total / np.abs(total).max(), atol=1e-6)


def test_fractal_range_and_paper_shape():
    field = fractal_perlin((256, 256), rng=np.random.default_rng(1))
    assert field.shape == (256, 256) and field.dtype == np.float32
    assert field.min() >= -1.0 and field.max() <= 1.0
    assert math.isclose(float(np.abs(field).max()), 1.0, rel_tol=1e-6)
    assert abs(float(field.mean())) < 0.1


def test_fractal_deterministic_per_seed():
    a = fractal_perlin((40, 30), rng=np.random.default_rng(5))
    b = fractal_perlin((40, 30), rng=np.random.default_rng(5))
    c = fractal_perlin((40, 30), rng=np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_any_shape_and_fractional_periods():
    field = fractal_perlin((101, 333), res=(101 / 32, 333 / 32), rng=np.random.default_rng(0))
    assert field.shape == (101, 333) and np.isfinite(field).all()


def test_period_controls_feature_size():
    """More periods -> shorter correlation length (neighbouring pixels less alike)."""
    rng = np.random.default_rng(0)

    def neighbour_corr(res):
        f = perlin((128, 128), res, rng)
        return np.corrcoef(f[:, :-4].ravel(), f[:, 4:].ravel())[0, 1]

    assert neighbour_corr((4, 4)) > neighbour_corr((16, 16)) + 0.3


@pytest.mark.parametrize("kwargs", [dict(shape=(0, 4)), dict(shape=(4,)), dict(octaves=0), dict(res=(0, 2))])
def test_bad_input_raises(kwargs):
    args = dict(shape=(8, 8), res=(2, 2), octaves=2) | kwargs
    with pytest.raises(ValueError):
        fractal_perlin(args["shape"], res=args["res"], octaves=args["octaves"], rng=np.random.default_rng(0))
