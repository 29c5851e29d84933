"""Per-film review counters for the Review page: reviewed, corrected, remaining.

reviewed = frames with any correction row or marked reviewed (an accepted frame counts); corrected =
frames whose current mask differs from the model's proposal: EDITED evidence (`studio.evidence`), the
same rule fine-tuning uses, whatever the rows' kinds (an "edit" that restored the proposal is not a
correction; an "accept" of an edited mask is). Two queries per count (frames, latest corrections),
cached for a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from studio import films
from studio.evidence import EDITED, film_evidence


@dataclass(frozen=True)
class ReviewCounts:
    frames: int
    reviewed: int
    corrected: int


def count_reviews(store, film) -> ReviewCounts:
    frames = films.film_frames(store, film)
    with store.session() as s:
        evidence = {e.frame.id: e.kind for e in film_evidence(s, film.id)}
    reviewed = sum(1 for f in frames if f.id in evidence or f.reviewed_at is not None)
    corrected = sum(1 for kind in evidence.values() if kind == EDITED)
    return ReviewCounts(len(frames), reviewed, corrected)


@st.cache_data(ttl=3, show_spinner=False)
def _cached(_store, film_id: int, nonce: int, _film) -> ReviewCounts:
    return count_reviews(_store, _film)


def review_counts(store, film) -> ReviewCounts:
    """Cached for 3 s per film; a save in this session (nonce) refreshes it at once."""
    return _cached(store, film.id, st.session_state.get("review_nonce", 0), film)
