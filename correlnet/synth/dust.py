"""Dust specks and dirt: small irregular spots with real size statistics.

Hand annotation of real 35 mm scans puts the median dust speck near 53 px^2 at 5K width,
about 6 px^2 at 2K width; areas are close to log-normal. Each speck's area is drawn from a
log-normal with that median, and its shape is grown by Eden growth (random accretion of a
4-connected neighbour), which gives compact but ragged outlines like real dust rather than
discs. Specks are dark (dust on the print) or light (dust on the negative), slightly blurred
because scans are never perfectly sharp.
"""

from __future__ import annotations

import cv2
import numpy as np

from correlnet.synth.config import SynthConfig

__all__ = ["sample_speck_areas", "speck_shape", "draw_dust"]

_STEPS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def sample_speck_areas(count: int, cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """`count` speck areas in pixels (int, >= 1, <= cfg.dust_max_area), log-normal."""
    areas = rng.lognormal(np.log(cfg.dust_median_area), cfg.dust_log_sigma, size=count)
    return np.clip(np.rint(areas), 1, cfg.dust_max_area).astype(np.int64)


def speck_shape(area: int, rng: np.random.Generator) -> np.ndarray:
    """A 4-connected boolean patch with exactly `area` True pixels (Eden growth)."""
    cells = {(0, 0)}
    frontier = list(_STEPS)
    picks = rng.random(4 * area + 8)
    i = 0
    while len(cells) < area:
        j = int(picks[i % len(picks)] * len(frontier))
        i += 1
        cell = frontier[j]
        frontier[j] = frontier[-1]
        frontier.pop()
        if cell in cells:
            continue
        cells.add(cell)
        frontier.extend((cell[0] + dy, cell[1] + dx) for dy, dx in _STEPS)
    ys, xs = np.array(sorted(cells)).T
    patch = np.zeros((ys.max() - ys.min() + 1, xs.max() - xs.min() + 1), dtype=bool)
    patch[ys - ys.min(), xs - xs.min()] = True
    return patch


def draw_dust(image: np.ndarray, cfg: SynthConfig, rng: np.random.Generator) -> None:
    """Blend dust specks into `image` ((H, W) float32, in place)."""
    h, w = image.shape
    rate = rng.uniform(*cfg.dust_per_256) * (h * w) / 256.0**2
    for area in sample_speck_areas(int(rng.poisson(rate)), cfg, rng):
        alpha = speck_shape(int(area), rng).astype(np.float32)
        alpha *= rng.uniform(*cfg.dust_opacity)
        sigma = rng.uniform(*cfg.dust_edge_blur)
        if sigma > 0.3:
            alpha = cv2.GaussianBlur(np.pad(alpha, 2), (0, 0), sigma)
        dark = rng.random() < cfg.dust_dark_prob
        colour = rng.uniform(*(cfg.dark_colour if dark else cfg.light_colour))
        top = int(rng.integers(-alpha.shape[0] // 2, h))
        left = int(rng.integers(-alpha.shape[1] // 2, w))
        blend_patch(image, alpha, colour, top, left)


def blend_patch(image: np.ndarray, alpha: np.ndarray, colour: float, top: int, left: int) -> None:
    """Alpha-blend a uniform `colour` through `alpha` placed at (top, left), clipped to the image."""
    h, w = image.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + alpha.shape[0], h), min(left + alpha.shape[1], w)
    if y0 >= y1 or x0 >= x1:
        return
    a = alpha[y0 - top : y1 - top, x0 - left : x1 - left]
    window = image[y0:y1, x0:x1]
    window += a * (colour - window)
