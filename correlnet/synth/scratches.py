"""Persistent vertical line scratches with slow drift and a damped-sinusoid cross profile.

A scratch is cut along the film as it runs through the projector or printer, so it appears
in consecutive frames at almost the same horizontal position: here it is present in all
three frames of the triplet, drifting by a few tenths of a pixel per frame (plus a slow
sideways wander along its length). Its cross profile is a damped sinusoid,
``A * exp(-|d| / tau) * cos(2 pi d / lambda)`` of the distance ``d`` to its centre line: a
bright or dark core with faint opposite-sign fringes, as seen in scans of real scratches.

How the model is meant to see them. Unlike blotches and dust, a scratch *does* repeat in the
neighbouring frames, so the temporal test "is it in the other frames?" alone would call it
scene content. It is labelled as a defect anyway (in every frame where it is drawn, and in
particular in the centre frame, the target), and the model can still tell it apart: the
scratch stays fixed relative to the frame while the scene moves, so the local correlation
between the centre frame and its neighbours matches the scene's displacement everywhere
except along a thin line whose best match is at zero displacement and that cannot be tracked
with the scene content around it; and its shape, a long, one- to three-pixel-wide vertical
line with a ringing profile, is one that scene content rarely has. When the camera is static
the temporal cue vanishes and only the shape remains, which is why the shape is kept
distinctive (thin, near-vertical, long).
"""

from __future__ import annotations

import numpy as np

from correlnet.synth.config import SynthConfig

__all__ = ["scratch_profile", "draw_scratches"]


def scratch_profile(d: np.ndarray, tau: float, wavelength: float) -> np.ndarray:
    """Damped sinusoid of the signed distance `d` (px) to the scratch centre; 1 at d = 0."""
    return np.exp(-np.abs(d) / tau) * np.cos(2.0 * np.pi * d / wavelength)


def draw_scratches(frames: np.ndarray, cfg: SynthConfig, rng: np.random.Generator) -> None:
    """Add persistent scratches to a triplet ((3, H, W) float32, in place, then clipped)."""
    _, h, w = frames.shape
    if rng.random() >= cfg.scratch_prob:
        return
    for _ in range(int(rng.integers(1, cfg.scratch_max_count + 1))):
        _draw_one(frames, cfg, rng, h, w)
    np.clip(frames, 0.0, 1.0, out=frames)


def _draw_one(frames: np.ndarray, cfg: SynthConfig, rng: np.random.Generator, h: int, w: int) -> None:
    tau = rng.uniform(*cfg.scratch_width)
    wavelength = tau * rng.uniform(3.0, 6.0)
    reach = int(np.ceil(6.0 * tau)) + 2  # exp(-6) < 0.3 %: nothing visible beyond
    sign = -1.0 if rng.random() < cfg.scratch_dark_prob else 1.0
    amplitude = sign * rng.uniform(*cfg.scratch_amplitude)
    if rng.random() < cfg.scratch_full_height_prob:
        top, bottom = 0, h
    else:
        top = int(rng.integers(0, max(h // 2, 1)))
        bottom = int(rng.integers(top + max(h // 4, 1), h + 1))
    rows = np.arange(top, bottom, dtype=np.float32)
    wander = rng.uniform(0.0, 1.5) * np.sin(2 * np.pi * rows / rng.uniform(200, 800) + rng.uniform(0, 6.3))
    x0 = rng.uniform(0, w)
    velocity = rng.normal(0.0, cfg.scratch_drift)
    for t in range(frames.shape[0]):
        centre = x0 + velocity * (t - 1) + rng.normal(0.0, 0.2) + wander
        c0 = max(int(np.floor(centre.min())) - reach, 0)
        c1 = min(int(np.ceil(centre.max())) + reach + 1, w)
        if c0 >= c1:
            continue
        d = np.arange(c0, c1, dtype=np.float32)[None, :] - centre[:, None]
        strength = amplitude * rng.uniform(0.8, 1.0)  # slight change of density frame to frame
        frames[t, top:bottom, c0:c1] += strength * scratch_profile(d, tau, wavelength)
