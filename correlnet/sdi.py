"""The classical peer: a motion-compensated SDI-p detector (spike detection index with polarity).

Kokaram's SDI-p: compensate the previous and the next frame for motion onto the middle frame,
take the two differences e_prev = mid - warp(prev) and e_next = mid - warp(next), and call a pixel
a defect when both are large and of the same sign: a blotch or a speck is in the middle frame
only, so it differs from both neighbours the same way (darker or lighter than both), while
anything the flow tracks (camera motion, moving objects) gives small differences, and an
occlusion or a flow failure usually differs from one neighbour only or with opposite signs.
Motion is OpenCV's DIS optical flow from the middle frame to each neighbour.

This module is the one home of motion compensation in correlnet. `SdiDetector` wraps it as an
`nn.Module` with the networks' interface, so it runs wherever a model runs (tiling, streaming,
`correlnet evaluate`, `correlnet detect`); `SdiConfig.from_spec` reads the `sdi-p[:THRESHOLD]`
model spec that `correlnet.checkpoint.load_detector` accepts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from correlnet.metrics import PixelCounts, count_pixels
from correlnet.models.padding import check_frames

SPEC = "sdi-p"  # the --model spec that names this detector
FLOW_PRESETS = ("ultrafast", "fast", "medium")  # cv2.DISOpticalFlow_PRESET_<NAME>
# logit = LOGIT_GAIN * (score - threshold), pushed LOGIT_MARGIN away from 0 so that the float32
# sigmoid of a score just below the threshold cannot round up to 0.5.
LOGIT_GAIN = 50.0
LOGIT_MARGIN = 0.01
# Candidate thresholds `choose_sdi_threshold` tried (gray levels in [0, 1]).
THRESHOLD_CANDIDATES = (0.03, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.11, 0.12, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4)


@dataclass(frozen=True)
class SdiConfig:
    """threshold: a pixel is a defect when both compensated differences have the same sign and
        magnitude >= threshold (gray levels in [0, 1]).
    flow_preset: DIS preset, one of `FLOW_PRESETS` (accuracy vs speed).
    flow_scale: compute the flow on copies resized by this factor (0 < flow_scale <= 1) and
        upsample it (vectors scaled by 1 / flow_scale); the warp and the differences stay at full
        resolution. Below 1 it is faster but loses the motion of thin or small objects.
    remove_median: subtract each compensated difference's median over the frame before scoring
        (`triplet_score`): global flicker between frames moves every pixel the same way and would
        otherwise pass for a same-sign difference everywhere (the 1906 clip has frames 0.05 brighter
        than both neighbours: 3.6 % of the pixels above 0.09 without it, 0.3 % with it).
    """

    # Chosen on validation by `choose_sdi_threshold` (seed 0, 6 triplets per clip, THRESHOLD_CANDIDATES,
    # full resolution): the paper's defects (SynthConfig.paper()) on the clean-video validation clips
    # correlnet.data.CLEAN_VIDEO_VALIDATION (sam2_bedroom, sam2_04_coffee,
    # mmaction2_test_video_structuralize), with remove_median. Best pixel F1 0.896 (P 0.924, R 0.870)
    # at 0.09; F1 stays within 0.003 of it from 0.08 to 0.11 (docs/benchmarks.md has the sweep).
    # Never chosen on the demo clips (they are training data).
    threshold: float = 0.09
    flow_preset: str = "medium"
    flow_scale: float = 1.0
    remove_median: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"SdiConfig.threshold must lie in (0, 1] (gray levels); got {self.threshold}")
        if self.flow_preset not in FLOW_PRESETS:
            raise ValueError(f"SdiConfig.flow_preset must be one of {FLOW_PRESETS}; got {self.flow_preset!r}")
        if not 0.0 < self.flow_scale <= 1.0:
            raise ValueError(f"SdiConfig.flow_scale must lie in (0, 1]; got {self.flow_scale}")

    @classmethod
    def from_spec(cls, spec: Any) -> "SdiConfig | None":
        """'sdi-p' -> SdiConfig(); 'sdi-p:0.2' -> threshold 0.2; anything else -> None."""
        text = str(spec)
        if text == SPEC:
            return cls()
        if text.startswith(SPEC + ":"):
            value = text[len(SPEC) + 1 :]
            try:
                return cls(threshold=float(value))
            except ValueError as exc:
                raise ValueError(f"model spec {text!r}: write sdi-p:THRESHOLD with a gray level in (0, 1], "
                                 f"e.g. sdi-p:0.1 ({exc})") from exc
        return None


def _check_gray(frame: np.ndarray, name: str) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 2 or not np.issubdtype(frame.dtype, np.floating):
        raise ValueError(f"{name} must be an (H, W) float grayscale frame in [0, 1]; got {frame.dtype} "
                         f"{frame.shape} (use correlnet.frames.to_gray_float)")
    return frame.astype(np.float32, copy=False)


def _to_u8(frame: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)


def optical_flow(frame_from: np.ndarray, frame_to: np.ndarray, cfg: SdiConfig) -> np.ndarray:
    """DIS flow (H, W, 2) float32 (dx, dy) with frame_from(y, x) ~ frame_to(y + dy, x + dx).

    frame_from, frame_to: (H, W) float in [0, 1], the same size.
    """
    a, b = _check_gray(frame_from, "frame_from"), _check_gray(frame_to, "frame_to")
    if a.shape != b.shape:
        raise ValueError(f"frames must share one (H, W); got {a.shape} and {b.shape}")
    h, w = a.shape
    dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOpticalFlow_PRESET_{cfg.flow_preset.upper()}"))
    if cfg.flow_scale == 1.0:
        return dis.calc(_to_u8(a), _to_u8(b), None)
    ws, hs = max(round(w * cfg.flow_scale), 8), max(round(h * cfg.flow_scale), 8)
    small = [_to_u8(cv2.resize(f, (ws, hs), interpolation=cv2.INTER_AREA)) for f in (a, b)]
    flow = cv2.resize(dis.calc(small[0], small[1], None), (w, h), interpolation=cv2.INTER_LINEAR)
    flow[..., 0] *= w / ws
    flow[..., 1] *= h / hs
    return flow


def warp(frame: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """(H, W) float32 `frame` sampled at each pixel plus its `flow` vector ((H, W, 2) (dx, dy)):
    bilinear, the border repeated outside the frame."""
    h, w = frame.shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(np.asarray(frame, np.float32), xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def compensate(frame_mid: np.ndarray, frame_other: np.ndarray, cfg: SdiConfig) -> np.ndarray:
    """frame_other warped into frame_mid's geometry: (H, W) float32.

    frame_mid, frame_other: (H, W) float in [0, 1]. The flow goes from mid to other (DIS), each
    mid pixel samples other at its flow target (bilinear; outside the frame the border repeats).
    """
    other = _check_gray(frame_other, "frame_other")
    return warp(other, optical_flow(frame_mid, other, cfg))


@dataclass(frozen=True)
class Compensation:
    """Both neighbours compensated onto the middle frame, computed once and shared (the gate, the
    sure-defect marks): flows (H, W, 2) from mid to each neighbour and the warped neighbours (H, W)."""

    frame_mid: np.ndarray
    flow_prev: np.ndarray
    flow_next: np.ndarray
    warp_prev: np.ndarray
    warp_next: np.ndarray

    def differences(self, remove_median: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(mid - warp(prev), mid - warp(next)), each (H, W) float32, each minus its median over the
        frame when remove_median (global flicker moves every pixel alike: no evidence)."""
        d_prev, d_next = self.frame_mid - self.warp_prev, self.frame_mid - self.warp_next
        if remove_median:
            d_prev, d_next = d_prev - np.float32(np.median(d_prev)), d_next - np.float32(np.median(d_next))
        return d_prev, d_next

    def score(self, remove_median: bool = True) -> np.ndarray:
        """The SDI-p score (H, W) float32 of the middle frame, as `triplet_score`."""
        return sdi_score(*self.differences(remove_median))


def compensate_triplet(frame_prev: np.ndarray, frame_mid: np.ndarray, frame_next: np.ndarray,
                       cfg: SdiConfig) -> Compensation:
    """The `Compensation` of a triplet of (H, W) float frames in [0, 1] (two DIS flows)."""
    mid = _check_gray(frame_mid, "frame_mid")
    prev, nxt = _check_gray(frame_prev, "frame_prev"), _check_gray(frame_next, "frame_next")
    flow_p, flow_n = optical_flow(mid, prev, cfg), optical_flow(mid, nxt, cfg)
    return Compensation(mid, flow_p, flow_n, warp(prev, flow_p), warp(nxt, flow_n))


def compensated_differences(frame_prev: np.ndarray, frame_mid: np.ndarray, frame_next: np.ndarray,
                            cfg: SdiConfig) -> tuple[np.ndarray, np.ndarray]:
    """(d_prev, d_next) = (mid - warp(prev), mid - warp(next)), each (H, W) float32.

    frames: (H, W) float in [0, 1], all the same size.
    """
    comp = compensate_triplet(frame_prev, frame_mid, frame_next, cfg)
    return comp.frame_mid - comp.warp_prev, comp.frame_mid - comp.warp_next


# The flow of the networks' motion skip (`ModelConfig.motion_skip`): the temporal gate's preset, so
# the network's evidence costs what the gate's does (two DIS `fast` flows per frame or tile).
MOTION_FLOW = SdiConfig(flow_preset="fast", remove_median=True)


def compensated_channels(frames: torch.Tensor, cfg: SdiConfig = MOTION_FLOW) -> torch.Tensor:
    """The motion-compensated evidence of a batch of triplets, for a network's input.

    frames: (B, 3, H, W) float in [0, 1], channels (prev, mid, next), any device and dtype.
    Returns (B, 2, H, W) on the frames' device and dtype: d_prev = mid - warp(prev) and
    d_next = mid - warp(next) (`Compensation.differences`, DIS flow `cfg` from the middle frame to
    each neighbour), each minus its median over the frame when cfg.remove_median (global flicker is
    no evidence). Computed per item in numpy on the CPU, without gradient (the flow is data).
    """
    check_frames(frames, "frames")
    x = frames.detach().to("cpu", torch.float32).clamp(0.0, 1.0).numpy()
    out = np.empty((x.shape[0], 2, *x.shape[-2:]), np.float32)
    for b, (prev, mid, nxt) in enumerate(x):
        out[b] = compensate_triplet(prev, mid, nxt, cfg).differences(cfg.remove_median)
    return torch.from_numpy(out).to(device=frames.device, dtype=frames.dtype)


def sdi_score(d_prev: np.ndarray, d_next: np.ndarray) -> np.ndarray:
    """Same-sign minimum magnitude, (H, W) float32 >= 0: min(|d_prev|, |d_next|) where
    sign(d_prev) == sign(d_next) != 0, else 0. d_prev, d_next: (H, W) float, the same shape."""
    d_prev, d_next = np.asarray(d_prev, np.float32), np.asarray(d_next, np.float32)
    if d_prev.shape != d_next.shape or d_prev.ndim != 2:
        raise ValueError(f"d_prev and d_next must be (H, W) of one shape; got {d_prev.shape}, {d_next.shape}")
    same = np.sign(d_prev) * np.sign(d_next) > 0
    return np.where(same, np.minimum(np.abs(d_prev), np.abs(d_next)), np.float32(0)).astype(np.float32)


def triplet_score(frame_prev: np.ndarray, frame_mid: np.ndarray, frame_next: np.ndarray,
                  cfg: SdiConfig) -> np.ndarray:
    """SDI-p score (H, W) float32 >= 0 of the middle frame: `sdi_score` of the compensated
    differences, each minus its median when cfg.remove_median. frames: (H, W) float in [0, 1]."""
    return compensate_triplet(frame_prev, frame_mid, frame_next, cfg).score(cfg.remove_median)


def sdi_mask(frame_prev: np.ndarray, frame_mid: np.ndarray, frame_next: np.ndarray, cfg: SdiConfig) -> np.ndarray:
    """(H, W) bool defect mask of the middle frame: triplet_score >= cfg.threshold.
    frames: (H, W) float in [0, 1], all the same size."""
    return triplet_score(frame_prev, frame_mid, frame_next, cfg) >= np.float32(cfg.threshold)


def score_to_logits(score: np.ndarray, threshold: float) -> np.ndarray:
    """Logits (same shape, float32) whose sigmoid is >= 0.5 exactly where score >= threshold."""
    score = np.asarray(score, np.float32)
    thr = np.float32(threshold)
    logits = np.float32(LOGIT_GAIN) * (score - thr)
    return np.where(score >= thr, logits + np.float32(LOGIT_MARGIN), logits - np.float32(LOGIT_MARGIN))


class SdiDetector(nn.Module):
    """SDI-p with the networks' interface: forward(frames (B, 3, H, W) float in [0, 1], channels
    (frame_prev, frame_mid, frame_next)) -> logits (B, 1, H, W) on the input's device and dtype,
    with sigmoid(logits) >= 0.5 exactly where the SDI-p score >= cfg.threshold (`score_to_logits`).

    Computed per batch item in numpy on the CPU. No weights and nothing to train: it is built in
    eval mode (the tiling and streaming code refuse a module in training mode). `size_multiple`
    is 1 (no padding). `cfg` is the SdiConfig; `checkpoint_meta` describes it as a loaded model's.
    """

    size_multiple = 1

    def __init__(self, cfg: SdiConfig = SdiConfig()):
        super().__init__()
        self.cfg = cfg
        self.checkpoint_meta = {"arch": SPEC, "encoder": None, "sdi_config": vars(cfg).copy()}
        self.eval()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        check_frames(frames, "frames")
        x = frames.detach().to("cpu", torch.float32).numpy()
        logits = np.stack([score_to_logits(triplet_score(t[0], t[1], t[2], self.cfg), self.cfg.threshold)
                           for t in x])[:, None]
        return torch.from_numpy(logits).to(device=frames.device, dtype=frames.dtype)


def choose_sdi_threshold(sequences: Mapping[str, np.ndarray], synth_cfg: Any, seed: int,
                         candidates: Iterable[float] = THRESHOLD_CANDIDATES, triplets_per_sequence: int = 6,
                         base: SdiConfig = SdiConfig()) -> tuple[float, dict[float, PixelCounts]]:
    """The candidate threshold with the best pixel F1 on synthetic defects, and every candidate's counts.

    sequences: name -> clean validation clip (T, H, W) float32 in [0, 1] or uint8, T >= 3. Defects come from
    `correlnet.synth.degrade_triplet(clean, synth_cfg, triplet_rng(seed, name, t))`, as in
    `correlnet.evaluate.evaluate_sequences`, on `triplets_per_sequence` evenly spaced centre frames
    at full resolution. The flow is computed once per triplet and every candidate scored on it.
    Ties go to the smaller threshold. Returns (threshold, {candidate: PixelCounts over all frames}).
    """
    from correlnet.evaluate import centre_frames, clean_triplet, triplet_rng
    from correlnet.synth import degrade_triplet

    candidates = sorted({float(c) for c in candidates})
    if not candidates:
        raise ValueError("choose_sdi_threshold needs at least one candidate threshold")
    counts = {c: PixelCounts(0, 0, 0) for c in candidates}
    for name, clip in sequences.items():
        if clip.ndim != 3:
            raise ValueError(f"sequence {name!r}: expected a clean clip (T, H, W); got shape {clip.shape}")
        for t in centre_frames(clip.shape[0], triplets_per_sequence):
            degraded, masks = degrade_triplet(clean_triplet(clip, t), synth_cfg, triplet_rng(seed, name, t))
            score = triplet_score(degraded[0], degraded[1], degraded[2], base)
            true = masks[1].astype(bool)
            for c in candidates:
                counts[c] = counts[c] + count_pixels(score >= np.float32(c), true)
    best = max(candidates, key=lambda c: (counts[c].f1, -c))
    return best, counts

