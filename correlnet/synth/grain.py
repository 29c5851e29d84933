"""Film grain and flicker: real textures of old film that are NOT defects.

They are applied to the clean frames before any defect is drawn, and the mask never marks
them, so the model learns that grain and brightness changes between frames are normal.

Grain: white noise blurred into clumps (Gaussian, sigma `grain_size` px), rescaled to unit
standard deviation, and scaled by a strength that peaks in mid-grey (``2 sqrt(x (1 - x))``),
since grain is least visible in clipped blacks and whites. Independent in each frame.

Flicker: per frame, a global gain and offset and a small linear ramp across the frame
(uneven exposure or development), each drawn independently for the three frames.
"""

from __future__ import annotations

import cv2
import numpy as np

from correlnet.synth.config import SynthConfig

__all__ = ["add_grain", "add_flicker", "grain_field", "apply_grain"]


def grain_field(shape: tuple[int, int], cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """(H, W) float32 grain clumps of standard deviation drawn from `cfg.grain_sigma` (mid-grey)."""
    sigma = rng.uniform(*cfg.grain_sigma)
    size = rng.uniform(*cfg.grain_size)
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), size, borderType=cv2.BORDER_REFLECT)
    noise *= sigma / max(float(noise.std()), 1e-6)
    return noise


def apply_grain(image: np.ndarray, field: np.ndarray) -> None:
    """Add a `grain_field` to `image` ((H, W) float32 in [0, 1], in place, then clipped), scaled by
    the strength profile ``2 sqrt(x (1 - x))`` of the image's own values."""
    image += field * (2.0 * np.sqrt(np.clip(image * (1.0 - image), 0.0, None)))
    np.clip(image, 0.0, 1.0, out=image)


def add_grain(image: np.ndarray, cfg: SynthConfig, rng: np.random.Generator) -> None:
    """Add grain to `image` ((H, W) float32 in [0, 1], in place, then clipped)."""
    apply_grain(image, grain_field(image.shape, cfg, rng))


def add_flicker(image: np.ndarray, cfg: SynthConfig, rng: np.random.Generator) -> None:
    """Change the brightness of `image` ((H, W) float32 in [0, 1], in place, then clipped)."""
    h, w = image.shape
    gain = 1.0 + rng.normal(0.0, cfg.flicker_gain)
    offset = rng.normal(0.0, cfg.flicker_offset)
    ramp_y, ramp_x = rng.normal(0.0, cfg.flicker_ramp, size=2)
    ys = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    xs = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    image *= np.float32(gain)
    image += np.float32(offset) + np.float32(ramp_y) * ys + np.float32(ramp_x) * xs
    np.clip(image, 0.0, 1.0, out=image)
