"""Per-film review counters for the Review page: reviewed, corrected, remaining.

reviewed = frames with any correction row (an accepted frame counts); corrected = frames with at
least one "edit" row (the restorer changed the proposal). Counted through studio.corrections.history,
one query per frame, cached for a few seconds: fine for thousands of frames, see docs/webapp.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from studio import corrections, films


@dataclass(frozen=True)
class ReviewCounts:
    frames: int
    reviewed: int
    corrected: int


def count_reviews(store, film) -> ReviewCounts:
    reviewed = corrected = 0
    frames = films.film_frames(store, film)
    for frame in frames:
        kinds = {row.kind for row in corrections.history(store, frame.id)}
        reviewed += bool(kinds) or frame.reviewed_at is not None
        corrected += "edit" in kinds
    return ReviewCounts(len(frames), reviewed, corrected)


@st.cache_data(ttl=3, show_spinner=False)
def _cached(_store, film_id: int, nonce: int, _film) -> ReviewCounts:
    return count_reviews(_store, _film)


def review_counts(store, film) -> ReviewCounts:
    """Cached for 3 s per film; a save in this session (nonce) refreshes it at once."""
    return _cached(store, film.id, st.session_state.get("review_nonce", 0), film)
