"""The Review page's canvas: our own Streamlit component (components v2; vanilla JavaScript and CSS in
webapp/frontend/, no build step) and what travels between it and the server.

streamlit-drawable-canvas made a restorer wait: it sent a stroke 200 ms after mouse-up, the page keyed
it per frame (a new component, and a new decode of its background, on every frame) and each key press
was a button click rerunning the whole page (issue 14). This canvas stays mounted across frames (one
`KEY`), holds the pictures of the next and previous frames (`WINDOW`) so a navigation key shows the next
frame at once, sends a drawing at mouse-up, and zooms (wheel) and pans (middle button, space + drag)
in the browser alone.

Server -> browser (`mount(data, on_change)`, then `mount_more`): see the header of
webapp/frontend/review_canvas.js; the page builds it (webapp/app_pages/review.py) from `frame_entry` and
`picture`. A picture travels once: the browser lists the pictures it holds (`CanvasState.have`) and an
entry names those by key alone.
Browser -> server: one state "review", parsed by `CanvasState.from_browser`; the page applies it
(webapp/canvas_input.py) in the component's change callback, before any script body runs. A drawing's
objects are the fabric-style JSON that webapp/canvas.py composites, in canvas px of the `Token` they
were drawn under.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from webapp.frame_view import encode_jpeg

KEY = "review-canvas"
MORE_KEY = "review-canvas-more"
NAME = "correlnet.review_canvas"
FRONTEND = Path(__file__).resolve().parent / "frontend"
WINDOW = (2, 3)  # frames whose pictures the browser holds behind / ahead of the shown one


def component_js() -> str:
    """The component's JavaScript: the typing rule it shares with the key listener, then the canvas."""
    return (FRONTEND / "typing.js").read_text() + "\n" + (FRONTEND / "review_canvas.js").read_text()


@functools.cache
def _component() -> Callable[..., Any]:
    # Registered on first use, inside a page run (no work at import time); the mount call re-registers
    # it on a new runtime (AppTest makes one per test).
    return st.components.v2.component(NAME, js=component_js(), css=(FRONTEND / "review_canvas.css").read_text(),
                                      isolate_styles=True)


def mount(data: dict, on_change: Callable[[], None]) -> None:
    """Draw the canvas with `data` (JSON-serialisable, the layout in review_canvas.js's header).
    `on_change` runs when the browser sends a new state, before the script (or a page switch) runs."""
    _component()(key=KEY, data=data, on_review_change=on_change)


def mount_more(run: int, frames: list[dict]) -> None:
    """Hand the canvas of run `run` (data["run"]) more frame entries: the neighbours built after it was
    drawn, so a filter change shows the frame without waiting for them. Draws nothing itself."""
    _component()(key=MORE_KEY, data={"more": True, "run": run, "frames": frames}, height=0)


@dataclass(frozen=True)
class Token:
    """What a drawing is drawn on: the frame (its film, index and id), the generation of its canvas
    session (a new one after each save, accept or undo: a new session starts from the mask stored
    then) and the canvas size its coordinates are in."""

    film_id: int
    index: int
    frame_id: int
    gen: int
    canvas_w: int
    canvas_h: int

    def __str__(self) -> str:
        return f"{self.film_id}.{self.index}.{self.frame_id}.{self.gen}.{self.canvas_w}x{self.canvas_h}"

    @classmethod
    def parse(cls, text: Any) -> "Token | None":
        """The token `str(token)` wrote, or None for anything else."""
        try:
            film_id, index, frame_id, gen, size = str(text).split(".")
            canvas_w, canvas_h = size.split("x")
            token = cls(int(film_id), int(index), int(frame_id), int(gen), int(canvas_w), int(canvas_h))
        except ValueError:
            return None
        return token if min(token.canvas_w, token.canvas_h) > 0 else None


@dataclass(frozen=True)
class Drawing:
    """The objects drawn under one token (all of them, in drawing order); seq: the state it changed in."""

    token: Token
    seq: int
    objects: tuple[dict, ...]


@dataclass(frozen=True)
class CanvasState:
    """The browser's state "review": seq (counts every send), film, target (the frame index navigated
    to) and nav (the seq of that navigation), drawings, magnify ((x, y) image point, seq) or None, and
    have: the keys of the pictures the browser holds (sent by key alone)."""

    seq: int
    film: int
    target: int
    nav: int
    drawings: tuple[Drawing, ...]
    magnify: tuple[float, float, int] | None
    have: frozenset[str] = frozenset()

    @classmethod
    def from_browser(cls, value: Any) -> "CanvasState | None":
        """Parse what the component sent; None when it sent nothing (yet) or something malformed."""
        try:
            drawings = []
            for d in value.get("drawings") or []:
                token = Token.parse(d.get("token"))
                objects = d.get("objects")
                if token is not None and isinstance(objects, list):
                    drawings.append(Drawing(token, int(d.get("seq", 0)),
                                            tuple(o for o in objects if isinstance(o, dict))))
            m = value.get("magnify")
            magnify = None if not m else (float(m["x"]), float(m["y"]), int(m["n"]))
            have = frozenset(str(k) for k in value.get("have") or [])
            return cls(int(value["seq"]), int(value["film"]), int(value["target"]), int(value["nav"]),
                       tuple(drawings), magnify, have)
        except (AttributeError, KeyError, TypeError, ValueError):
            return None


def sent_state() -> CanvasState | None:
    """What the canvas sent for this run, read before it is drawn again; None before its first send."""
    value = st.session_state.get(KEY)
    try:
        return CanvasState.from_browser(value["review"]) if value is not None else None
    except (KeyError, TypeError):
        return None


def picture(rgb: np.ndarray, width: int) -> dict[str, str]:
    """{key, url}: the (H, W, 3) uint8 picture as a JPEG data URL `width` px wide (never enlarged: the
    browser enlarges it pixel by pixel); key names its content, so the browser decodes it once."""
    data = encode_jpeg(rgb, min(width, rgb.shape[1]))
    return {"key": hashlib.blake2b(data, digest_size=8).hexdigest(),
            "url": "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")}


def frame_entry(frame, token: Token | None, status: str, pictures: dict[str, dict],
                have: frozenset[str] = frozenset()) -> dict:
    """One frame as the canvas shows it: token None for a frame that takes no drawing (unreadable). A
    picture the browser holds (its key in `have`) goes by key alone."""
    sent = {name: {"key": pic["key"]} if pic["key"] in have else pic for name, pic in pictures.items()}
    return {"index": int(frame.index), "number": int(frame.number), "status": status,
            "token": None if token is None else str(token), **sent}


class PictureCache:
    """A process-wide, thread-safe LRU of canvas pictures (`picture`'s {key, url}), keyed by everything a
    picture depends on (frame file, prediction, correction, filters, width): a frame is built and encoded
    once, as a neighbour and then as the frame shown. Holds at most `max_bytes` of data URLs (a 2K
    frame's full-resolution detail is ~1 MB, its 960 px picture ~150 kB); the newest stays even when
    larger."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, dict[str, str]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def peek(self, key: tuple) -> dict[str, str] | None:
        """The picture cached under `key`, or None (nothing is built)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def get(self, key: tuple, build: Callable[[], dict[str, str]]) -> dict[str, str]:
        """The picture under `key`, built (outside the lock) and kept when missing."""
        if (value := self.peek(key)) is not None:
            return value
        value = build()
        with self._lock:
            if key not in self._items:
                self._items[key] = value
                self._bytes += len(value["url"])
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old["url"])
        return value

    @property
    def nbytes(self) -> int:
        """The bytes of data URL held now."""
        return self._bytes
