"""Pixel precision, recall and F1 from TP/FP/FN counts, per sequence and summed over a dataset.

The paper reports dataset-level scores from TP/FP/FN summed over every frame, not the mean of
per-frame F1 (which over-weights frames with few defect pixels): `PixelCounts` add up with `+`
(``sum(per_sequence.values(), PixelCounts())``), which is how every report accumulates them.

Conventions when a denominator is zero (documented choice, consistent with "nothing to find,
nothing wrongly found is perfect"):
- precision = tp / (tp + fp), and 1.0 when nothing is predicted (no false alarm made);
- recall = tp / (tp + fn), and 1.0 when nothing is true (nothing missed);
- f1 = 2 tp / (2 tp + fp + fn), and 1.0 when both masks are empty. With a non-empty truth and
  an empty prediction, f1 = 0 (precision 1, recall 0): f1 uses the counts, not the two ratios.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class PixelCounts:
    """True positive, false positive and false negative pixel counts."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: "PixelCounts") -> "PixelCounts":
        if not isinstance(other, PixelCounts):
            return NotImplemented
        return PixelCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        return 1.0 if self.tp + self.fp == 0 else self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> float:
        return 1.0 if self.tp + self.fn == 0 else self.tp / (self.tp + self.fn)

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 1.0 if denom == 0 else 2 * self.tp / denom

    def as_dict(self) -> dict[str, float]:
        """Counts and scores as plain numbers (for JSON, checkpoints and the DB)."""
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn,
                "precision": self.precision, "recall": self.recall, "f1": self.f1}


def _as_bool(mask, name: str) -> np.ndarray:
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if arr.dtype == bool:
        return arr
    if not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must be boolean or {{0, 1}}; got values in [{arr.min()}, {arr.max()}]: "
                         "threshold probabilities first, e.g. probs > 0.5")
    return arr.astype(bool)


def count_pixels(pred_mask, true_mask) -> PixelCounts:
    """pred_mask, true_mask: same-shape arrays or tensors, bool or {0, 1} -> PixelCounts."""
    pred, true = _as_bool(pred_mask, "pred_mask"), _as_bool(true_mask, "true_mask")
    if pred.shape != true.shape:
        raise ValueError(f"pred_mask {pred.shape} and true_mask {true.shape} must have the same shape")
    return PixelCounts(int(np.count_nonzero(pred & true)), int(np.count_nonzero(pred & ~true)),
                       int(np.count_nonzero(~pred & true)))


def count_blobs(pred_mask: np.ndarray, true_mask: np.ndarray) -> PixelCounts:
    """Blob counts: pred_mask, true_mask (H, W) bool -> PixelCounts(found true blobs, false-alarm blobs,
    missed true blobs), 8-connected; a true blob is found when any predicted pixel covers it, a predicted
    blob is a false alarm when it touches no true pixel."""
    if pred_mask.shape != true_mask.shape:
        raise ValueError(f"pred_mask {pred_mask.shape} and true_mask {true_mask.shape} must have the same shape")
    n_true, true_labels = cv2.connectedComponents(true_mask.astype(np.uint8), connectivity=8)
    n_pred, pred_labels = cv2.connectedComponents(pred_mask.astype(np.uint8), connectivity=8)
    found = np.unique(true_labels[pred_mask & true_mask])
    touching = np.unique(pred_labels[pred_mask & true_mask])
    n_found = int(np.count_nonzero(found))
    return PixelCounts(n_found, (n_pred - 1) - int(np.count_nonzero(touching)), (n_true - 1) - n_found)


def supported_components(labels: np.ndarray, count: int, support: np.ndarray, fraction: float) -> np.ndarray:
    """(count + 1,) bool: which components 1..count of `labels` ((H, W) int, 0 = background) have at
    least `fraction` of their pixels in `support` ((H, W) bool); entry 0 (background) is False.
    The test behind the temporal gate's marks, the one-frame share and the sure-defect recall."""
    if labels.shape != support.shape:
        raise ValueError(f"labels {labels.shape} and support {support.shape} must have the same shape")
    size = np.bincount(labels.ravel(), minlength=count + 1)
    hit = np.bincount(labels.ravel(), weights=np.asarray(support, bool).ravel(), minlength=count + 1)
    keep = hit >= fraction * size
    keep[0] = False
    return keep
