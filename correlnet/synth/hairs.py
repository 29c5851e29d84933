"""Hairs and fibres: thin curved strokes, dark or light.

A hair is a path of unit steps whose heading drifts by a constant curvature plus a random
walk (`SynthConfig.hair_curl`), rasterised anti-aliased 1 or 2 px wide. Hairs lie on the
film for a single frame in our generator (they usually move or vanish between frames), so
like the blotches they are drawn independently in each frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from correlnet.synth.config import SynthConfig
from correlnet.synth.dust import blend_patch

__all__ = ["hair_path", "draw_hairs"]

_SUBPIXEL_BITS = 4  # cv2.polylines fixed-point: coordinates are multiplied by 2**4


def hair_path(length: float, curl: float, rng: np.random.Generator) -> np.ndarray:
    """(N, 2) float (x, y) points of a curved stroke starting at the origin, 1 px apart."""
    steps = max(int(length), 2)
    curvature = rng.normal(0.0, 0.03)
    turn = curvature + rng.normal(0.0, curl, size=steps)
    heading = rng.uniform(0.0, 2.0 * np.pi) + np.cumsum(turn)
    points = np.cumsum(np.stack([np.cos(heading), np.sin(heading)], axis=1), axis=0)
    return np.vstack([[0.0, 0.0], points])


def draw_hairs(image: np.ndarray, cfg: SynthConfig, rng: np.random.Generator) -> None:
    """Blend hairs into `image` ((H, W) float32, in place)."""
    h, w = image.shape
    for _ in range(int(rng.poisson(cfg.hairs_per_256 * h * w / 256.0**2))):
        path = hair_path(rng.uniform(*cfg.hair_length), cfg.hair_curl, rng)
        path += (rng.uniform(0, w), rng.uniform(0, h))
        thickness = 1 if rng.random() < 0.7 else 2
        low = np.floor(path.min(axis=0)).astype(int) - 3
        high = np.ceil(path.max(axis=0)).astype(int) + 3
        canvas = np.zeros((high[1] - low[1], high[0] - low[0]), dtype=np.uint8)
        fixed = np.rint((path - low) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
        cv2.polylines(canvas, [fixed], False, 255, thickness, cv2.LINE_AA, _SUBPIXEL_BITS)
        alpha = canvas.astype(np.float32) * (rng.uniform(*cfg.hair_opacity) / 255.0)
        dark = rng.random() < cfg.hair_dark_prob
        colour = rng.uniform(*(cfg.dark_colour if dark else cfg.light_colour))
        blend_patch(image, alpha, colour, int(low[1]), int(low[0]))
