"""Turn the review canvas's drawings into a full-resolution defect mask.

The canvas (webapp/review_canvas.py) returns only its objects, as fabric-style JSON (the format
streamlit-drawable-canvas used before it), and has no eraser, so the Correct tool draws "add" and
"erase" in two colours and we composite here, in drawing order, at the film's full resolution. The
canvas may show the frame scaled: a canvas point (cx, cy) maps to the continuous image point
(cx * sx, cy * sy) with sx = image_w / canvas_w; pixel (row i, col j) covers [j, j+1) x [i, i+1) and
belongs to a shape when its centre (j + 0.5, i + 0.5) does.

Objects understood, as webapp/frontend/review_canvas.js sends them (left/top: the top-left corner):
- "Path" (brush): a stroke of width strokeWidth along its "M" (move) and "L" (line) commands;
- "Rect": filled rectangle (left, top, width, height): exactly the dragged box;
- "Polygon": filled polygon from its absolute "points";
- "Circle" drawn in TOGGLE colour (point tool; left, top, width, height of its box): a click that
  toggles the predicted defect under it.

A shape may reach past the canvas: the compositing clips it to the frame (the canvas keeps a drag going
outside itself, so a rectangle started near the edge reaches it; issue 14).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from webapp.overlay import component_labels

# Translucent, so the Fig. 5 colouring of the saved mask stays visible under the strokes.
ADD_COLOR = "rgba(255,0,255,0.5)"
ERASE_COLOR = "rgba(0,255,255,0.5)"
TOGGLE_COLOR = "rgba(255,255,0,0.8)"

@dataclass(frozen=True)
class CanvasGeometry:
    """Canvas size in CSS pixels and the frame's full resolution."""

    canvas_w: int
    canvas_h: int
    image_w: int
    image_h: int

    def __post_init__(self) -> None:
        if min(self.canvas_w, self.canvas_h, self.image_w, self.image_h) <= 0:
            raise ValueError(f"canvas and image sizes must be positive, got {self}")

    @property
    def sx(self) -> float:
        return self.image_w / self.canvas_w

    @property
    def sy(self) -> float:
        return self.image_h / self.canvas_h

    @classmethod
    def fit(cls, image_w: int, image_h: int, canvas_w: int) -> "CanvasGeometry":
        """A canvas canvas_w wide with the image's aspect ratio: smaller images are enlarged ("fit
        (960 px)" showed a 480 px scan at 480 px), larger ones reduced."""
        canvas_h = max(1, round(image_h * canvas_w / image_w))
        return cls(canvas_w, canvas_h, image_w, image_h)


def drawing_objects(json_data: dict | None) -> tuple[str, ...]:
    """The drawing's objects as canonical JSON strings, in drawing order: two drawings with equal
    tuples composite to the same mask (to skip an unchanged drawing, and to compare two drawings)."""
    return tuple(json.dumps(o, sort_keys=True) for o in (json_data or {}).get("objects", []))


def _colour_key(colour: Any) -> str:
    return "".join(str(colour or "").split()).lower()


def object_operation(obj: dict) -> str | None:
    """"add", "erase", "toggle" or None (an object this tool did not draw)."""
    kind = str(obj.get("type", "")).lower()
    colour = _colour_key(obj.get("stroke")) or _colour_key(obj.get("fill"))
    if kind == "circle" and colour == _colour_key(TOGGLE_COLOR):
        return "toggle"
    if colour == _colour_key(ADD_COLOR):
        return "add"
    if colour == _colour_key(ERASE_COLOR):
        return "erase"
    return None


def _path_points(path: list) -> list[np.ndarray]:
    """Path commands ["M", x, y] / ["L", x, y] -> polylines (list of (N, 2) canvas points); each M
    starts one. Other commands are not sent by the canvas and are ignored."""
    lines: list[list[tuple[float, float]]] = []
    for cmd in path:
        op = str(cmd[0]).upper()
        if op == "M" or (op == "L" and not lines):
            lines.append([(float(cmd[1]), float(cmd[2]))])
        elif op == "L":
            lines[-1].append((float(cmd[1]), float(cmd[2])))
    return [np.asarray(line, dtype=np.float64) for line in lines]


def paint_stroke(mask: np.ndarray, points: np.ndarray, width: float, value: bool) -> None:
    """Set mask pixels whose centre lies within width/2 of the polyline (image coords, (N, 2) x,y)."""
    h, w = mask.shape
    r = max(width / 2.0, 0.5)
    pts = points if len(points) > 1 else np.vstack([points, points])
    for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:]):
        x0, x1 = int(max(np.floor(min(ax, bx) - r), 0)), int(min(np.ceil(max(ax, bx) + r), w))
        y0, y1 = int(max(np.floor(min(ay, by) - r), 0)), int(min(np.ceil(max(ay, by) + r), h))
        if x0 >= x1 or y0 >= y1:
            continue
        px = np.arange(x0, x1) + 0.5
        py = (np.arange(y0, y1) + 0.5)[:, None]
        dx, dy = bx - ax, by - ay
        seg2 = dx * dx + dy * dy
        tt = np.clip(((px - ax) * dx + (py - ay) * dy) / seg2, 0.0, 1.0) if seg2 > 0 else 0.0
        dist2 = (px - ax - tt * dx) ** 2 + (py - ay - tt * dy) ** 2
        mask[y0:y1, x0:x1][dist2 <= r * r] = value


def paint_polygon(mask: np.ndarray, points: np.ndarray, value: bool) -> None:
    """Set mask pixels whose centre is inside the polygon (even-odd rule; (N, 2) x,y image coords)."""
    h, w = mask.shape
    x0, x1 = int(max(np.floor(points[:, 0].min()), 0)), int(min(np.ceil(points[:, 0].max()), w))
    y0, y1 = int(max(np.floor(points[:, 1].min()), 0)), int(min(np.ceil(points[:, 1].max()), h))
    if x0 >= x1 or y0 >= y1:
        return
    px = np.arange(x0, x1) + 0.5
    py = (np.arange(y0, y1) + 0.5)[:, None]
    inside = np.zeros((y1 - y0, x1 - x0), bool)
    for (ax, ay), (bx, by) in zip(points, np.roll(points, -1, axis=0)):
        if ay == by:
            continue
        crosses = (ay > py) != (by > py)
        x_cross = ax + (py - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (px < x_cross)
    mask[y0:y1, x0:x1][inside] = value


def _object_box(obj: dict) -> tuple[float, float, float, float]:
    """Canvas-space (left, top, width, height) of a Rect/Circle."""
    return tuple(float(obj.get(name, 0)) for name in ("left", "top", "width", "height"))


def toggle_component(mask: np.ndarray, predicted: np.ndarray, x: float, y: float, radius: float) -> None:
    """Reject (remove) or accept (add) the predicted connected defect nearest to image point (x, y)
    within radius: removed if most of it is in mask now, added otherwise. No defect near: no-op."""
    h, w = mask.shape
    x0, x1 = int(max(x - radius, 0)), int(min(x + radius + 1, w))
    y0, y1 = int(max(y - radius, 0)), int(min(y + radius + 1, h))
    window = predicted[y0:y1, x0:x1]
    if not window.any():
        return
    ys, xs = np.nonzero(window)
    nearest = np.argmin((xs + x0 + 0.5 - x) ** 2 + (ys + y0 + 0.5 - y) ** 2)
    _, labels, _ = component_labels(predicted)
    component = labels == labels[ys[nearest] + y0, xs[nearest] + x0]
    mask[component] = mask[component].mean() <= 0.5


def apply_drawing(json_data: dict | None, geometry: CanvasGeometry, base_mask: np.ndarray,
                  predicted: np.ndarray | None = None) -> np.ndarray:
    """Composite the canvas objects, in drawing order, onto a copy of base_mask (H, W) bool at
    full resolution (H, W = geometry.image_h, image_w). predicted (H, W) bool is the mask whose
    connected defects toggle clicks act on. Returns the new (H, W) bool mask."""
    expected = (geometry.image_h, geometry.image_w)
    if base_mask.shape != expected:
        raise ValueError(f"base mask is {base_mask.shape}, expected {expected} (the frame's size)")
    mask = base_mask.astype(bool, copy=True)
    sx, sy = geometry.sx, geometry.sy
    scale = np.array([sx, sy])
    for obj in (json_data or {}).get("objects", []):
        op = object_operation(obj)
        if op is None:
            continue
        kind = str(obj.get("type", "")).lower()
        stroke_w = float(obj.get("strokeWidth", 0) or 0)
        if op == "toggle":
            if predicted is not None:
                left, top, cw, ch = _object_box(obj)
                cx, cy = (left + cw / 2) * sx, (top + ch / 2) * sy
                toggle_component(mask, predicted, cx, cy, radius=max(cw, ch) / 2 * max(sx, sy))
            continue
        value = op == "add"
        if kind == "path":
            for line in _path_points(obj.get("path") or []):
                paint_stroke(mask, line * scale, stroke_w * (sx + sy) / 2, value)
        elif kind == "rect":
            left, top, cw, ch = _object_box(obj)
            corners = np.array([[left, top], [left + cw, top], [left + cw, top + ch], [left, top + ch]])
            paint_polygon(mask, corners * scale, value)
        elif kind == "polygon" and obj.get("points"):
            points = np.array([[p["x"], p["y"]] for p in obj["points"]], dtype=np.float64)
            paint_polygon(mask, points * scale, value)
    return mask
