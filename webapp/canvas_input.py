"""What the review canvas sent (webapp/review_canvas.py), applied on the server before a run: its
drawings saved as corrections, its magnifier click, its navigation; in that order, so a stroke drawn
just before a key press lands on the frame it was drawn on. The page applies it in the component's
change callback, and first thing in every button callback that saves or moves (Streamlit runs a
button's callback before the component's): a stroke released just before a click of Undo lands
before the undo, and a stroke released just before a page switch is saved too.

Each drawing comes under a `Token` (frame, session generation, canvas size). A canvas session
(`webapp.autosave.CanvasSession`) is opened on a token's first drawing, from the frame's mask stored
then, and a save ends it (`bump`): the browser draws on under the frame's new token, whose session
starts from the mask just saved. A stroke sent under the old token before the browser heard of the new
one still finds its session here (the last `MAX_SESSIONS` are kept), and autosave's rebase keeps both.
A token of an older generation whose session is gone was saved and replaced: its drawing is not
applied twice (a toggle click applied again would undo itself). The session a save opens is made from
the mask it saved, not read back from the store. A drawing that cannot be applied (its token was
replaced by an accept or undo before it was saved, or its frame is gone) is dropped and named in
`Outcome.dropped`, for the page to tell the restorer.

The browser sends its whole state every time and counts its sends (`seq`): `applied()` is the last one
handled, sent back as the canvas's `ack`; a state already applied is skipped (a full rerun re-reads it).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from studio import frame_queries
from webapp import frame_navigation as nav
from webapp.autosave import CanvasSession, autosave
from webapp.canvas import CanvasGeometry, object_operation
from webapp.review_canvas import CanvasState, Drawing, Token

APPLIED = "canvas_applied"
SESSIONS = "canvas_sessions"
SAVED = "canvas_saved_tokens"  # tokens whose drawing was saved (then replaced): a resend is no loss
MAX_SESSIONS = 4  # each holds up to three (H, W) masks
MAX_SAVED = 256
# Review-counter nonces unique in this process, not per session: the counters' cache is shared by every
# session, so two sessions' first saves must not both be nonce 1 (one would read the other's counts).
_NONCES = itertools.count(1)


def generation(frame_id: int) -> int:
    return st.session_state.get(f"canvas_gen:{frame_id}", 0)


def bump(frame_id: int) -> None:
    """After a save, accept or undo on the frame: end its canvas session (the next drawing starts from
    the mask stored now) and refresh this session's review counters (`webapp.review_counts`)."""
    st.session_state[f"canvas_gen:{frame_id}"] = generation(frame_id) + 1
    st.session_state["review_nonce"] = next(_NONCES)


def token(frame, geometry: CanvasGeometry) -> Token:
    """The token a drawing on `frame` shown at `geometry` is sent with now."""
    return Token(frame.film_id, frame.index, frame.id, generation(frame.id), geometry.canvas_w, geometry.canvas_h)


def applied() -> int:
    """The seq of the last canvas state handled in this session (0 before any)."""
    return st.session_state.get(APPLIED, 0)


@dataclass(frozen=True)
class FrameMasks:
    """The page's masks of a frame: proposal(frame) -> (H, W) bool, `FrameView.proposal` (a new session
    starts from it on a frame nobody corrected); candidates(frame) -> (H, W) bool, `FrameView.candidates`
    with the page's filters (what a toggle click acts on)."""

    proposal: Callable
    candidates: Callable


@dataclass
class Outcome:
    """What applying one state did: saved (film id, Correction row) pairs, the drawings dropped (a
    sentence each, for the restorer), and whether the magnifier was re-centred."""

    saved: list = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    centred: bool = False


def apply(shown: nav.ShownFilm, state: CanvasState | None, author: str, masks: FrameMasks) -> Outcome:
    """Apply `state` (None or already applied: nothing)."""
    outcome = Outcome()
    if state is None or state.seq <= applied():
        return outcome
    for drawing in state.drawings:
        if drawing.seq <= applied():
            continue
        try:
            row = _save(shown.store, drawing, author, masks)
        except Dropped as exc:
            outcome.dropped.append(f"A drawing on frame index {drawing.token.index} was not saved: {exc}.")
            continue
        if row is not None:
            outcome.saved.append((drawing.token.film_id, row))
    if state.magnify is not None and state.magnify[2] > applied() and state.film == shown.film.id:
        x, y, _ = state.magnify
        w, h = shown.film.width, shown.film.height
        st.session_state[f"mx:{shown.film.id}"] = int(np.clip(x, 0, w - 1))
        st.session_state[f"my:{shown.film.id}"] = int(np.clip(y, 0, h - 1))
        outcome.centred = True
    if state.nav > applied() and state.film == shown.film.id:
        nav.go(shown.film.id, int(np.clip(state.target, 0, shown.count - 1)))
    st.session_state[APPLIED] = state.seq
    return outcome


class Dropped(Exception):
    """A drawing that cannot be applied; the message says why."""


def _save(store, drawing: Drawing, author: str, masks: FrameMasks):
    """Autosave one drawing under its token's session; the saved Correction row or None (nothing
    changed, or saved before). Raises Dropped for a drawing that cannot be applied."""
    sessions: OrderedDict = st.session_state.setdefault(SESSIONS, OrderedDict())
    saved: OrderedDict = st.session_state.setdefault(SAVED, OrderedDict())
    key = str(drawing.token)
    if key not in sessions:
        if key in saved:
            return None  # saved under this token already, then replaced (see the module docstring)
        if drawing.token.gen != generation(drawing.token.frame_id):
            raise Dropped("the frame was accepted, undone or saved meanwhile; draw it again")
        frame = frame_queries.frame_at(store, drawing.token.film_id, drawing.token.index)
        if frame is None or frame.id != drawing.token.frame_id:
            raise Dropped("the frame is no longer in its film")
        proposal = masks.proposal(frame)
        h, w = proposal.shape
        geometry = CanvasGeometry(drawing.token.canvas_w, drawing.token.canvas_h, w, h)
        _keep(sessions, key, (frame, geometry, CanvasSession.start(store, frame.id, proposal)))
    sessions.move_to_end(key)
    frame, geometry, session = sessions[key]
    toggles = any(object_operation(o) == "toggle" for o in drawing.objects)
    row = autosave(store, frame.id, {"objects": list(drawing.objects)}, geometry, session, author,
                   predicted=masks.candidates(frame) if toggles else None)
    if row is not None:
        saved[key] = True
        while len(saved) > MAX_SAVED:
            saved.popitem(last=False)
        bump(frame.id)
        # The next session starts from the mask just saved, as CanvasSession.start would read it back.
        following = CanvasSession(base=session.last_mask, base_id=row.id, last_mask=session.last_mask)
        _keep(sessions, str(token(frame, geometry)), (frame, geometry, following))
    return row


def _keep(sessions: OrderedDict, key: str, value: tuple) -> None:
    sessions[key] = value
    while len(sessions) > MAX_SESSIONS:
        sessions.popitem(last=False)
