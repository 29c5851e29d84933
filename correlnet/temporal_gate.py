"""The temporal gate: a network's mark stands only where the frame differs from both neighbours.

Why. A defect is a temporal anomaly: it is in one frame, so the middle frame differs from both
motion-compensated neighbours, and with the same sign (darker or lighter than both). Whatever the
optical flow can track (camera motion, moving people, a deforming stripe) and whatever persists
(a door frame, a wainscot line, a static blob in the scene) gives no such evidence. A network
trained on synthetic defects learns appearance as well as time, and on footage it never saw its
appearance cue fires on scene structure (issue 12: static vertical lines flagged whatever the
neighbours say). The gate keeps the network's shapes and confidence but removes every mark that has
no temporal evidence at all.

Evidence. `correlnet.sdi.triplet_score`: the compensated differences (DIS flow from the middle
frame to each neighbour), each minus its median over the frame (global flicker between frames moves
every pixel the same way and is not evidence), then the same-sign minimum; a pixel has evidence
where that score is >= `threshold` (gray levels). The evidence mask is dilated by `dilate_px` (the
flow is smooth across a defect's soft edge, the network's outline is a pixel or two wider), and a
flagged connected component of the network's mask is kept whole when at least `min_support` of its
pixels have evidence, and dropped otherwise. So the gate never carves holes into a blotch the
network found, nor grows a mark: it only keeps or drops the network's marks.

The threshold is lenient on purpose (0.03 = 8 gray levels, a third of SDI-p's own 0.09): it is a
veto on marks without any temporal anomaly, not a second detector.

Sure marks (`GateConfig.sure`, `ModelConfig.sure_marks`). The other half of the principle: what is
in one frame only is a defect, and where the classical test can be trusted (a strong same-sign
anomaly over rigidly moving surroundings whose two neighbours agree: `correlnet.sure_defects`), its
components are added to the network's marks (probability 1). The network, trained on synthetic marks,
misses much of the faint, soft real dust (session 6's annotated real-film frames); the rule's
rigidity and agreement tests keep moving objects, occlusions and flow failures out. The same two
flows serve the veto and the sure marks.

Extent (`GateConfig.extent_px`, `ModelConfig.mark_extent`). Real dust is blurred by the scanner: its
core is a strong anomaly, its soft edge a weak one. The network's outline and the sure rule's
components (score >= its threshold) cover the core only; on the annotated real-film frames about half
of each found mark's pixels (docs/benchmarks.md). So, last, every mark grows, one pixel ring per step
for `extent_px` steps, into the neighbouring pixels whose same-sign score reaches `extent_score`: 0.05,
the visibility rule of the training labels (`SynthConfig.min_contrast`: a defect pixel is one the
defect moved by at least 0.05). Hysteresis, as in an edge detector, bounded so that a mark never
spreads along a scene structure that merely differs a little; a pixel without a visible same-sign
anomaly is never added. The shipped detector grows 1 px (measured in docs/benchmarks.md, "Session 11").
With `extent_fraction` (`ModelConfig.mark_extent_fraction`, off in the shipped detector, a film's
choice: `studio.finetune.RULE_CANDIDATES`) a grown pixel also needs that share of its mark's own peak
score: a soft real speck's rim carries a third to two thirds of its core's contrast (median 0.5 on the
annotated frames), the flow's fringe around a strong hard-edged blotch much less.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from correlnet import DEFECT_THRESHOLD
from correlnet.metrics import supported_components
from correlnet.sdi import Compensation, SdiConfig, compensate_triplet
from correlnet.sure_defects import SureConfig, sure_labels

__all__ = ["GateConfig", "gate_config_of", "sure_config", "temporal_evidence", "gate_probs", "grow_marks"]


@dataclass(frozen=True)
class GateConfig:
    """threshold: gray-level evidence (see module docstring); 0 switches the gate off.
    dilate_px: radius of the evidence dilation. min_support: share of a mark's pixels with evidence
    for the mark to stand. mark_threshold: the probability at which marks are cut into components
    (the defect threshold, 0.5). flow: the DIS settings of the motion compensation."""

    threshold: float = 0.03
    dilate_px: int = 2
    min_support: float = 0.2
    mark_threshold: float = DEFECT_THRESHOLD
    flow: SdiConfig = SdiConfig(flow_preset="fast", remove_median=True)
    # Sure marks added to the network's (None = off): the sure-defect rule at SDI-p's validated
    # threshold, a little looser than the bank's strict cut (`SureConfig` defaults).
    sure: SureConfig | None = None
    # The marks' extent (module docstring): growth steps in px (0 = off) and the score a grown pixel needs.
    extent_px: int = 0
    extent_score: float = 0.05
    # ... and, when > 0, at least this share of the largest score of the mark pixels within extent_px
    # of it (`ModelConfig.mark_extent_fraction`): a mark grows along its own fading edge, not into the
    # flow's weak fringe around a strong blotch. 0 = the absolute floor alone.
    extent_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"GateConfig.threshold must lie in [0, 1) (gray levels, 0 = off); got {self.threshold}")
        if self.dilate_px < 0 or not 0.0 <= self.min_support <= 1.0 or not 0.0 < self.mark_threshold < 1.0:
            raise ValueError(
                f"need dilate_px >= 0, min_support in [0, 1], mark_threshold in (0, 1); got {self.dilate_px}, "
                f"{self.min_support}, {self.mark_threshold}"
            )
        if self.extent_px < 0 or not 0.0 < self.extent_score < 1.0:
            raise ValueError(f"need extent_px >= 0 and extent_score in (0, 1); got {self.extent_px}, {self.extent_score}")
        if not 0.0 <= self.extent_fraction < 1.0:
            raise ValueError(f"GateConfig.extent_fraction must lie in [0, 1) (0 = off); got {self.extent_fraction}")

    @property
    def enabled(self) -> bool:
        return self.threshold > 0 or self.sure is not None or self.extent_px > 0


def sure_config(score: float) -> SureConfig:
    """The sure-defect rule of the detector's sure marks, at SDI-p score `score` (module docstring)."""
    return SureConfig(score=score, area=(2, 400), max_flow_spread=0.75, max_disagreement=0.06,
                      flow=GateConfig().flow)


def gate_config_of(model: object) -> GateConfig:
    """The gate a model's config asks for (`ModelConfig.temporal_gate`, `ModelConfig.sure_marks`); off
    for a model without them (e.g. `correlnet.sdi.SdiDetector`, which is itself a temporal test)."""
    config = getattr(model, "config", None)
    threshold = float(getattr(config, "temporal_gate", 0.0) or 0.0)
    sure = float(getattr(config, "sure_marks", 0.0) or 0.0)
    extent = int(getattr(config, "mark_extent", 0) or 0)
    fraction = float(getattr(config, "mark_extent_fraction", 0.0) or 0.0)
    return GateConfig(threshold=threshold, sure=sure_config(sure) if sure > 0 else None, extent_px=extent,
                      extent_fraction=fraction)


def temporal_evidence(frame_prev: np.ndarray, frame_mid: np.ndarray, frame_next: np.ndarray,
                      cfg: GateConfig) -> np.ndarray:
    """(H, W) bool: pixels of frame_mid that differ from both compensated neighbours with one sign
    by at least cfg.threshold (after removing each difference's median), dilated by cfg.dilate_px.

    frames: (H, W) float32 in [0, 1], one size."""
    return _evidence(compensate_triplet(frame_prev, frame_mid, frame_next, cfg.flow).score(), cfg)


def _evidence(score: np.ndarray, cfg: GateConfig) -> np.ndarray:
    evidence = (score >= np.float32(cfg.threshold)).astype(np.uint8)
    if cfg.dilate_px > 0:
        k = 2 * cfg.dilate_px + 1
        evidence = cv2.dilate(evidence, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return evidence.astype(bool)


def gate_probs(probs: np.ndarray, frame_prev: np.ndarray, frame_mid: np.ndarray, frame_next: np.ndarray,
               cfg: GateConfig, compensation: Compensation | None = None) -> np.ndarray:
    """Probabilities (H, W) float32 with the unsupported marks removed (set to 0).

    probs: the network's (H, W) probabilities of frame_mid; frames: (H, W) float32 in [0, 1].
    A mark is an 8-connected component of ``probs >= cfg.mark_threshold``; with ``cfg.threshold > 0``
    it stands when at least cfg.min_support of its pixels have `temporal_evidence`. Pixels below the
    threshold keep their value (they are not marks). Then, with ``cfg.sure``, the sure one-frame
    defects (`correlnet.sure_defects`) are set to 1. Returns probs unchanged when the gate is off.
    compensation: the triplet's `compensate_triplet(frame_prev, frame_mid, frame_next, cfg.flow)` when
    already computed (streaming computes it on a thread while the network runs); None computes it here.
    """
    probs = np.asarray(probs, np.float32)
    if probs.shape != np.shape(frame_mid):
        raise ValueError(f"probs {probs.shape} and frame_mid {np.shape(frame_mid)} must share one (H, W)")
    if not cfg.enabled:
        return probs
    marks = (probs >= np.float32(cfg.mark_threshold)).astype(np.uint8)
    if not marks.any() and cfg.sure is None:
        return probs
    comp = compensate_triplet(frame_prev, frame_mid, frame_next, cfg.flow) if compensation is None else compensation
    score = comp.score()
    out = probs.copy()
    if cfg.threshold > 0 and marks.any():
        n, labels = cv2.connectedComponents(marks, connectivity=8)
        keep = supported_components(labels, n - 1, _evidence(score, cfg), cfg.min_support)
        keep[0] = True  # background: not a mark, left as it is
        out[~keep[labels]] = 0.0
    if cfg.sure is not None:
        sure, count = sure_labels(comp, cfg.sure, score)
        if count:
            out[sure > 0] = 1.0
    if cfg.extent_px > 0:
        out = grow_marks(out, score, cfg)
    return out


def grow_marks(probs: np.ndarray, score: np.ndarray, cfg: GateConfig) -> np.ndarray:
    """probs (H, W) float32 with every mark (``probs >= cfg.mark_threshold``) grown by up to
    cfg.extent_px steps of one 4-connected pixel into pixels whose same-sign SDI-p `score` (H, W) is
    >= cfg.extent_score and, with cfg.extent_fraction > 0, >= that share of the largest score of the
    mark pixels within cfg.extent_px (chessboard) of it; a grown pixel gets the probability
    cfg.mark_threshold (marked, least sure). A new array; pixels that are not reached keep their value."""
    if probs.shape != score.shape:
        raise ValueError(f"probs {probs.shape} and score {score.shape} must share one (H, W)")
    marks = (probs >= np.float32(cfg.mark_threshold)).astype(np.uint8)
    out = np.array(probs, np.float32, copy=True)
    if cfg.extent_px <= 0 or not marks.any():
        return out
    floor = np.float32(cfg.extent_score)
    if cfg.extent_fraction > 0:
        k = 2 * cfg.extent_px + 1
        peak = cv2.dilate(np.where(marks > 0, score, 0).astype(np.float32), np.ones((k, k), np.uint8))
        floor = np.maximum(floor, np.float32(cfg.extent_fraction) * peak)
    allowed = (score >= floor).astype(np.uint8)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    grown = marks
    for _ in range(cfg.extent_px):
        step = cv2.dilate(grown, cross) & allowed | grown
        if np.array_equal(step, grown):
            break
        grown = step
    new = (grown > 0) & (marks == 0)
    out[new] = np.float32(cfg.mark_threshold)
    return out
