"""The scene-feature trap: dark or light blobs that belong to the scene, not to the film.

The paper's point (Sec. 1, Fig. 1) is that a single-frame detector cannot tell a dark spot painted
in the scene from a blotch on the film; a defect is present in one frame only, while a scene
feature is present in all three and moves with the camera. `add_scene_blobs` paints blobs that
look like the synthetic defects (uniform dark or light colour, partly transparent, irregular
outline) into all three clean frames, displaced by the frames' global motion, so that the only
cue separating them from defects is their persistence across frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SceneBlobConfig:
    """Blobs per triplet and their look; sizes are radii in pixels (defect-sized on 256 px crops)."""

    count: int = 6
    min_radius: float = 4.0
    max_radius: float = 18.0
    dark_range: tuple[float, float] = (0.0, 0.15)  # like the paper's dark defects (Sec. 4.1)
    light_range: tuple[float, float] = (0.85, 1.0)
    alpha_range: tuple[float, float] = (0.7, 1.0)


def global_shift(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Integer (dy, dx) such that b(y, x) ~ a(y - dy, x - dx): the camera motion from a to b.

    a, b: (H, W) float in [0, 1]. Phase correlation of the Hann-windowed frames, integer peak
    (OpenCV's sub-pixel centroid is biased on smooth images, and blobs are pasted on whole pixels).
    """
    win = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    fa = np.fft.rfft2((a - a.mean()) * win)
    fb = np.fft.rfft2((b - b.mean()) * win)
    cross = fb * np.conj(fa)
    r = np.fft.irfft2(cross / np.maximum(np.abs(cross), 1e-12), s=a.shape)
    dy, dx = np.unravel_index(int(np.argmax(r)), r.shape)
    h, w = a.shape
    return int(dy - h if dy > h // 2 else dy), int(dx - w if dx > w // 2 else dx)


def blob_shape(radius: float, rng: np.random.Generator) -> np.ndarray:
    """(S, S) bool irregular blob: an ellipse whose radius wobbles with the angle."""
    size = int(np.ceil(radius * 1.6)) * 2 + 1
    c = size // 2
    yy, xx = np.mgrid[:size, :size].astype(np.float32) - c
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    aspect = rng.uniform(0.5, 1.0)
    r = np.hypot(u, v / aspect)
    ang = np.arctan2(v, u)
    wobble = 1 + sum(rng.uniform(-0.15, 0.15) * np.cos(k * ang + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    return r <= radius * wobble


def _paste(frame: np.ndarray, shape: np.ndarray, top: int, left: int, value: float, alpha: float) -> np.ndarray:
    """Blend `shape` (placed with its corner at top, left; clipped at the borders) into frame.
    Returns the (H, W) bool mask of the pixels it covered."""
    h, w = frame.shape
    s = shape.shape[0]
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + s, h), min(left + s, w)
    covered = np.zeros((h, w), bool)
    if y0 >= y1 or x0 >= x1:
        return covered
    covered[y0:y1, x0:x1] = shape[y0 - top : y1 - top, x0 - left : x1 - left]
    frame[covered] = (1 - alpha) * frame[covered] + alpha * value
    return covered


def add_scene_blobs(
    clean: np.ndarray, cfg: SceneBlobConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Paint scene blobs into a clean triplet.

    clean: (3, H, W) float32 in [0, 1] (frame_prev, frame_mid, frame_next).
    Returns (frames (3, H, W) float32, blob_mask (H, W) bool of the middle frame, one (H, W) bool
    mask per blob in the middle frame). Each blob has the same shape, colour and transparency in
    the three frames and is displaced by the global motion prev -> mid and mid -> next.
    """
    if clean.ndim != 3 or clean.shape[0] != 3:
        raise ValueError(f"clean must be (3, H, W) (frame_prev, frame_mid, frame_next); got {clean.shape}")
    out = clean.astype(np.float32, copy=True)
    _, h, w = out.shape
    dy_p, dx_p = global_shift(clean[0], clean[1])
    dy_n, dx_n = global_shift(clean[1], clean[2])
    blobs = []
    for _ in range(cfg.count):
        radius = rng.uniform(cfg.min_radius, cfg.max_radius)
        shape = blob_shape(radius, rng)
        dark = rng.random() < 0.5
        value = rng.uniform(*(cfg.dark_range if dark else cfg.light_range))
        alpha = rng.uniform(*cfg.alpha_range)
        top = int(rng.integers(0, max(h - shape.shape[0], 1)))
        left = int(rng.integers(0, max(w - shape.shape[1], 1)))
        _paste(out[0], shape, top - dy_p, left - dx_p, value, alpha)
        blobs.append(_paste(out[1], shape, top, left, value, alpha))
        _paste(out[2], shape, top + dy_n, left + dx_n, value, alpha)
    mask = np.any(blobs, axis=0) if blobs else np.zeros((h, w), bool)
    return np.clip(out, 0, 1), mask, blobs
