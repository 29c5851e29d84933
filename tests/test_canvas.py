"""webapp/canvas.py: canvas JSON -> full-resolution mask, against naive per-pixel references."""

from __future__ import annotations

import numpy as np
import pytest

from webapp.canvas import (ADD_COLOR, ERASE_COLOR, TOGGLE_COLOR, CanvasGeometry, apply_drawing,
                           drawing_objects)

GEOM = CanvasGeometry(canvas_w=100, canvas_h=50, image_w=200, image_h=100)  # shown at half size


def _naive_capsule(shape, a, b, radius):
    """Pixel centres within radius of segment a-b (image coordinates): distance to the segment
    evaluated on the whole grid, independently of the windowed code under test."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    p = np.stack([xx + 0.5, yy + 0.5], axis=-1)
    a, b = np.asarray(a, float), np.asarray(b, float)
    t = np.clip(((p - a) @ (b - a)) / np.dot(b - a, b - a), 0, 1)
    return np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1) <= radius


def _path(points, colour, width):
    cmds = [["M", *points[0]]] + [["L", *p] for p in points[1:]]
    return {"type": "Path", "path": cmds, "stroke": colour, "fill": None, "strokeWidth": width}


def test_scaled_stroke_maps_exactly_to_full_resolution():
    drawing = {"objects": [_path([(10, 20), (40, 26)], ADD_COLOR, 4)]}
    base = np.zeros((100, 200), bool)
    got = apply_drawing(drawing, GEOM, base)
    expected = _naive_capsule(base.shape, (20, 40), (80, 52), radius=4.0)  # x2 coords, width 8
    np.testing.assert_array_equal(got, expected)
    assert not base.any(), "the base mask must not be modified in place"


def test_erase_after_add_in_drawing_order_and_rest_untouched():
    base = np.zeros((100, 200), bool)
    base[80:90, 150:160] = True  # an existing defect far from the strokes
    drawing = {"objects": [_path([(10, 20), (40, 20)], ADD_COLOR, 6),
                           _path([(25, 10), (25, 30)], ERASE_COLOR, 2)]}
    got = apply_drawing(drawing, GEOM, base)
    add = _naive_capsule(base.shape, (20, 40), (80, 40), 6.0)
    erase = _naive_capsule(base.shape, (50, 20), (50, 60), 2.0)
    np.testing.assert_array_equal(got, (base | add) & ~erase)
    # Drawn the other way round, the add wins where they cross.
    drawing["objects"].reverse()
    np.testing.assert_array_equal(apply_drawing(drawing, GEOM, base), (base & ~erase) | add)


def test_each_move_command_starts_a_new_stroke():
    """The canvas sends M then L commands; a second M lifts the brush (nothing between the two parts)."""
    two = {"type": "Path", "stroke": ADD_COLOR, "fill": None, "strokeWidth": 3,
           "path": [["M", 10, 10], ["L", 30, 10], ["M", 10, 30], ["L", 30, 30]]}
    base = np.zeros((100, 200), bool)
    got = apply_drawing({"objects": [two]}, GEOM, base)
    expected = (_naive_capsule(base.shape, (20, 20), (60, 20), 3.0)
                | _naive_capsule(base.shape, (20, 60), (60, 60), 3.0))
    np.testing.assert_array_equal(got, expected)


def test_rectangle_fills_exactly_the_dragged_box():
    # As the canvas sends it: left/top the top-left corner, strokeWidth 0.
    rect = {"type": "Rect", "left": 10, "top": 5, "width": 20, "height": 10, "strokeWidth": 0,
            "stroke": ADD_COLOR, "fill": ADD_COLOR}
    got = apply_drawing({"objects": [rect]}, GEOM, np.zeros((100, 200), bool))
    expected = np.zeros((100, 200), bool)
    expected[10:30, 20:60] = True  # canvas [10, 30] x [5, 15], x2
    np.testing.assert_array_equal(got, expected)


def test_polygon_fill_matches_naive_point_in_triangle():
    tri = [(5.3, 5.1), (45.2, 10.7), (20.1, 40.3)]
    poly = {"type": "Polygon", "points": [{"x": x, "y": y} for x, y in tri], "stroke": ERASE_COLOR,
            "fill": ERASE_COLOR, "strokeWidth": 1}
    base = np.ones((100, 200), bool)
    got = apply_drawing({"objects": [poly]}, GEOM, base)
    (ax, ay), (bx, by), (cx, cy) = [(2 * x, 2 * y) for x, y in tri]
    expected = np.ones_like(base)
    for i in range(100):
        for j in range(200):
            px, py = j + 0.5, i + 0.5
            d1 = (px - bx) * (ay - by) - (ax - bx) * (py - by)
            d2 = (px - cx) * (by - cy) - (bx - cx) * (py - cy)
            d3 = (px - ax) * (cy - ay) - (cx - ax) * (py - ay)
            inside = (d1 < 0 and d2 < 0 and d3 < 0) or (d1 > 0 and d2 > 0 and d3 > 0)
            expected[i, j] = not inside
    np.testing.assert_array_equal(got, expected)


def _click(cx, cy, radius=3):
    # What the point tool sends (webapp/frontend/review_canvas.js): the circle's box from its top-left.
    return {"type": "Circle", "left": cx - radius, "top": cy - radius, "radius": radius, "width": 2 * radius,
            "height": 2 * radius, "strokeWidth": 0, "stroke": TOGGLE_COLOR, "fill": TOGGLE_COLOR}


def test_click_rejects_a_kept_defect_and_accepts_a_dropped_one():
    predicted = np.zeros((100, 200), bool)
    predicted[10:14, 10:16] = True  # blob A, currently in the mask
    predicted[60:63, 100:103] = True  # blob B, not in the mask
    base = np.zeros_like(predicted)
    base[10:14, 10:16] = True
    base[90, 190] = True  # a restorer's pixel, never touched by clicks
    drawing = {"objects": [_click(6.5, 6.0), _click(50.7, 30.8)]}
    got = apply_drawing(drawing, GEOM, base, predicted=predicted)
    expected = np.zeros_like(base)
    expected[60:63, 100:103] = True
    expected[90, 190] = True
    np.testing.assert_array_equal(got, expected)
    far = {"objects": [_click(80, 5)]}
    np.testing.assert_array_equal(apply_drawing(far, GEOM, base, predicted=predicted), base)


def test_foreign_colours_ignored_and_bad_base_raises():
    drawing = {"objects": [_path([(10, 20), (40, 20)], "#123456", 5)]}
    base = np.zeros((100, 200), bool)
    assert not apply_drawing(drawing, GEOM, base).any()
    spaced = {"objects": [_path([(10, 20), (40, 20)], ADD_COLOR.replace(",", ", ").upper(), 5)]}
    assert apply_drawing(spaced, GEOM, base).any(), "colour spelling must not matter"
    with pytest.raises(ValueError, match="frame's size"):
        apply_drawing(drawing, GEOM, np.zeros((50, 100), bool))


def test_drawing_objects_change_with_objects_only():
    a = {"objects": [_path([(1, 2), (3, 4)], ADD_COLOR, 2)], "background": ""}
    b = {"objects": [_path([(1, 2), (3, 4)], ADD_COLOR, 2)], "background": "#fff"}
    c = {"objects": [_path([(1, 2), (3, 5)], ADD_COLOR, 2)]}
    assert drawing_objects(a) == drawing_objects(b) != drawing_objects(c)
    assert drawing_objects(None) == drawing_objects({"objects": []})


def test_geometry_fit_keeps_aspect_and_enlarges_narrow_films():
    g = CanvasGeometry.fit(1920, 1080, 960)
    assert (g.canvas_w, g.canvas_h, g.sx, g.sy) == (960, 540, 2.0, 2.0)
    g = CanvasGeometry.fit(480, 368, 960)  # "fit (960 px)" showed this 1903 scan at 480 px
    assert (g.canvas_w, g.canvas_h, g.sx, g.sy) == (960, 736, 0.5, 0.5)


def test_enlarged_canvas_maps_strokes_back_to_the_smaller_image():
    """"fit (960 px)" now enlarges a narrow film: canvas points map to image points at sx = sy = 0.5."""
    geom = CanvasGeometry.fit(100, 50, 200)
    assert (geom.sx, geom.sy) == (0.5, 0.5)
    drawing = {"objects": [_path([(20, 40), (80, 52)], ADD_COLOR, 8)]}
    got = apply_drawing(drawing, geom, np.zeros((50, 100), bool))
    np.testing.assert_array_equal(got, _naive_capsule((50, 100), (10, 20), (40, 26), radius=2.0))
