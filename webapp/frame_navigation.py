"""Moving between the frames of the Review page: the callbacks of its navigation buttons (and so of
their keys). The frame shown is st.session_state["frame_index:<film id>"]; messages for the restorer go
to st.session_state["review_notice"], which the page shows as a toast.

Every callback reads the frame shown when it runs, never the frame its button was drawn for: a key
pressed again before the page has redrawn (a restorer pressing "k" every 80 ms) runs the callback the
previous run registered, and a bound frame index made that press a no-op (or, for accept and undo,
acted on the previous frame again).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from studio import active, detection

NOTICE = "review_notice"
GOTO = "goto_frame"


def index_key(film_id: int) -> str:
    """The session key of the film's frame shown (its 0-based index)."""
    return f"frame_index:{film_id}"


def current(frames):
    """The Frame shown (frames: the film's frames in order, never empty)."""
    index = st.session_state.get(index_key(frames[0].film_id), 0)
    return frames[int(np.clip(index, 0, len(frames) - 1))]


def go(film_id: int, index: int) -> None:
    st.session_state[index_key(film_id)] = index


def step(frames, delta: int) -> None:
    go(frames[0].film_id, int(np.clip(current(frames).index + delta, 0, len(frames) - 1)))


def notice(text: str) -> None:
    st.session_state[NOTICE] = text


def next_with_detections(store, frames) -> None:
    index = current(frames).index
    for f in frames[index + 1:] + frames[:index]:
        prediction = detection.latest_prediction(store, f.id)
        if prediction is not None and prediction.defect_pixels > 0:
            go(f.film_id, f.index)
            return
    notice("No other frame has detections.")


def next_suggested(store, film, frames) -> None:
    """The most uncertain unreviewed frame other than the one shown (pressing "s" twice moves twice)."""
    shown = current(frames).index
    chosen = [f for f in active.next_frames_to_review(store, film, 2) if f.index != shown]
    if chosen:
        go(film.id, chosen[0].index)
    else:
        notice("Every other frame is reviewed.")


def shot_starts(frames) -> list[int]:
    """Indices of the frames that start a shot (frame.shot changes; the first frame starts one)."""
    return [f.index for i, f in enumerate(frames) if i == 0 or f.shot != frames[i - 1].shot]


def shot(frames, direction: int) -> None:
    """To the start of the next shot (+1), or of this shot / the previous one (-1), as editing tools jump
    between cuts."""
    index, starts = current(frames).index, shot_starts(frames)
    target = (next((s for s in starts if s > index), None) if direction > 0
              else next((s for s in reversed(starts) if s < index), None))
    if target is None:
        notice("This is the last shot." if direction > 0 else "This is the first shot.")
    else:
        go(frames[0].film_id, target)


def go_to_number(frames) -> None:
    number = st.session_state.get(GOTO)
    if number is None:
        return
    match = next((f for f in frames if f.number == number), None)
    if match is None:
        notice(f"No frame numbered {number} in this film (frames {frames[0].number}-{frames[-1].number}).")
    else:
        go(match.film_id, match.index)
    st.session_state[GOTO] = None  # empty again, ready for the next number
