"""A film's frames a few at a time: the store reads of the Review page at feature length (issue 16).

A feature holds 130 000 frame rows; loading them as ORM objects took ~3 s per page run
(bench/store_scale.py). The page asks instead for what it shows (`frame_window`: the shown frame and its
flick neighbours; `frames_at`: the frames its canvas holds, the film's first and last) and lets the database
find navigation targets (`shot_start`, `next_detected_index`, `frame_numbered`, `frame_ids_numbered`)
with set-based queries that the (film_id, index) key and revision 0002's (film_id, number) index serve.

Frame indices are 0..count-1 per film (the store's invariant: `Frame.index` is unique per film and
contiguous); `film` is a Film or its id everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from db.models import Film, Frame, Prediction
from db.store import Store
from studio.films import FrameRange


def _film_id(film: Any) -> int:
    return film if isinstance(film, int) else film.id


def _in_film(film: Any) -> Any:
    return Frame.film_id == _film_id(film)


def frame_count(store: Store, film: Any) -> int:
    """Frames of the film, as stored (0 for none): its highest index + 1, one lookup in the (film_id,
    index) key (a COUNT reads every row's visibility on PostgreSQL: 25 ms at 130 000 frames)."""
    with store.session() as s:
        last = s.scalar(select(func.max(Frame.index)).where(_in_film(film)))
        return 0 if last is None else int(last) + 1


_FEW = 1000  # indices one query names in an IN list at most


def frames_at(store: Store, film: Any, indices: Iterable[int]) -> dict[int, Frame]:
    """{index: Frame} of the film's frames at these 0-based indices (indices outside the film are left out).
    Returns detached rows. Asks in IN lists of at most `_FEW` indices."""
    wanted = sorted({int(i) for i in indices})
    found: dict[int, Frame] = {}
    with store.session() as s:
        for start in range(0, len(wanted), _FEW):
            part = wanted[start:start + _FEW]
            found.update((f.index, f) for f in s.execute(select(Frame).where(_in_film(film),
                                                                              Frame.index.in_(part))).scalars())
    return found


def frames_around(store: Store, film: Any, indices: Iterable[int]) -> dict[int, Frame]:
    """{index: Frame} of the film's frames at these indices and of their neighbours (prev_index,
    next_index): what a detection of those frames reads (a chunk's 1000 frames, not the film's 130 000
    rows). The frames asked for are read as one index range (lowest to highest; rows between that were
    not asked for are dropped), or, for at most `_FEW` scattered ones, by `frames_at`, so a whole film's
    indices never become an IN list (SQLite takes at most 32 766 parameters); their neighbours outside
    them by `frames_at`. Indices outside the film are left out. Returns detached rows."""
    wanted = {int(i) for i in indices}
    if not wanted:
        return {}
    low, high = min(wanted), max(wanted)
    if high - low + 1 > 2 * len(wanted) and len(wanted) <= _FEW:
        found = frames_at(store, film, wanted)
    else:
        with store.session() as s:
            rows = s.execute(select(Frame).where(_in_film(film), Frame.index.between(low, high))).scalars()
            found = {f.index: f for f in rows if f.index in wanted}
    outside = {j for f in found.values() for j in (f.prev_index, f.next_index)} - found.keys()
    return {**found, **frames_at(store, film, outside)}


def frame_at(store: Store, film: Any, index: int) -> Frame | None:
    """The film's frame at 0-based `index`, or None."""
    return frames_at(store, film, [index]).get(index)


@dataclass(frozen=True)
class FrameWindow:
    """The frame the Review page shows and its flick view's. frame: the shown one (the index asked for,
    clipped to 0..count-1); prev / next: its temporal neighbours (`prev_index`, `next_index`)."""

    frame: Frame
    prev: Frame
    next: Frame


def frame_window(store: Store, film: Any, index: int) -> FrameWindow | None:
    """The frames the Review page shows around `index` (see FrameWindow), in three small queries; None
    when the film has no frames."""
    count = frame_count(store, film)
    if count == 0:
        return None
    index = min(max(int(index), 0), count - 1)
    frame = frames_at(store, film, (index,))[index]
    rows = {index: frame} | frames_at(store, film, {frame.prev_index, frame.next_index} - {index})
    return FrameWindow(frame, rows[frame.prev_index], rows[frame.next_index])


def numbers_unique(store: Store, film: Any) -> bool:
    """Whether no two frames of the film share a number (export names mattes by number only then)."""
    with store.session() as s:
        total, distinct = s.execute(select(func.count(), func.count(Frame.number.distinct()))
                                    .where(_in_film(film))).one()
        return total == distinct


def frame_names(store: Store, film: Any) -> list[Any]:
    """(source_name, number) rows of every frame of the film, in order: two columns, not 130 000 ORM
    objects (export's `source_padding` reads every frame's name)."""
    with store.session() as s:
        return list(s.execute(select(Frame.source_name, Frame.number).where(_in_film(film)).order_by(Frame.index)))


def frame_numbered(store: Store, film: Any, number: int) -> Frame | None:
    """The film's first frame (lowest index) numbered `number` (Frame.number), or None."""
    with store.session() as s:
        return s.execute(select(Frame).where(_in_film(film), Frame.number == int(number))
                         .order_by(Frame.index).limit(1)).scalars().first()


def _numbered_within(film: Any, frame_range: FrameRange) -> tuple[Any, ...]:
    low, high = sorted(int(n) for n in frame_range)
    return _in_film(film), Frame.number >= low, Frame.number <= high


def count_numbered(store: Store, film: Any, frame_range: FrameRange) -> int:
    """Frames numbered within `frame_range` (inclusive; its ends in either order)."""
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Frame).where(*_numbered_within(film, frame_range))))


def frame_ids_numbered(store: Store, film: Any, frame_range: FrameRange) -> list[int]:
    """Ids of the frames numbered within `frame_range` (inclusive; ends in either order), in film order."""
    with store.session() as s:
        return list(s.execute(select(Frame.id).where(*_numbered_within(film, frame_range))
                              .order_by(Frame.index)).scalars())


def shot_start(store: Store, film: Any, index: int, direction: int) -> int | None:
    """Index of the frame that starts a shot (its `shot` differs from the frame before it; frame 0 starts
    one), as editing tools jump between cuts: direction > 0, the first start after `index`; direction
    < 0, the last start before `index` (the start of the shot holding frame index-1: from inside a shot
    its own start, from a shot's first frame the previous shot's). None when there is none."""
    in_film, index = _in_film(film), int(index)
    shot_of = aliased(Frame)
    with store.session() as s:
        if direction > 0:
            # The first later frame of another shot: every frame between has this frame's shot, so it starts one.
            own = select(shot_of.shot).where(shot_of.film_id == _film_id(film), shot_of.index == index)
            return s.scalar(select(func.min(Frame.index)).where(in_film, Frame.index > index,
                                                                Frame.shot != own.scalar_subquery()))
        if index <= 0:
            return None
        # The frame after the last earlier frame of another shot than frame index-1's (0 if there is none).
        own = select(shot_of.shot).where(shot_of.film_id == _film_id(film), shot_of.index == index - 1)
        before = s.scalar(select(func.max(Frame.index)).where(in_film, Frame.index < index - 1,
                                                              Frame.shot != own.scalar_subquery()))
        return 0 if before is None else before + 1


def shown_prediction(film: Any, column: str = "id") -> Any:
    """SQL for `column` of the prediction a restorer sees for each Frame row of `film`: the film's active
    version's, else the most recent of any version (the rule of `studio.detection.latest_prediction`);
    NULL for a frame without one. One correlated subquery per frame, through predictions' frame_id key
    (its ORDER BY leaves PostgreSQL no backward walk of the whole primary key, which it chose for a
    MAX(id) before the table had statistics: minutes at 130 000 frames)."""
    p = aliased(Prediction)
    active = select(Film.active_model_version_id).where(Film.id == _film_id(film)).scalar_subquery()
    return (select(getattr(p, column)).where(p.frame_id == Frame.id)
            .order_by((p.model_version_id == active).desc(), p.id.desc()).limit(1).scalar_subquery())


def next_detected_index(store: Store, film: Any, index: int) -> int | None:
    """Index of the first frame after `index` (wrapping round to the film's start, `index` itself last
    of all and left out) whose shown prediction has defect pixels; None when no other frame has one.
    Frames are read in index order and the scan stops at the first hit."""
    hit = (select(Frame.index).where(_in_film(film), shown_prediction(film, "defect_pixels") > 0)
           .order_by(Frame.index).limit(1))
    with store.session() as s:
        after = s.scalar(hit.where(Frame.index > int(index)))
        return after if after is not None else s.scalar(hit.where(Frame.index < int(index)))
