"""webapp/overlay.py against hand-built frames and naive references."""

from __future__ import annotations

import numpy as np
import pytest

from webapp.overlay import (AGREED_RGB, FALSE_POSITIVE_RGB, MISSED_RGB, MaskFilter, blend, dilate,
                            fig5_layer, filter_mask, magnify, overlay)


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """Grey 0.5 frame with a dark 3x3 blob, a light 4x4 blob and a single light pixel;
    probs 0.9 on all three, 0.3 elsewhere in a faint patch."""
    frame = np.full((40, 50), 0.5, np.float32)
    probs = np.zeros((40, 50), np.float32)
    frame[5:8, 5:8] = 0.1
    probs[5:8, 5:8] = 0.9
    frame[20:24, 30:34] = 0.95
    probs[20:24, 30:34] = 0.8
    frame[35, 45] = 0.9
    probs[35, 45] = 0.7
    probs[30:33, 2:5] = 0.3
    return frame, probs


def test_threshold_only_matches_comparison():
    frame, probs = _scene()
    for thr in (0.2, 0.5, 0.75, 0.85):
        np.testing.assert_array_equal(filter_mask(probs, None, MaskFilter(threshold=thr)), probs >= thr)


def test_polarity_keeps_dark_or_light_components():
    frame, probs = _scene()
    dark = filter_mask(probs, frame, MaskFilter(polarity="dark"))
    light = filter_mask(probs, frame, MaskFilter(polarity="light"))
    expected_dark = np.zeros_like(dark)
    expected_dark[5:8, 5:8] = True
    np.testing.assert_array_equal(dark, expected_dark)
    np.testing.assert_array_equal(light, (probs >= 0.5) & ~expected_dark)


def test_min_size_drops_small_components():
    frame, probs = _scene()
    kept = filter_mask(probs, frame, MaskFilter(min_size=10))
    expected = np.zeros_like(kept)
    expected[20:24, 30:34] = True  # 16 px; the 9 px and 1 px blobs go
    np.testing.assert_array_equal(kept, expected)


def test_dilation_matches_naive_disc():
    mask = np.zeros((15, 15), bool)
    mask[7, 7] = True
    grown = dilate(mask, 2)
    yy, xx = np.mgrid[:15, :15]
    naive = (yy - 7) ** 2 + (xx - 7) ** 2 <= 4
    np.testing.assert_array_equal(grown, naive)
    assert dilate(mask, 0) is not None and dilate(mask, 0).sum() == 1


def test_bad_filter_values_raise():
    with pytest.raises(ValueError, match="polarity"):
        MaskFilter(polarity="grey")
    with pytest.raises(ValueError, match="threshold"):
        MaskFilter(threshold=1.5)
    frame, probs = _scene()
    with pytest.raises(ValueError, match="polarity filter needs the frame"):
        filter_mask(probs, None, MaskFilter(polarity="dark"))


def test_fig5_colours_each_case():
    pred = np.array([[1, 1, 0, 0]], bool)
    true = np.array([[1, 0, 1, 0]], bool)
    colours, painted = fig5_layer(pred, true)
    assert tuple(colours[0, 0]) == AGREED_RGB
    assert tuple(colours[0, 1]) == FALSE_POSITIVE_RGB
    assert tuple(colours[0, 2]) == MISSED_RGB
    assert painted.tolist() == [[True, True, True, False]]


def test_blend_against_formula_and_untouched_elsewhere():
    frame = np.full((2, 2, 3), 100, np.uint8)
    colours = np.zeros_like(frame)
    colours[0, 0] = (200, 0, 50)
    painted = np.array([[True, False], [False, False]])
    out = blend(frame, colours, painted, 0.25)
    assert tuple(out[0, 0]) == (125, 75, 88)  # 100 + 0.25 * (c - 100), rounded
    assert (out[1:, :] == 100).all() and (out[0, 1] == 100).all()


def test_overlay_uses_fig5_when_corrected():
    frame, probs = _scene()
    pred = probs >= 0.5
    true = np.zeros_like(pred)
    true[5:8, 5:8] = True
    true[0, 0] = True
    out = overlay(frame, pred, true, opacity=1.0)
    assert tuple(out[6, 6]) == AGREED_RGB
    assert tuple(out[21, 31]) == FALSE_POSITIVE_RGB
    assert tuple(out[0, 0]) == MISSED_RGB
    assert tuple(out[15, 15]) == (128, 128, 128)


def test_magnify_crop_and_clamp():
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)
    out = magnify(img, (5, 5), size=4, factor=3)
    assert out.shape == (12, 12)
    np.testing.assert_array_equal(out[::3, ::3], img[3:7, 3:7])
    corner = magnify(img, (0, 0), size=4, factor=1)
    np.testing.assert_array_equal(corner, img[:4, :4])


def test_every_fig5_colour_shows_on_a_black_frame_at_the_default_opacity():
    """The false-positive blue is as visible on dark film as the other colours (issue 14, item 6)."""
    black = np.zeros((1, 1, 3), np.uint8)
    painted = np.ones((1, 1), bool)

    def luma(rgb) -> float:
        r, g, b = blend(black, np.array(rgb, np.uint8).reshape(1, 1, 3), painted, 0.55)[0, 0].astype(float)
        return 0.299 * r + 0.587 * g + 0.114 * b

    assert luma(FALSE_POSITIVE_RGB) >= luma(AGREED_RGB) > 50
    assert luma(FALSE_POSITIVE_RGB) >= luma(MISSED_RGB)
