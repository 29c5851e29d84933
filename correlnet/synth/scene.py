"""Scene content that looks like a defect and is never labelled: the counter-examples.

The paper's point (Sec. 1, Fig. 1) is that a single-frame detector cannot tell a dark spot in the scene
from a blotch on the film: a defect is in one frame only, scene content is in all three and moves with
the scene. Everything here is scene content, so nothing here is ever in a mask.

Training (`draw_scene`, the first stage of `degrade_triplet`, the one reader of `SynthConfig.scene_lines`,
`scene_blotches` and `sprites`):
- Scene lines. A persistent scratch (`correlnet.synth.scratches`) is a thin vertical line in all three
  frames, labelled a defect. Period footage is full of thin vertical *scene* lines (door frames,
  wainscoting, poles, window bars); a model that has seen many scratches and few such lines learns "thin
  vertical line = defect" and flags the whole set (what the first shipped model did on the 1903 footage).
  Their profiles are a Gaussian ridge, a double ridge (a board gap) or a soft step edge, not a scratch's
  ringing damped sinusoid. Geometry: x = x0 + slope * (y - yc) in region pixels, |slope| <= tan(4 deg),
  over the whole region or part of it, evaluated at the exact sub-pixel distance (anti-aliased).
- Scene blotches: the paper's blotch shapes and colours (`draw_blotches`) drawn identically into all
  three frames: only persistence tells them from blotches on the film. Without them the clean demo clips
  have few such spots, and a network can learn "dark blotch shape = defect" from appearance alone.
- Moving sprites (`correlnet.synth.sprites`): objects with their own motion.
They are drawn into the scene *region* the triplet is cut from (`SceneView`: `TripletDataset` cuts three
crops with the gate weave, flips and reversal), so they weave with the picture like everything in it,
while scratches are drawn after the cut, fixed to the frame. Without a view the region is the triplet.

Evaluation (`add_scene_blobs`, the scene-feature trap scored by `correlnet.scene_trap`): blobs that look
like the synthetic blotches (uniform dark or light, partly transparent, irregular outline) painted into
a clean triplet, displaced by the frames' global motion (`global_shift`), returned with their masks. They
are a different generator from the training's scene blotches on purpose: the trap tests what the model
learnt, not what it was shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from correlnet.synth.config import SynthConfig
from correlnet.synth.paper import draw_blotches
from correlnet.synth.sprites import blob_shape, draw_moving_sprites

__all__ = [
    "SceneView", "draw_scene", "draw_scene_lines", "draw_scene_blotches",
    "SceneBlobConfig", "global_shift", "add_scene_blobs",
]


@dataclass(frozen=True)
class SceneView:
    """How the triplet is cut from the scene region its counter-examples are drawn into.

    cut(region) -> triplet: the (3, H', W') region (float32 in [0, 1] once scene content is drawn,
        else as the caller gave it: float32 or uint8) to the (3, H, W) float32 triplet in [0, 1].
    texture(rng) -> (H'', W'') frame (float32 in [0, 1] or uint8) that textured sprites are cut from.
    """

    cut: Callable[[np.ndarray], np.ndarray]
    texture: Callable[[np.random.Generator], np.ndarray]


def draw_scene(region: np.ndarray, cfg: SynthConfig, rng: np.random.Generator,
               view: SceneView | None = None) -> np.ndarray:
    """The triplet with the scene's counter-examples drawn in (module docstring): `view.cut` of the
    region, or the region itself without a view ((3, H, W), the triplet; textures from its middle frame).

    Unless cfg.scene_lines, cfg.scene_blotches or cfg.sprites, nothing is drawn and no random number
    is used. Otherwise, on a float32 copy (the caller's array is never drawn on): scene lines, scene
    blotches, then (with a view, after the view's texture draws) moving sprites, in that order.
    """
    if cfg.scene_lines or cfg.scene_blotches or cfg.sprites is not None:
        clean = region
        scale = np.float32(1 / 255) if region.dtype == np.uint8 else np.float32(1)
        region = region.astype(np.float32) * scale
        draw_scene_lines(region, cfg, rng)
        draw_scene_blotches(region, cfg, rng)
        if cfg.sprites is not None:
            texture = clean[1] if view is None else view.texture(rng)
            draw_moving_sprites(region, texture, cfg.sprites, rng)
    return region if view is None else view.cut(region)


def draw_scene_lines(region: np.ndarray, cfg: SynthConfig, rng: np.random.Generator) -> None:
    """Draw scene lines into `region` ((T, H, W) float32 in [0, 1], in place, then clipped): the
    same lines in every frame, as scene content. Draws nothing (and no random numbers) unless
    `cfg.scene_lines`; then one coin `cfg.scene_lines_prob` and a Poisson count
    (mean `cfg.scene_lines_mean`)."""
    if not cfg.scene_lines or rng.random() >= cfg.scene_lines_prob:
        return
    _, h, w = region.shape
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    for _ in range(max(1, int(rng.poisson(cfg.scene_lines_mean)))):
        x0 = rng.uniform(0, w)
        slope = np.tan(np.deg2rad(rng.uniform(-4.0, 4.0)))
        d = (xx - x0 - slope * (yy - h / 2)) / np.sqrt(1 + slope * slope)  # signed distance, px
        amplitude = rng.uniform(*cfg.scene_line_amplitude) * (1.0 if rng.random() < 0.5 else -1.0)
        kind = rng.random()
        if kind < 0.5:  # a ridge: a pole, a wire, a board edge lit from one side
            sigma = rng.uniform(0.5, 2.0)
            profile = np.exp(-0.5 * (d / sigma) ** 2)
        elif kind < 0.75:  # two ridges: the gap between two boards, a frame's moulding
            sigma, gap = rng.uniform(0.5, 1.2), rng.uniform(3.0, 8.0)
            profile = np.exp(-0.5 * ((d - gap / 2) / sigma) ** 2) + np.exp(-0.5 * ((d + gap / 2) / sigma) ** 2)
        else:  # a soft step edge between two surfaces
            profile = 0.5 * (1.0 + np.tanh(d / rng.uniform(0.4, 1.5)))
        if rng.random() >= 0.6:  # partial height: the line ends inside the region
            top = int(rng.integers(0, max(h // 2, 1)))
            bottom = int(rng.integers(top + max(h // 4, 1), h + 1))
            profile[:top] = 0
            profile[bottom:] = 0
        region += (amplitude * profile).astype(np.float32)[None]
    np.clip(region, 0.0, 1.0, out=region)


def draw_scene_blotches(region: np.ndarray, cfg: SynthConfig, rng: np.random.Generator) -> None:
    """Draw the same blotches, as scene content, into every frame of `region` ((T, H, W) float32 in
    [0, 1], in place). Nothing (and no random numbers) unless `cfg.scene_blotches`; then one coin
    `cfg.scene_blotches_prob` and one seed, from which every frame redraws the identical field,
    colours and opacities."""
    if not cfg.scene_blotches or rng.random() >= cfg.scene_blotches_prob:
        return
    seed = int(rng.integers(2**63))
    for frame in region:
        draw_blotches(frame, cfg, np.random.default_rng(seed))


@dataclass(frozen=True)
class SceneBlobConfig:
    """The trap's blobs per triplet and their look; radii in pixels (defect-sized on 256 px crops)."""

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
    """Paint the trap's scene blobs into a clean triplet.

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
