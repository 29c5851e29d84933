"""The publish gate of a fine-tuning job: is the new model better than the film's current one on
the film's edited validation frames, by pixels and by blobs, and how sure are we?

- Per validation frame, pixel counts (TP/FP/FN) and blob counts: a true blob (8-connected component
  of the restorer's mask) is found when any predicted pixel touches it, else missed; a predicted blob
  touching no true pixel is a false alarm. Blob F1 = 2 found / (2 found + false alarms + missed),
  the restorer's effort in clicks rather than pixels.
- Score = (pixel F1 + blob F1) / 2, both pooled over the frames (dataset-level, as the paper's F1).
- Uncertainty: a paired bootstrap over validation frames (the frames are the sampling unit; their
  pixels are not independent). `p_better` = share of resamples where the new model scores higher;
  `interval` = the central `interval_level` percentile interval of the gain.
- Publish when gain >= min_gain (a tie, e.g. "0.000 -> 0.000", does not publish) and
  p_better >= confidence. Fewer than min_frames frames: no decision at all (`decided` False).
See docs/training.md, "Per-film fine-tuning: evidence".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from correlnet.metrics import PixelCounts, count_blobs, count_pixels


@dataclass(frozen=True)
class PublishGateConfig:
    """min_frames: edited validation frames needed to decide; min_gain: smallest score gain that is
    not a tie (the message shows 3 decimals); confidence: share of bootstrap resamples that must
    favour the new model; resamples, seed: the bootstrap; interval_level: of the reported interval."""

    min_frames: int = 3
    min_gain: float = 0.001
    confidence: float = 0.8
    resamples: int = 1000
    seed: int = 0
    interval_level: float = 0.9

    def __post_init__(self) -> None:
        if self.min_frames < 2 or self.resamples < 1 or not (0 < self.confidence <= 1 and 0 < self.interval_level < 1):
            raise ValueError(f"PublishGateConfig needs min_frames >= 2 (one frame has no spread), resamples >= 1, "
                             f"confidence in (0, 1] and interval_level in (0, 1); got {self}")


@dataclass(frozen=True)
class FrameScore:
    """One frame's counts: pixels and blobs (PixelCounts with tp = found blobs)."""

    pixels: PixelCounts
    blobs: PixelCounts

    def as_row(self) -> list[int]:
        return [self.pixels.tp, self.pixels.fp, self.pixels.fn, self.blobs.tp, self.blobs.fp, self.blobs.fn]


def frame_score(pred_mask: np.ndarray, true_mask: np.ndarray) -> FrameScore:
    pred, true = np.asarray(pred_mask, bool), np.asarray(true_mask, bool)
    return FrameScore(count_pixels(pred, true), count_blobs(pred, true))


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    return np.where(denom == 0, 1.0, 2 * tp / np.maximum(denom, 1))


def _scores(counts: np.ndarray) -> np.ndarray:
    """counts (..., 6) summed over frames -> (..., 3): pixel F1, blob F1, score."""
    pixel, blob = _f1(*np.moveaxis(counts[..., :3], -1, 0)), _f1(*np.moveaxis(counts[..., 3:], -1, 0))
    return np.stack([pixel, blob, (pixel + blob) / 2], axis=-1)


def pooled(scores: list[FrameScore]) -> tuple[float, float, float]:
    """(pixel F1, blob F1, score) of the frames together."""
    return tuple(float(v) for v in _scores(np.array([s.as_row() for s in scores]).sum(axis=0)))


@dataclass(frozen=True)
class PublishGateResult:
    decided: bool  # False: fewer than min_frames validation frames
    publish: bool
    frames: int
    before: tuple[float, float, float]  # pixel F1, blob F1, score of the current model
    after: tuple[float, float, float]
    gain: float  # score after - before
    interval: tuple[float, float]  # of the gain
    p_better: float
    reason: str  # one sentence: why (not) published
    level: float = 0.9

    def summary(self) -> str:
        """What the job's message says about validation: the scores, the frame count and the uncertainty."""
        b, a = self.before, self.after
        text = (f"gate score {b[2]:.3f} -> {a[2]:.3f} (pixel F1 {b[0]:.3f} -> {a[0]:.3f}, blob F1 {b[1]:.3f} -> "
                f"{a[1]:.3f}) on {self.frames} edited validation frame(s)")
        if self.frames < 2:
            return f"{text}: no uncertainty estimate from {self.frames} frame(s)"
        return (f"{text}: gain {self.gain:+.3f}, {self.level:.0%} interval {self.interval[0]:+.3f} to "
                f"{self.interval[1]:+.3f}, better in {self.p_better:.0%} of bootstrap resamples")

    def metrics(self) -> dict[str, float | int | bool]:
        """Plain numbers for the model version's metrics and the Training page."""
        return {"val_f1": self.after[0], "val_f1_parent": self.before[0], "val_blob_f1": self.after[1],
                "val_blob_f1_parent": self.before[1], "val_score": self.after[2], "val_score_parent": self.before[2],
                "val_gain": self.gain, "val_gain_low": self.interval[0], "val_gain_high": self.interval[1],
                "val_p_better": self.p_better, "val_frames": self.frames, "gate_decided": self.decided}


def decide(before: list[FrameScore], after: list[FrameScore],
           cfg: PublishGateConfig = PublishGateConfig()) -> PublishGateResult:
    """Compare two models on the same validation frames (before[i], after[i]: frame i)."""
    if len(before) != len(after):
        raise ValueError(f"before and after must score the same frames; got {len(before)} and {len(after)}")
    n = len(before)
    b, a = (pooled(before), pooled(after)) if n else ((1.0,) * 3, (1.0,) * 3)
    gain = a[2] - b[2]
    interval, p_better = (gain, gain), float(gain > 0)
    if n >= 2:
        rows_b, rows_a = np.array([s.as_row() for s in before]), np.array([s.as_row() for s in after])
        idx = np.random.default_rng(cfg.seed).integers(n, size=(cfg.resamples, n))
        gains = _scores(rows_a[idx].sum(axis=1))[:, 2] - _scores(rows_b[idx].sum(axis=1))[:, 2]
        tail = (1 - cfg.interval_level) / 2
        interval = (float(np.quantile(gains, tail)), float(np.quantile(gains, 1 - tail)))
        p_better = float(np.mean(gains > 0))
    if n < cfg.min_frames:
        return PublishGateResult(False, False, n, b, a, gain, interval, p_better,
                          f"too few edited validation frames to decide: {n}, the gate needs {cfg.min_frames}",
                          cfg.interval_level)
    if abs(gain) < cfg.min_gain:
        reason, publish = f"a tie (gain {gain:+.4f}, under {cfg.min_gain:g})", False
    elif gain < 0:
        reason, publish = "the new model scores lower", False
    elif p_better < cfg.confidence:
        reason, publish = (f"the gain is not sure enough (better in {p_better:.0%} of resamples, the gate needs "
                           f"{cfg.confidence:.0%})"), False
    else:
        reason, publish = "the new model scores higher", True
    return PublishGateResult(True, publish, n, b, a, gain, interval, p_better, reason, cfg.interval_level)
