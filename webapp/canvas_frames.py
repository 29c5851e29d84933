"""The frames the review canvas is sent on one run (webapp/review_canvas.py): the shown one and its
neighbours within `review_canvas.WINDOW`, each with its status line, drawing token and picture, so a
navigation key in the browser shows the next frame without waiting for the server.

A picture is built (`build_view`: filters, Fig. 5 overlay; with the overlay hidden, the frame alone) and
JPEG-encoded once and kept in a process-wide `PictureCache`, keyed by what it depends on (`picture_key`):
the checksums of the frame file and of its prediction and correction (a save or a new prediction gives a
new key; the same content in another store the same one), the correction's evidence, the filters and the
opacity (unless the overlay is hidden) and the width. The shown frame and a
neighbour share the key, so the picture sent ahead is the one shown. The page sends the shown frame and
the neighbours already cached with the canvas, and builds the others after it (`missing_neighbours`):
a filter change draws the frame before five neighbours are built. A status line comes from the rows
alone (`status`), so a neighbour costs no view until its picture is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from studio import corrections, detection, evidence, frame_queries
from studio.frame_sources import SourceFrameError
from webapp import canvas_input
from webapp.canvas import CanvasGeometry
from webapp.frame_view import FrameView
from webapp.overlay import MaskFilter, to_rgb_u8
from webapp.review_canvas import WINDOW, PictureCache, frame_entry, picture


def status(predicted: bool, kind: str | None, corrected: bool, hide_overlay: bool) -> str:
    """The status after "Frame N (index i) - ": what the overlay shows, for a frame with a prediction
    (`predicted`), whose current correction (if `corrected`) is of evidence `kind`."""
    text = "no prediction yet (start detection on the Films page)" if not predicted else (
        "accepted as is: the model's proposal (orange), not checked defect by defect; an edit makes it "
        "training evidence" if kind == evidence.ACCEPTED
        else "corrected: green agreed, blue false positive, red missed" if corrected
        else "model's proposal (orange)")
    return text + ("; overlay hidden (o shows it)" if hide_overlay else "")


def view_status(view: FrameView, hide_overlay: bool) -> str:
    return status(view.probs is not None, view.evidence, view.corrected is not None, hide_overlay)


def filter_note(view: FrameView) -> str:
    """For the caption: when the filters hide part of the proposal that Accept would store."""
    if view.corrected is None and view.probs is not None and not np.array_equal(view.predicted, view.proposal):
        return (f" The filters paint {int(view.predicted.sum())} px, Accept stores the full proposal's "
                f"{int(view.proposal.sum())} px.")
    return ""


@dataclass(frozen=True)
class Look:
    """How the canvas paints a frame: the page's filters and opacity, and whether the overlay is hidden."""

    flt: MaskFilter
    opacity: float
    hide_overlay: bool


@dataclass(frozen=True)
class FrameRows:
    """A frame's rows that decide its picture and status: the frame, its prediction and correction."""

    frame: object
    prediction: object
    correction: object

    @classmethod
    def read(cls, store, frame) -> "FrameRows":
        return cls(frame, detection.latest_prediction(store, frame.id), corrections.current_correction(store, frame.id))

    @property
    def kind(self) -> str | None:
        """The current correction's evidence (studio.evidence), None without one."""
        return None if self.correction is None else evidence.correction_evidence(self.correction)

    def status(self, hide_overlay: bool) -> str:
        return status(self.prediction is not None, self.kind, self.correction is not None, hide_overlay)


def picture_key(rows: FrameRows, look: Look, width: int) -> tuple:
    """What a picture depends on (content checksums, not row ids); with the overlay hidden only the frame
    file and the width."""
    where = (rows.frame.sha256, getattr(rows.frame, "source_path", None))  # an in-place frame: its file
    if look.hide_overlay:
        return (*where, "plain", width)
    return (*where, rows.prediction and rows.prediction.sha256, rows.correction and rows.correction.sha256,
            rows.kind, look.flt, look.opacity, width)


@dataclass(frozen=True)
class Window:
    """The frames around the shown one that the canvas holds: {index: FrameRows}, the shown index excluded."""

    neighbours: dict[int, FrameRows]

    @classmethod
    def around(cls, store, film, frame, count: int) -> "Window":
        behind, ahead = WINDOW
        indices = range(max(frame.index - behind, 0), min(frame.index + ahead, count - 1) + 1)
        found = frame_queries.frames_at(store, film, [i for i in indices if i != frame.index])
        return cls({i: FrameRows.read(store, f) for i, f in sorted(found.items())})


def shown_entry(store, frame, view: FrameView | None, error: str | None, geometry: CanvasGeometry, look: Look,
                cache: PictureCache, have: frozenset[str]) -> dict:
    """The shown `frame` (its `view`, or None with the `error` that kept it from being read): its
    picture at the canvas's width, and at full resolution (`detail`, for the wheel zoom) when the film
    is wider than the canvas."""
    if view is None:
        return frame_entry(frame, None, error or "", {})
    rows = FrameRows.read(store, frame)
    shown = view.frame_rgb if look.hide_overlay else view.picture
    full_w = shown.shape[1]
    widths = {"picture": geometry.canvas_w} | ({"detail": full_w} if full_w > geometry.canvas_w else {})
    pictures = {name: cache.get(picture_key(rows, look, w), lambda w=w: picture(shown, w)) for name, w in widths.items()}
    return frame_entry(frame, canvas_input.token(frame, geometry), view_status(view, look.hide_overlay), pictures,
                       have)


def cached_neighbours(window: Window, geometry: CanvasGeometry, look: Look, cache: PictureCache,
                      have: frozenset[str]) -> list[dict]:
    """Entries of the neighbours whose picture is cached already (nothing is built)."""
    entries = []
    for rows in window.neighbours.values():
        if (pic := cache.peek(picture_key(rows, look, geometry.canvas_w))) is not None:
            entries.append(_neighbour(rows, geometry, look, pic, have))
    return entries


def missing_neighbours(store, window: Window, geometry: CanvasGeometry, look: Look, cache: PictureCache,
                       view_of: Callable[[object], FrameView], load_image: Callable, have: frozenset[str]) -> list[dict]:
    """Entries of the neighbours `cached_neighbours` left out, their pictures built now (`view_of(frame)`,
    or `load_image(store, frame)` alone with the overlay hidden). A neighbour that cannot be read is
    sent without a picture: its error is its status, and the page shows it when it is reached."""
    entries = []
    for rows in window.neighbours.values():
        key = picture_key(rows, look, geometry.canvas_w)
        if cache.peek(key) is not None:
            continue
        frame = rows.frame

        def build(frame=frame) -> dict:
            rgb = to_rgb_u8(load_image(store, frame)) if look.hide_overlay else view_of(frame).picture
            return picture(rgb, geometry.canvas_w)
        try:
            pic = cache.get(key, build)
        except SourceFrameError as exc:
            entries.append(frame_entry(frame, None, str(exc), {}))
            continue
        entries.append(_neighbour(rows, geometry, look, pic, have))
    return entries


def _neighbour(rows: FrameRows, geometry: CanvasGeometry, look: Look, pic: dict, have: frozenset[str]) -> dict:
    return frame_entry(rows.frame, canvas_input.token(rows.frame, geometry), rows.status(look.hide_overlay),
                       {"picture": pic}, have)
