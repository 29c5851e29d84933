"""Moving between the frames of the Review page: the callbacks of its navigation buttons (and so of
their keys). The frame shown is st.session_state["frame_index:<film id>"]; messages for the restorer go
to st.session_state["review_notice"], which the page shows as a toast.

Every callback reads the frame shown when it runs, never the frame its button was drawn for: a key
pressed again before the page has redrawn (a restorer pressing "k" every 80 ms) runs the callback the
previous run registered, and a bound frame index made that press a no-op (or, for accept and undo,
acted on the previous frame again).

A feature has 130 000 frames, so nothing here holds the film's frame list: each callback asks the
store for the one frame or target it needs (`studio.frame_queries`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from studio import active, frame_queries

NOTICE = "review_notice"
GOTO = "goto_frame"


def index_key(film_id: int) -> str:
    """The session key of the film's frame shown (its 0-based index)."""
    return f"frame_index:{film_id}"


@dataclass(frozen=True)
class ShownFilm:
    """The film on the Review page: its store, its Film row and its number of frames (count >= 1)."""

    store: Any
    film: Any
    count: int

    def index(self) -> int:
        """The 0-based index of the frame shown (kept within the film)."""
        return int(np.clip(st.session_state.get(index_key(self.film.id), 0), 0, self.count - 1))

    def current(self):
        """The Frame shown."""
        return frame_queries.frame_at(self.store, self.film, self.index())


def go(film_id: int, index: int) -> None:
    st.session_state[index_key(film_id)] = index


def step(shown: ShownFilm, delta: int) -> None:
    go(shown.film.id, int(np.clip(shown.index() + delta, 0, shown.count - 1)))


def notice(text: str) -> None:
    """Tell the restorer `text` in the next toast (several in one run go in one toast, none is lost)."""
    pending = st.session_state.get(NOTICE)
    st.session_state[NOTICE] = f"{pending}  \n{text}" if pending else text


def next_with_detections(shown: ShownFilm) -> None:
    target = frame_queries.next_detected_index(shown.store, shown.film, shown.index())
    if target is None:
        notice("No other frame has detections.")
    else:
        go(shown.film.id, target)


def next_suggested(shown: ShownFilm) -> None:
    """The most uncertain unreviewed frame other than the one shown (pressing "s" twice moves twice)."""
    index = shown.index()
    chosen = [f for f in active.next_frames_to_review(shown.store, shown.film, 2) if f.index != index]
    if chosen:
        go(shown.film.id, chosen[0].index)
    else:
        notice("Every other frame is reviewed.")


def shot(shown: ShownFilm, direction: int) -> None:
    """To the start of the next shot (+1), or of this shot / the previous one (-1), as editing tools jump
    between cuts (`studio.frame_queries.shot_start`)."""
    target = frame_queries.shot_start(shown.store, shown.film, shown.index(), direction)
    if target is None:
        notice("This is the last shot." if direction > 0 else "This is the first shot.")
    else:
        go(shown.film.id, target)


def go_to_number(shown: ShownFilm) -> None:
    number = st.session_state.get(GOTO)
    if number is None:
        return
    match = frame_queries.frame_numbered(shown.store, shown.film, number)
    if match is None:
        ends = frame_queries.frames_at(shown.store, shown.film, (0, shown.count - 1))
        notice(f"No frame numbered {number} in this film (frames {ends[0].number}-{ends[shown.count - 1].number}).")
    else:
        go(match.film_id, match.index)
    st.session_state[GOTO] = None  # empty again, ready for the next number
