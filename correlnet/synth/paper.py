"""The paper's blotch generator (Sec. 4.1, Fig. 3): thresholded fractal Perlin noise.

A fractal Perlin field in [-1, 1] (8x8 periods on 256x256, 5 octaves, lacunarity 2,
persistence 0.5) is drawn for one frame; pixels where it lies in [-0.8, -0.65] become dark
defects and pixels in [0.65, 0.8] light ones. Each connected blotch gets one uniform colour
(dark near black, light near white, ranges in `SynthConfig`) and one random opacity, and is
alpha-blended into the frame. Each of the three frames gets its own independent field.

Beyond the paper (full generator only, `SynthConfig.blotch_periods` / `blotch_filled_prob`): the
period varies per frame (16, 32 or 64 px) and some frames get solid blotches (the whole region
beyond +-0.65) instead of the band's ring-like shapes, since real blotches vary in size and are
often filled.
"""

from __future__ import annotations

import cv2
import numpy as np

from correlnet.synth.noise import fractal_perlin
from correlnet.synth.config import SynthConfig

__all__ = ["blotch_field", "band_masks", "draw_blotches"]


def blotch_field(
    shape: tuple[int, int], cfg: SynthConfig, rng: np.random.Generator, period_px: float | None = None
) -> np.ndarray:
    """The fractal Perlin field behind the blotches of one frame.

    Returns (H, W) float32 in [-1, 1]. The number of periods scales with the frame so a
    period stays `period_px` (default `cfg.perlin_period_px`) pixels (8 periods on 256 px,
    Sec. 4.1). Periods that are powers of two keep every octave on whole-pixel cells (fast path).
    """
    h, w = shape
    period = cfg.perlin_period_px if period_px is None else period_px
    res = (h / period, w / period)
    return fractal_perlin(
        (h, w),
        res=res,
        octaves=cfg.perlin_octaves,
        persistence=cfg.perlin_persistence,
        lacunarity=cfg.perlin_lacunarity,
        rng=rng,
    )


def band_masks(field: np.ndarray, cfg: SynthConfig, filled: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(dark, light) boolean masks of the noise bands (Sec. 4.1), each (H, W).

    `filled` (beyond the paper) keeps everything beyond the inner thresholds: solid blotches.
    """
    if filled:
        return field <= cfg.dark_band[1], field >= cfg.light_band[0]
    dark = (field >= cfg.dark_band[0]) & (field <= cfg.dark_band[1])
    light = (field >= cfg.light_band[0]) & (field <= cfg.light_band[1])
    return dark, light


def draw_blotches(image: np.ndarray, cfg: SynthConfig, rng: np.random.Generator) -> None:
    """Blend dark and light blotches into `image` ((H, W) float32, in place).

    With `SynthConfig.paper()` the random draws are: the field, then colours and opacities;
    the size and filled variants (full generator) draw their coins only when enabled.
    """
    period = float(rng.choice(cfg.blotch_periods)) if cfg.blotch_periods else None
    field = blotch_field(image.shape, cfg, rng, period)
    filled = cfg.blotch_filled_prob > 0 and rng.random() < cfg.blotch_filled_prob
    dark, light = band_masks(field, cfg, filled)
    _blend_components(image, dark, cfg.dark_colour, cfg.blotch_opacity, rng)
    _blend_components(image, light, cfg.light_colour, cfg.blotch_opacity, rng)


def _blend_components(
    image: np.ndarray,
    binary: np.ndarray,
    colour_range: tuple[float, float],
    opacity_range: tuple[float, float],
    rng: np.random.Generator,
) -> None:
    """One uniform colour and one opacity per 8-connected component of `binary`."""
    count, labels = cv2.connectedComponents(binary.astype(np.uint8), connectivity=8)
    if count <= 1:
        return
    colour = rng.uniform(*colour_range, size=count).astype(np.float32)
    alpha = rng.uniform(*opacity_range, size=count).astype(np.float32)
    alpha[0] = 0.0  # label 0 is the background
    inside = labels > 0
    lab = labels[inside]
    a = alpha[lab]
    image[inside] = image[inside] * (1.0 - a) + a * colour[lab]
