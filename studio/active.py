"""Active learning: which frame should a restorer look at next, and how much did a correction cost.

- Uncertainty of a prediction: the mean binary entropy of its probabilities (in bits, so 0 for a
  confident frame and 1 for a frame of 0.5s). Defect pixels are rare, so the mean is dominated by
  the pixels the model hesitates on: dust it half sees, texture it half mistakes for a blotch.
- Effort of a correction: the Dice between the model's proposal and the restorer's final mask
  (1 = accepted as is; low = the restorer redrew much of it).
- `next_frames_to_review`: the most uncertain unreviewed frames, spread across shots, least
  recently served first; the frames handed out are stamped `last_served_at` in the same write
  transaction, so two restorers asking at once get different frames.
No torch here: the web app imports this module.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, Sequence

import numpy as np
from sqlalchemy import exists, select

from correlnet import DEFECT_THRESHOLD
from db.models import Correction, Film, Frame, Prediction
from studio.jobs import utcnow

_EPS = 1e-6


def frame_uncertainty(probs: np.ndarray) -> float:
    """Mean binary entropy in bits of `probs` ((H, W) float in [0, 1], or uint8 = probs * 255)."""
    p = np.asarray(probs)
    if p.ndim != 2 or p.size == 0:
        raise ValueError(f"probs must be a non-empty (H, W) array, got shape {p.shape}")
    p = p.astype(np.float64) / 255.0 if p.dtype == np.uint8 else p.astype(np.float64)
    if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise ValueError("probs must hold finite values in [0, 1] (apply the sigmoid to logits first)")
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(np.mean(-(p * np.log2(p) + (1 - p) * np.log2(1 - p))))


def mask_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two (H, W) boolean masks; 1.0 when both are empty (nothing to correct)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def correction_effort(probs: np.ndarray, mask: np.ndarray, threshold: float = DEFECT_THRESHOLD) -> float:
    """Dice between the proposal (`probs` (H, W) in [0, 1] at `threshold`) and the final `mask` (H, W)."""
    return mask_dice(np.asarray(probs) >= threshold, mask)


# Consecutive frames of a shot look alike, so correcting two of them teaches the model little more
# than one (the diversity half of active learning); a long shot is cut into segments of this many
# frames, and suggestions go round-robin over (shot, segment).
SEGMENT_FRAMES = 10


def order_for_review(frames: Sequence[Any], segment: int = SEGMENT_FRAMES) -> list[Any]:
    """Order frames for review: never-served (or least recently served) first; within the same
    serving time, round-robin over shots and `segment`-frame stretches of a shot, each one's most
    uncertain frame first, so consecutive suggestions come from different parts of the film.
    Frames without an uncertainty (not predicted) go last.

    frames: objects with .index, .shot, .uncertainty, .last_served_at.
    """
    by_serve: dict[datetime | None, list[Any]] = defaultdict(list)
    for f in frames:
        by_serve[f.last_served_at].append(f)
    ordered: list[Any] = []
    for served in sorted(by_serve, key=lambda t: (t is not None, t or datetime.min)):
        group = by_serve[served]
        per_shot: dict[tuple[int, int], list[Any]] = defaultdict(list)
        for f in sorted(group, key=_uncertainty_key):
            per_shot[(f.shot or 0, f.index // segment)].append(f)
        ranked = [(rank, _uncertainty_key(f), f) for shot in per_shot.values() for rank, f in enumerate(shot)]
        ordered.extend(f for _, _, f in sorted(ranked, key=lambda r: (r[0], r[1])))
    return ordered


def _uncertainty_key(frame: Any) -> tuple[int, float, int]:
    u = frame.uncertainty
    return (u is None, -(u or 0.0), frame.index)


def next_frames_to_review(store: Any, film: Any, n: int = 1, session_id: str | None = None,
                          now: datetime | None = None) -> list[Frame]:
    """Up to `n` frames of `film` (a Film or its id) a restorer should review next, stamped as served.

    Unreviewed = no reviewed_at and no correction. Order: see `order_for_review`. session_id is
    accepted for the caller's logs; the frames are reserved for everyone by `last_served_at`.
    Returns detached Frame rows (their last_served_at already set).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    film_id = film if isinstance(film, int) else film.id
    stamp = now or utcnow()
    with store.write() as s:
        if s.get_bind().dialect.name == "postgresql":
            # Serialise suggestion for this film across sessions (SQLite's BEGIN IMMEDIATE already does).
            s.execute(select(Film.id).where(Film.id == film_id).with_for_update())
        corrected = exists().where(Correction.frame_id == Frame.id)
        # Only the columns the order needs (a feature's 130 000 ORM objects took seconds), then the
        # chosen rows themselves.
        candidates = s.execute(select(Frame.id, Frame.index, Frame.shot, Frame.uncertainty, Frame.last_served_at)
                               .where(Frame.film_id == film_id, Frame.reviewed_at.is_(None), ~corrected)).all()
        ids = [row.id for row in order_for_review(candidates)[:n]]
        rows = {f.id: f for f in s.execute(select(Frame).where(Frame.id.in_(ids))).scalars()} if ids else {}
        chosen = [rows[i] for i in ids]
        for f in chosen:
            f.last_served_at = stamp
        s.flush()
        return chosen


def refresh_frame_uncertainty(store: Any, film_id: int, model_version_id: int) -> int:
    """Copy each frame's uncertainty from its prediction by `model_version_id` (the active model) into
    Frame.uncertainty, so the review order follows the current model. Returns the frames updated."""
    with store.write() as s:
        rows = s.execute(select(Frame, Prediction.uncertainty).join(
            Prediction, Prediction.frame_id == Frame.id).where(
            Frame.film_id == film_id, Prediction.model_version_id == model_version_id)).all()
        for frame, u in rows:
            frame.uncertainty = u
        return len(rows)
