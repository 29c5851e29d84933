"""Per-film review counters for the Review page: reviewed, corrected, remaining.

reviewed = frames with any correction row or marked reviewed (an accepted frame counts); corrected =
frames whose current mask differs from the model's proposal: EDITED evidence (`studio.evidence`), the
same rule fine-tuning uses, whatever the rows' kinds (an "edit" that restored the proposal is not a
correction; an "accept" of an edited mask is). Aggregate queries only, cached for a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from sqlalchemy import exists, func, or_, select

from db.models import Correction, Frame
from studio.evidence import edited_clause


@dataclass(frozen=True)
class ReviewCounts:
    frames: int
    reviewed: int
    corrected: int


def count_reviews(store, film) -> ReviewCounts:
    """Three aggregate queries, no rows loaded (a feature film has 130 000 frames: loading them took
    3.4 s, bench/store_scale.py); the same rules as `studio.evidence` (`edited_clause` on each frame's
    latest correction)."""
    in_film = Frame.film_id == film.id
    with store.session() as s:
        total = s.scalar(select(func.count()).select_from(Frame).where(in_film))
        has_correction = exists().where(Correction.frame_id == Frame.id)
        reviewed = s.scalar(select(func.count()).select_from(Frame).where(
            in_film, or_(Frame.reviewed_at.is_not(None), has_correction)))
        latest = (select(func.max(Correction.id)).join(Frame, Frame.id == Correction.frame_id)
                  .where(in_film).group_by(Correction.frame_id))
        corrected = s.scalar(select(func.count()).select_from(Correction).where(Correction.id.in_(latest),
                                                                                 edited_clause()))
    return ReviewCounts(int(total), int(reviewed), int(corrected))


@st.cache_data(ttl=3, show_spinner=False)
def _cached(_store, where: str, film_id: int, nonce: int, _film) -> ReviewCounts:
    return count_reviews(_store, _film)


def review_counts(store, film) -> ReviewCounts:
    """Cached for 3 s per store and film; a save in this session refreshes it at once (its nonce,
    `webapp.canvas_input.bump`, is unique in the process). The cache is shared by every session of
    the process, so the key names the store: film ids repeat from one store to the next."""
    where = f"{store.engine.url.render_as_string(hide_password=True)}|{store.data_dir}"
    return _cached(store, where, film.id, st.session_state.get("review_nonce", 0), film)
