"""Temporal neighbours for film frames: duplicated frames and shot cuts.

Correl-Net looks at a frame together with its previous and next frame (paper Sec. 3.1): a defect is
what is present in the middle frame and absent at the same place in its neighbours. A duplicated
neighbour (telecine pulldown, re-scans, frame-rate conversion) carries the *same* defects, so the
defect would look like scene content; a neighbour across a shot cut shares no content at all.
So each frame gets as prev/next the nearest frame that is distinct from it and in the same shot.

Everything works on small grayscale thumbnails: (T, h, w) float32 in [0, 1] (see `thumbnail`).
Pure numpy (+ OpenCV for resizing); no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class NeighbourConfig:
    """thumb_width: thumbnails are resized (area averaging, which also averages film grain away) to this
        width; the height keeps the aspect ratio.
    duplicate_ratio: frame t duplicates t-1 when their mean absolute difference is below
        duplicate_ratio x the clip's typical difference between consecutive distinct frames (its
        `scale_percentile` percentile). On the 1906 "Market Street" clip duplicates differ by ~0.0004
        and distinct frames by >= 0.017 (median 0.033), so 0.1 leaves a wide margin on both sides.
    duplicate_floor: differences below this are duplicates whatever the clip (1/4 of a grey level).
    cut_min_diff / cut_jump: a cut before frame t needs a difference above cut_min_diff AND
        cut_jump x the median difference of the `window` pairs around it: a spike, not steady motion.
        (Real footage: within-shot maximum 0.083, a cut between the two real clips 0.20.)
    hist_min / hist_jump: the same test on the L1 distance of grey-level histograms (`hist_bins` bins),
        which also catches a cut between similar-looking but moved shots.
    """

    thumb_width: int = 64
    duplicate_ratio: float = 0.1
    duplicate_floor: float = 1.0 / 1024
    scale_percentile: float = 75.0
    cut_min_diff: float = 0.1
    cut_jump: float = 3.0
    hist_bins: int = 32
    hist_min: float = 0.4
    hist_jump: float = 3.0
    window: int = 6


@dataclass(frozen=True)
class Neighbours:
    """prev/next: 0-based frame indices to use as frame_prev/frame_next for this frame.
    flagged: True when one side (or both) had no usable neighbour; then the single usable neighbour is
    used twice (or the frame itself when its shot has no distinct frame)."""

    prev: int
    next: int
    flagged: bool


@dataclass(frozen=True)
class SequenceAnalysis:
    """Per frame (length T): neighbours, is_duplicate (frame t repeats t-1), shot (0-based id).
    Per consecutive pair (length T-1): diffs (mean abs difference), hist_dists, cuts (cut between t and t+1)."""

    neighbours: list[Neighbours]
    is_duplicate: np.ndarray
    shot: np.ndarray
    diffs: np.ndarray
    hist_dists: np.ndarray
    cuts: np.ndarray


def thumbnail(gray: np.ndarray, cfg: NeighbourConfig = NeighbourConfig()) -> np.ndarray:
    """(H, W) float in [0, 1] -> (h, cfg.thumb_width) float32, area-averaged."""
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2:
        raise ValueError(f"thumbnail needs a grayscale (H, W) frame, got shape {gray.shape}; use to_gray_float first")
    height, width = gray.shape
    thumb_w = min(cfg.thumb_width, width)
    thumb_h = max(1, round(height * thumb_w / width))
    return cv2.resize(gray, (thumb_w, thumb_h), interpolation=cv2.INTER_AREA)


def pair_differences(thumbs: np.ndarray) -> np.ndarray:
    """(T, h, w) -> (T-1,) mean absolute difference between consecutive thumbnails."""
    return np.abs(np.diff(thumbs, axis=0)).mean(axis=(1, 2)) if len(thumbs) > 1 else np.zeros(0, np.float32)


def histogram_distances(thumbs: np.ndarray, bins: int = 32) -> np.ndarray:
    """(T, h, w) -> (T-1,) half L1 distance in [0, 1] between consecutive normalised grey histograms."""
    flat = np.clip(thumbs.reshape(len(thumbs), -1), 0.0, 1.0)
    idx = np.minimum((flat * bins).astype(np.int64), bins - 1)
    hists = np.stack([np.bincount(row, minlength=bins) for row in idx]).astype(np.float64)
    hists /= hists.sum(axis=1, keepdims=True)
    return 0.5 * np.abs(np.diff(hists, axis=0)).sum(axis=1)


def detect_duplicates(diffs: np.ndarray, cfg: NeighbourConfig = NeighbourConfig()) -> np.ndarray:
    """(T-1,) pair differences -> (T,) bool, True where frame t repeats frame t-1 (frame 0 is never one)."""
    is_dup = np.zeros(len(diffs) + 1, dtype=bool)
    if len(diffs) == 0:
        return is_dup
    scale = float(np.percentile(diffs, cfg.scale_percentile))
    is_dup[1:] = diffs < max(cfg.duplicate_floor, cfg.duplicate_ratio * scale)
    return is_dup


def _spikes(values: np.ndarray, minimum: float, jump: float, window: int) -> np.ndarray:
    """True where values[i] > minimum and > jump x median of the other values within +-window."""
    out = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values):
        if value <= minimum:
            continue
        around = np.concatenate([values[max(0, i - window):i], values[i + 1:i + 1 + window]])
        out[i] = len(around) == 0 or value > jump * float(np.median(around))
    return out


def detect_cuts(diffs: np.ndarray, hist_dists: np.ndarray, cfg: NeighbourConfig = NeighbourConfig()) -> np.ndarray:
    """(T-1,) pair statistics -> (T-1,) bool, True where a shot cut lies between frames t and t+1."""
    diff_cut = _spikes(diffs, cfg.cut_min_diff, cfg.cut_jump, cfg.window)
    hist_cut = _spikes(hist_dists, cfg.hist_min, cfg.hist_jump, cfg.window)
    return diff_cut | hist_cut


def choose_neighbours(is_duplicate: np.ndarray, shot: np.ndarray) -> list[Neighbours]:
    """Nearest distinct frame in the same shot on each side, for each frame.

    is_duplicate: (T,) bool, frame t repeats t-1; shot: (T,) int, non-decreasing shot ids.
    Frames in one run of duplicates form a group; prev is the last frame of the previous group and
    next the first frame of the following group, when that group is in the same shot.
    """
    count = len(is_duplicate)
    group = np.cumsum(~np.asarray(is_duplicate, dtype=bool)) - 1
    group_first = {int(g): int(np.argmax(group == g)) for g in np.unique(group)}
    group_last = {int(g): int(len(group) - 1 - np.argmax(group[::-1] == g)) for g in np.unique(group)}
    result = []
    for t in range(count):
        g = int(group[t])
        prev = group_last.get(g - 1)
        nxt = group_first.get(g + 1)
        prev = prev if prev is not None and shot[prev] == shot[t] else None
        nxt = nxt if nxt is not None and shot[nxt] == shot[t] else None
        flagged = prev is None or nxt is None
        prev = prev if prev is not None else (nxt if nxt is not None else t)
        nxt = nxt if nxt is not None else prev
        result.append(Neighbours(prev=prev, next=nxt, flagged=flagged))
    return result


def analyse_sequence(thumbs: np.ndarray, cfg: NeighbourConfig = NeighbourConfig()) -> SequenceAnalysis:
    """Duplicates, shot cuts and neighbours of a clip from its thumbnails.

    thumbs: (T, h, w) float32 in [0, 1], T >= 1, all from `thumbnail` with the same cfg.
    """
    thumbs = np.asarray(thumbs, dtype=np.float32)
    if thumbs.ndim != 3 or len(thumbs) == 0:
        raise ValueError(f"analyse_sequence needs (T, h, w) thumbnails with T >= 1, got shape {thumbs.shape}")
    diffs = pair_differences(thumbs)
    hist_dists = histogram_distances(thumbs, cfg.hist_bins) if len(thumbs) > 1 else np.zeros(0)
    cuts = detect_cuts(diffs, hist_dists, cfg)
    is_duplicate = detect_duplicates(diffs, cfg)
    is_duplicate[1:] &= ~cuts  # a cut is never a duplicate
    shot = np.concatenate([[0], np.cumsum(cuts)]).astype(np.int64)
    return SequenceAnalysis(
        neighbours=choose_neighbours(is_duplicate, shot),
        is_duplicate=is_duplicate,
        shot=shot,
        diffs=diffs,
        hist_dists=hist_dists,
        cuts=cuts,
    )


def sequence_neighbours(read_frame: Callable[[int], np.ndarray], n: int,
                        cfg: NeighbourConfig = NeighbourConfig()) -> list[Neighbours]:
    """The neighbours `analyse_sequence` gives a sequence of n frames read one by one in order.

    read_frame(i) -> (H, W) float32 in [0, 1]. The one rule for every path that predicts a sequence
    (`correlnet detect` on a folder or video, `correlnet film import`): the same footage gets the
    same neighbours, so the same masks, whichever way it comes in."""
    if n < 1:
        raise ValueError(f"a sequence needs at least one frame; got n={n}")
    return analyse_sequence(np.stack([thumbnail(read_frame(i), cfg) for i in range(n)]), cfg).neighbours

