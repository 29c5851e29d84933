"""Active learning: which frame should a restorer look at next, and how much did a correction cost.

- Uncertainty of a prediction: the mean binary entropy of its probabilities (in bits, so 0 for a
  confident frame and 1 for a frame of 0.5s). Defect pixels are rare, so the mean is dominated by
  the pixels the model hesitates on: dust it half sees, texture it half mistakes for a blotch.
- Effort of a correction: the Dice between the model's proposal and the restorer's final mask
  (1 = accepted as is; low = the restorer redrew much of it).
- `next_frames_to_review`: the most uncertain unreviewed frames, spread across shots, least
  recently served first (`review_order`, ordered by the database); the frames handed out are
  stamped `last_served_at` in the same write transaction, so two restorers asking at once get
  different frames.
No torch here: the web app imports this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Select, exists, func, select, update

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


def _unreviewed(film_id: int) -> tuple[Any, ...]:
    return (Frame.film_id == film_id, Frame.reviewed_at.is_(None),
            ~exists().where(Correction.frame_id == Frame.id))


def review_order(film_id: int, segment: int = SEGMENT_FRAMES) -> Select:
    """SELECT of the ids of the film's unreviewed frames (no reviewed_at, no correction) in review order:
    never-served first, then least recently served; among frames served at the same time, round-robin
    over shots and `segment`-frame stretches of a shot (index // segment), each stretch's most uncertain
    frame first: a frame's rank is its place in its stretch by (no uncertainty, uncertainty descending,
    index), and frames sort by (rank, no uncertainty, uncertainty descending, index). Frames without an
    uncertainty (not predicted) go last of their rank. A window function (SQLite >= 3.25, PostgreSQL);
    tests/test_active_order.py checks it against the plain Python order it replaced."""
    return _ranked(_unreviewed(film_id), segment)


def _ranked(where: tuple[Any, ...], segment: int) -> Select:
    """`review_order` of the frames matching `where`."""
    by_uncertainty = (Frame.uncertainty.is_(None), Frame.uncertainty.desc(), Frame.index)
    rank = func.row_number().over(partition_by=(Frame.last_served_at, Frame.shot, Frame.index // segment),
                                  order_by=by_uncertainty)
    ranked = select(Frame.id, Frame.index, Frame.uncertainty, Frame.last_served_at, rank.label("rank")).where(
        *where).subquery()
    c = ranked.c
    return select(c.id).order_by(c.last_served_at.is_not(None), c.last_served_at, c.rank,
                                 c.uncertainty.is_(None), c.uncertainty.desc(), c.index)


def _served_groups(s: Any, film_id: int) -> Iterator[Any]:
    """SQL conditions for the film's groups of unreviewed frames served at one time, in review order:
    the never-served first (if any), then by serving time; each found by one index read when asked for."""
    if s.scalar(select(Frame.id).where(*_unreviewed(film_id), Frame.last_served_at.is_(None)).limit(1)) is not None:
        yield Frame.last_served_at.is_(None)
    served = select(Frame.last_served_at).where(*_unreviewed(film_id), Frame.last_served_at.is_not(None))
    after = None
    while True:
        later = served if after is None else served.where(Frame.last_served_at > after)
        after = s.scalar(later.order_by(Frame.last_served_at).limit(1))
        if after is None:
            return
        yield Frame.last_served_at == after


def _group_prefix(s: Any, film_id: int, group: Any, m: int) -> list[int]:
    """Ids of the group's first `m` unreviewed frames by (no uncertainty, uncertainty descending, index):
    two walks down ix_frames_review_order, predicted frames first (NULLs sort apart on each backend)."""
    walk = (select(Frame.id).where(*_unreviewed(film_id), group)
            .order_by(Frame.last_served_at, Frame.uncertainty.desc(), Frame.index))
    ids = list(s.scalars(walk.where(Frame.uncertainty.is_not(None)).limit(m)))
    if len(ids) < m:
        ids += s.scalars(walk.where(Frame.uncertainty.is_(None)).limit(m - len(ids)))
    return ids


def _suggested_ids(s: Any, film_id: int, n: int, segment: int = SEGMENT_FRAMES) -> list[int]:
    """The first `n` ids of `review_order`, ranking a few frames of a group or two, never the whole film.

    `review_order` puts each group G of frames served at one time (`_served_groups`) wholly before the
    next, so its first n are G1's order, then G2's, ... until n are found. The first k of one group G:
    let P be G's first m = segment * k frames by uncertainty. A stretch holds at most `segment` frames,
    so P spans at least k stretches (or P is all of G), and a frame of P has the same rank in P as in G
    (every better frame of its stretch is in P too). The best frame of each stretch P touches has rank 0,
    and a frame outside P is worse than all of P, so it cannot come before those k rank-0 frames: the
    first k of P's order are the first k of G's. Each group asked gives at least one frame (or all it
    has), so at most n groups are ranked, each over at most segment * n frames."""
    ids: list[int] = []
    for group in _served_groups(s, film_id):
        k = n - len(ids)
        prefix = _group_prefix(s, film_id, group, segment * k)
        ids += s.scalars(_ranked((Frame.id.in_(prefix),), segment).limit(k))
        if len(ids) == n:
            break
    return ids


def next_frames_to_review(store: Any, film: Any, n: int = 1, session_id: str | None = None,
                          now: datetime | None = None) -> list[Frame]:
    """Up to `n` frames of `film` (a Film or its id) a restorer should review next, stamped as served.

    Unreviewed = no reviewed_at and no correction. Order: see `review_order`. session_id is accepted
    for the caller's logs; the frames are reserved for everyone by `last_served_at`. The database
    picks the n frames from a few index reads (`_suggested_ids`), so the write transaction holding the
    film's suggestions stays short. Returns detached Frame rows (their last_served_at already set).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    film_id = film if isinstance(film, int) else film.id
    stamp = now or utcnow()
    with store.write() as s:
        if s.get_bind().dialect.name == "postgresql":
            # Serialise suggestion for this film across sessions (SQLite's BEGIN IMMEDIATE already does).
            s.execute(select(Film.id).where(Film.id == film_id).with_for_update())
        ids = _suggested_ids(s, film_id, n)
        if not ids:
            return []
        s.execute(update(Frame).where(Frame.id.in_(ids)).values(last_served_at=stamp))
        rows = {f.id: f for f in s.execute(select(Frame).where(Frame.id.in_(ids))).scalars()}
        return [rows[i] for i in ids]


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
