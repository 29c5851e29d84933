"""Evaluation on synthetic defects (as the paper's Table 1) and the scene-feature trap.

Each sequence is a clean clip (T, H, W). For evenly spaced centre frames t we take the clean triplet
(t-1, t, t+1), add synthetic defects with a generator seeded from (seed, sequence name, t), predict the
middle frame at full resolution (tiled) and count TP/FP/FN pixels against the middle frame's mask.
Precision, recall and F1 come from the TP/FP/FN totals over all frames (per sequence and overall),
as the paper reports them, not from an average of per-frame scores.

The scene-feature trap repeats the same triplets with defect-like blobs painted into the scene
(correlnet.synth.scene.add_scene_blobs: in all three frames, moving with the camera) before the defects
are added, and reports how many blob pixels the model flags (correlnet.scene_trap): the false-positive
rate a single-frame detector cannot avoid and that the correlation is meant to remove (Sec. 1, Fig. 1).
"""

from __future__ import annotations

import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from correlnet import DEFECT_THRESHOLD
from correlnet.metrics import PixelCounts, count_pixels
from correlnet.png import write_png
from correlnet.scene_trap import SceneTrapResult
from correlnet.synth.scene import SceneBlobConfig, add_scene_blobs
from correlnet.inference import prepare_for_inference
from correlnet.prediction import predict_triplet_tiled
from correlnet.tiling import TilingConfig

# Fig. 5 colours (RGB): true positives green, false positives blue, false negatives red.
TP_COLOUR = (0, 255, 0)
FP_COLOUR = (0, 0, 255)
FN_COLOUR = (255, 0, 0)


@dataclass(frozen=True)
class EvalConfig:
    """seed fixes the defects; triplets_per_sequence centre frames are spread evenly over each clip."""

    seed: int = 0
    triplets_per_sequence: int = 12
    threshold: float = DEFECT_THRESHOLD
    scene_trap: bool = True
    scene_blobs: SceneBlobConfig = field(default_factory=SceneBlobConfig)
    # The film-detection default (frames up to 2K run whole), so scores match what `detect` produces.
    tiling: TilingConfig = field(default_factory=TilingConfig)
    # A blob counts as flagged when at least this fraction of its pixels is predicted defect.
    blob_flag_fraction: float = 0.5


@dataclass
class EvalReport:
    per_sequence: dict[str, PixelCounts]
    total: PixelCounts
    frames: int
    seconds_per_frame: float
    scene: SceneTrapResult | None = None

    def to_dict(self) -> dict[str, Any]:
        def pr(c: PixelCounts) -> dict[str, float]:
            return {"precision": c.precision, "recall": c.recall, "f1": c.f1, "tp": c.tp, "fp": c.fp, "fn": c.fn}

        out: dict[str, Any] = {
            "overall": pr(self.total),
            "per_sequence": {k: pr(v) for k, v in self.per_sequence.items()},
            "frames": self.frames,
            "seconds_per_frame": self.seconds_per_frame,
        }
        if self.scene is not None:
            out["scene_trap"] = {
                "fp_rate": self.scene.fp_rate, "blob_fp_rate": self.scene.blob_fp_rate,
                "blob_pixels": self.scene.blob_pixels, "flagged_pixels": self.scene.flagged_pixels,
                "blobs": self.scene.blobs, "blobs_flagged": self.scene.blobs_flagged,
                "with_blobs": pr(self.scene.counts),
            }
        return out


def centre_frames(length: int, n: int) -> list[int]:
    """Up to n distinct centre indices spread evenly over 1 .. length-2 (each has two neighbours)."""
    if length < 3:
        raise ValueError(f"a sequence needs at least 3 frames to form a triplet; got {length}")
    return sorted({int(round(x)) for x in np.linspace(1, length - 2, num=min(n, length - 2))})


def triplet_rng(seed: int, sequence: str, centre: int, salt: int = 0) -> np.random.Generator:
    """Generator for one triplet: independent of which other sequences or frames are evaluated."""
    return np.random.default_rng([seed, zlib.crc32(sequence.encode()), centre, salt])


def clean_triplet(clip: np.ndarray, centre: int) -> np.ndarray:
    """Frames centre-1, centre, centre+1 of a (T, H, W) clip (float32 in [0, 1] or uint8) as a
    (3, H, W) float32 array in [0, 1] (a copy; the clip is never drawn on)."""
    triplet = clip[centre - 1 : centre + 2]
    if triplet.shape[0] != 3:
        raise ValueError(f"centre {centre} has no two neighbours in a clip of {clip.shape[0]} frames")
    if triplet.dtype == np.uint8:
        return triplet.astype(np.float32) / np.float32(255.0)
    return np.array(triplet, dtype=np.float32)


def safe_name(name: str) -> str:
    """A sequence name usable in a file name on any system ("bikes[175:]" -> "bikes_175_")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def fig5_picture(frame: np.ndarray, pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Fig. 5 style picture: the grayscale frame with TP green, FP blue and FN red.

    frame: (H, W) float in [0, 1]; pred, true: (H, W) bool. Returns (H, W, 3) uint8 RGB.
    """
    if not frame.shape == pred.shape == true.shape:
        raise ValueError(f"frame, pred and true must share one (H, W); got {frame.shape}, {pred.shape}, {true.shape}")
    gray = (np.clip(frame, 0, 1) * 255).round().astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    pred, true = pred.astype(bool), true.astype(bool)
    rgb[pred & true] = TP_COLOUR
    rgb[pred & ~true] = FP_COLOUR
    rgb[~pred & true] = FN_COLOUR
    return rgb


def _predict(model: nn.Module, frames: np.ndarray, cfg: EvalConfig, device: torch.device) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    probs = predict_triplet_tiled(model, frames, cfg.tiling, device)
    return probs >= cfg.threshold, time.perf_counter() - t0


def _trap_triplet(model: nn.Module, clean: np.ndarray, synth_cfg: Any, cfg: EvalConfig, rng: np.random.Generator,
                  device: torch.device, result: SceneTrapResult) -> None:
    from correlnet.synth import degrade_triplet

    scene, _, blobs = add_scene_blobs(clean, cfg.scene_blobs, rng)
    degraded, masks = degrade_triplet(scene, synth_cfg, rng)
    pred, _ = _predict(model, degraded, cfg, device)
    result.add(pred, masks[1].astype(bool), blobs, cfg.blob_flag_fraction)


def evaluate_sequences(
    model: nn.Module,
    sequences: Mapping[str, np.ndarray],
    synth_cfg: Any,
    cfg: EvalConfig,
    device: torch.device,
    pictures_dir: str | Path | None = None,
) -> EvalReport:
    """Precision / recall / F1 of `model` on synthetic defects, per sequence and overall.

    sequences: name -> clean clip (T, H, W) float32 in [0, 1] (or uint8), T >= 3. synth_cfg: a SynthConfig
    (SynthConfig.paper() for the paper's generator, SynthConfig() for the full one).
    pictures_dir: when set, one Fig. 5 PNG per evaluated frame, "<sequence>_<centre:06d>.png"
    (characters other than letters, digits, ".", "_" and "-" in the sequence name become "_").
    Deterministic for cfg.seed.
    """
    from correlnet.synth import degrade_triplet

    # Fold batch norm once for the whole evaluation; predict_triplet_tiled reuses a prepared model as is.
    model = prepare_for_inference(model, device)
    per_sequence: dict[str, PixelCounts] = {}
    scene = SceneTrapResult() if cfg.scene_trap else None
    seconds, frames = 0.0, 0
    for name, clip in sequences.items():
        if clip.ndim != 3:
            raise ValueError(f"sequence {name!r}: expected a clean clip (T, H, W); got shape {clip.shape}")
        counts = PixelCounts(0, 0, 0)
        for t in centre_frames(clip.shape[0], cfg.triplets_per_sequence):
            clean = clean_triplet(clip, t)
            degraded, masks = degrade_triplet(clean, synth_cfg, triplet_rng(cfg.seed, name, t))
            pred, dt = _predict(model, degraded, cfg, device)
            true = masks[1].astype(bool)
            counts = counts + count_pixels(pred, true)
            seconds, frames = seconds + dt, frames + 1
            if pictures_dir is not None:
                write_png(Path(pictures_dir) / f"{safe_name(name)}_{t:06d}.png", fig5_picture(degraded[1], pred, true))
            if scene is not None:
                _trap_triplet(model, clean, synth_cfg, cfg, triplet_rng(cfg.seed, name, t, salt=1), device, scene)
        per_sequence[name] = counts
    total = sum(per_sequence.values(), PixelCounts(0, 0, 0))
    return EvalReport(per_sequence, total, frames, seconds / max(frames, 1), scene)
