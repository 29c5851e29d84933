"""The sure one-frame defect rule: where the classical motion-compensated test can be trusted.

A connected component of the SDI-p score (`correlnet.sdi.Compensation.score`: the same-sign minimum
of the two motion-compensated differences, medians removed) >= `SureConfig.score` is a sure
one-frame defect when: its area lies in `SureConfig.area`; it does not touch the frame border (the
scans' edges weave); the surroundings move rigidly (in a ring of `ring_px` around it, every flow
vector to each neighbour lies within `max_flow_spread` px of the ring's median, whatever the gate
weave or the camera moves the whole frame); and the two compensated neighbours agree with each other
there and under it (90th percentile of |warp(prev) - warp(next)| below `max_disagreement`, grain
allowed for): both neighbours show the same background, only the middle frame has the mark.
Moving objects, occlusions and flow failures break rigidity or agreement, so they are not sure.

Two users: the defect bank (`correlnet.synth.bank`) cuts real defects with the strict defaults
(training data must be sure), and the detector's sure marks (`correlnet.temporal_gate`,
`ModelConfig.sure_marks`) add what the rule finds at SDI-p's validated threshold to the network's
marks, where the network, trained on synthetic marks, misses faint real dust.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from correlnet.sdi import Compensation, SdiConfig, compensate_triplet

__all__ = ["SureConfig", "sure_components", "sure_labels", "sure_defect_labels"]


@dataclass(frozen=True)
class SureConfig:
    """The rule's settings (module docstring); gray levels in [0, 1], sizes in px. The defaults are
    the strict ones that cut the defect bank."""

    score: float = 0.12
    area: tuple[int, int] = (3, 400)
    max_flow_spread: float = 0.5
    max_disagreement: float = 0.05
    ring_px: int = 4
    margin_px: int = 2
    flow: SdiConfig = field(default_factory=lambda: SdiConfig(flow_preset="medium"))


def _spread(vectors: np.ndarray) -> float:
    """Largest distance (px) of (N, 2) flow vectors from their median: 0 for a rigid motion."""
    return float(np.hypot(*(vectors - np.median(vectors, axis=0)).T).max())


def sure_components(comp: Compensation, cfg: SureConfig, score: np.ndarray | None = None):
    """Yields (box (y0, y1, x0, x1), component (h, w) uint8, residual (h, w) float32) of each sure
    one-frame defect of the compensated triplet's middle frame (module docstring); `score` is
    ``comp.score()`` when the caller has it already."""
    mid, flow_p, flow_n = comp.frame_mid, comp.flow_prev, comp.flow_next
    score = comp.score() if score is None else score
    wp, wn = comp.warp_prev, comp.warp_next  # background and disagreement are computed per box only
    n, labels, stats, _ = cv2.connectedComponentsWithStats((score >= cfg.score).astype(np.uint8), connectivity=8)
    h, w = mid.shape
    ring_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * cfg.ring_px + 1,) * 2)
    for k in range(1, n):
        x, y, bw, bh, area = stats[k]
        m = cfg.margin_px + cfg.ring_px
        if not cfg.area[0] <= area <= cfg.area[1] or x < m or y < m or x + bw > w - m or y + bh > h - m:
            continue
        y0, y1, x0, x1 = y - m, y + bh + m, x - m, x + bw + m
        blob = (labels[y0:y1, x0:x1] == k).astype(np.uint8)
        grown = cv2.dilate(blob, ring_kernel).astype(bool)
        ring = grown & ~blob.astype(bool)
        if not ring.any():
            continue
        if max(_spread(f[y0:y1, x0:x1][ring]) for f in (flow_p, flow_n)) > cfg.max_flow_spread:
            continue
        box_p, box_n = wp[y0:y1, x0:x1], wn[y0:y1, x0:x1]
        if np.percentile(np.abs(box_p - box_n)[grown], 90) > cfg.max_disagreement:
            continue
        yield (y0, y1, x0, x1), blob, (mid[y0:y1, x0:x1] - 0.5 * (box_p + box_n)).astype(np.float32)


def sure_defect_labels(frame_prev: np.ndarray, frame_mid: np.ndarray, frame_next: np.ndarray,
                       cfg: SureConfig = SureConfig()) -> tuple[np.ndarray, int]:
    """(labels (H, W) int32, count): the sure one-frame defects of frame_mid numbered 1..count, 0
    elsewhere; the same rule as `cut_defects` (a stand-in for ground truth on unannotated film)."""
    return sure_labels(compensate_triplet(frame_prev, frame_mid, frame_next, cfg.flow), cfg)


def sure_labels(comp: Compensation, cfg: SureConfig, score: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """`sure_defect_labels` of an already compensated triplet (and its score, when computed)."""
    labels = np.zeros(comp.frame_mid.shape, np.int32)
    count = 0
    for (y0, y1, x0, x1), blob, _ in sure_components(comp, cfg, score):
        count += 1
        labels[y0:y1, x0:x1][blob.astype(bool)] = count
    return labels, count
