"""The static-scene probe: what a detector flags when nothing moves and nothing is a defect, but one speck.

Issue 12's plainest symptom: on identical frames of a static scene (only sensor noise differs), the
session-5 model flagged 83 % of a 2-px dark vertical line and 26 % of a vertical edge, but 3 % of a
horizontal bar of the same contrast: it marked vertical lines whatever the neighbours said. A
detector that follows the principle (what persists is scene, what is in one frame is a defect)
flags nothing here except a speck that is in the middle frame only.

`static_scene` builds such a triplet: a smooth texture with thin dark and light lines at 0, 45, 90
and 135 degrees, a vertical and a horizontal step edge, small dark and light blobs, all in the three
frames, with independent Gaussian noise per frame, and one light speck in the middle frame only.
`probe` reports the share of each structure's pixels flagged, the share of all non-speck pixels
flagged, and the share of the speck found.

`faint_specks` / `speck_sensitivity` ask the other half of the question: how faint a one-frame speck a
detector still finds when nothing else differs. Real dust on the 1903/1906 scans is small and faint
(the annotated marks: median 7 px, median peak difference from the compensated neighbours 0.11), so
a detector that needs 0.3 misses most of it even on a static shot.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from correlnet import DEFECT_THRESHOLD
from correlnet.prediction import predict_triplet_tiled
from correlnet.tiling import TilingConfig

__all__ = ["StaticScene", "static_scene", "probe", "faint_specks", "speck_sensitivity"]


@dataclass
class StaticScene:
    """frames (3, H, W) float32 in [0, 1]; structures: name -> (H, W) bool of the scene structure in
    every frame; speck: (H, W) bool, the one-frame defect of the middle frame."""

    frames: np.ndarray
    structures: dict[str, np.ndarray]
    speck: np.ndarray


def _line(h: int, w: int, angle_deg: float, offset: float, width: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    theta = np.deg2rad(angle_deg)
    d = (xx - w / 2) * np.sin(theta) - (yy - h / 2) * np.cos(theta) - offset  # distance across the line
    return np.abs(d) <= width / 2


def static_scene(size: int = 192, noise: float = 0.005, seed: int = 0) -> StaticScene:
    """A static probe triplet of side `size` (>= 96), noise std `noise`, seeded."""
    if size < 96:
        raise ValueError(f"size must be >= 96 px to hold every structure; got {size}")
    rng = np.random.default_rng(seed)
    coarse = rng.random((size // 16 + 2, size // 16 + 2)).astype(np.float32)
    base = 0.35 + 0.3 * cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    h = w = size
    structures: dict[str, np.ndarray] = {}
    for k, angle in enumerate((90.0, 0.0, 45.0, 135.0)):  # 90 = vertical, 0 = horizontal
        for sign, name in ((-1, "dark"), (1, "light")):
            offset = (-0.3 + 0.2 * k + (0.07 if sign > 0 else 0.0)) * size
            m = _line(h, w, angle, offset, 2.0)
            structures[f"{name} line {int(angle)} deg"] = m
            base[m] = 0.08 if sign < 0 else 0.92
    edge_v = np.zeros((h, w), bool)
    edge_v[:, int(0.85 * w) :] = True
    base[edge_v] += 0.2
    structures["vertical edge"] = np.abs(np.arange(w) - int(0.85 * w))[None, :].repeat(h, 0) <= 1
    edge_h = np.zeros((h, w), bool)
    edge_h[int(0.9 * h) :, :] = True
    base[edge_h] -= 0.2
    structures["horizontal edge"] = np.abs(np.arange(h) - int(0.9 * h))[:, None].repeat(w, 1) <= 1
    yy, xx = np.mgrid[:h, :w]
    blobs = np.zeros((h, w), bool)
    for k in range(6):
        cy, cx, r = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w, rng.uniform(1.5, 4.0)
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        base[m] = 0.05 if k % 2 == 0 else 0.95
        blobs |= m
    structures["static blobs"] = blobs
    base = np.clip(base, 0, 1).astype(np.float32)
    frames = np.clip(base[None] + rng.normal(0.0, noise, (3, h, w)), 0, 1).astype(np.float32)
    cy, cx = int(0.2 * h), int(0.6 * w)
    speck = (yy - cy) ** 2 + (xx - cx) ** 2 <= 2.5**2
    frames[1][speck] = 0.97
    return StaticScene(frames, structures, speck)


@torch.inference_mode()
def probe(model: nn.Module, scene: StaticScene, threshold: float = DEFECT_THRESHOLD,
          device: torch.device | str = "cpu") -> dict[str, float]:
    """{"<structure>": share of its pixels flagged, ..., "flagged_share": share of all pixels away from
    the speck (beyond 3 px) flagged, "speck_found": share of the speck flagged}."""
    probs = predict_triplet_tiled(model, scene.frames, TilingConfig(), torch.device(device))
    pred = probs >= threshold
    near = cv2.dilate(scene.speck.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    out = {name: float(pred[m & ~near].mean()) for name, m in scene.structures.items()}
    out["flagged_share"] = float(pred[~near].mean())
    out["speck_found"] = float(pred[scene.speck].mean())
    return out


def faint_specks(contrast: float, size: int = 192, radius: float = 1.5, blur: float = 0.7, noise: float = 0.005,
                 seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A static textured triplet ((3, size, size) float32, equal up to noise) with a grid of 16 round
    specks of `radius` px in the middle frame only, optically blurred (Gaussian `blur` px) so that
    each speck's peak differs from the scene by exactly `contrast` (darker on light ground, lighter
    on dark). Returns (frames, speck centres (y, x))."""
    if not 0 <= contrast <= 0.5 or size < 96:
        raise ValueError(f"contrast must lie in [0, 0.5] and size be >= 96; got {contrast}, {size}")
    rng = np.random.default_rng(seed)
    coarse = rng.random((size // 16 + 2, size // 16 + 2)).astype(np.float32)
    base = 0.3 + 0.4 * cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    frames = np.clip(base[None] + rng.normal(0.0, noise, (3, size, size)), 0, 1).astype(np.float32)
    step = size // 5
    centres = [(step * (1 + i), step * (1 + j)) for i in range(4) for j in range(4)]
    alpha = np.zeros((size, size), np.float32)
    yy, xx = np.mgrid[:size, :size]
    for y, x in centres:
        alpha[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = 1.0
    if blur > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), blur)
    alpha /= max(float(alpha.max()), 1e-6)
    sign = np.where(base > 0.5, -1.0, 1.0).astype(np.float32)
    frames[1] = np.clip(frames[1] + sign * contrast * alpha, 0, 1)
    return frames, centres


@torch.inference_mode()
def speck_sensitivity(model: nn.Module, contrasts: tuple[float, ...] = (0.05, 0.08, 0.11, 0.15, 0.2, 0.3, 0.5),
                      threshold: float = DEFECT_THRESHOLD, seeds: int = 2, noise: float = 0.01,
                      device: torch.device | str = "cpu") -> dict[float, dict[str, float]]:
    """{contrast: {"found": share of specks with a flagged pixel within 2 px of the centre,
    "flagged_share": share of the pixels away from every speck (beyond 4 px) flagged}} over `seeds`
    scenes. noise: per-frame noise std, default 0.01, between the grain of the 1903 (0.007) and 1906
    (0.015) scans (robust std of their motion-compensated frame differences / sqrt 2)."""
    out = {}
    for contrast in contrasts:
        found, flagged = [], []
        for seed in range(seeds):
            frames, centres = faint_specks(contrast, noise=noise, seed=seed)
            pred = predict_triplet_tiled(model, frames, TilingConfig(), torch.device(device)) >= threshold
            near = np.zeros(pred.shape, bool)
            for y, x in centres:
                found.append(bool(pred[y - 2 : y + 3, x - 2 : x + 3].any()))
                near[max(y - 4, 0) : y + 5, max(x - 4, 0) : x + 5] = True
            flagged.append(float(pred[~near].mean()))
        out[float(contrast)] = {"found": float(np.mean(found)), "flagged_share": float(np.mean(flagged))}
    return out
