"""The Review page's magnifier: a window of the frame enlarged 2-16x (nearest-neighbour) beside a
*flick* GIF of the same window in the previous, current and next frames, centred on a chosen defect
or on a point (the sliders, or a shift-click on the review canvas)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import streamlit as st

from studio.frame_queries import FrameWindow
from studio.frame_sources import SourceFrameError
from webapp import frame_view
from webapp.frame_view import FrameView
from webapp.overlay import component_labels, magnify
from webapp.widget_state import keep


def controls(frame, view: FrameView, centred: bool) -> tuple[tuple[float, float], int, int]:
    """The magnifier's widgets: (centre (x, y) in image px, window size, zoom factor). A shift-click on
    the canvas (`centred`) set the point; it shows that point, not a chosen defect."""
    h, w = view.frame_rgb.shape[:2]
    count, labels, areas = component_labels(view.shown_mask)
    order = [int(i) for i in np.argsort(-areas[1:]) + 1][:50] if count > 1 else []
    if centred:
        st.session_state[f"magnify:{frame.id}"] = 0
    choice = st.selectbox("Magnify defect", [0] + order, key=f"magnify:{frame.id}",
                          format_func=lambda i: "a point (shift-click the canvas or move the sliders)"
                          if i == 0 else f"defect {i} ({areas[i]} px)")
    factor = st.slider("Zoom factor", 2, 16, **keep("zoom_factor", 6))
    if choice:
        ys, xs = np.nonzero(labels == choice)
        centre = (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5)
    else:
        # Keyed per film: a remembered position may not fit another film's size. Their value lives in
        # the session state only (a shift-click sets it there).
        st.session_state.setdefault(f"mx:{frame.film_id}", w // 2)
        st.session_state.setdefault(f"my:{frame.film_id}", h // 2)
        centre = (st.slider("Centre x", 0, w - 1, key=f"mx:{frame.film_id}"),
                  st.slider("Centre y", 0, h - 1, key=f"my:{frame.film_id}"))
    return centre, max(8, 384 // factor), factor


def images(store, shown: FrameWindow, view: FrameView, picture: np.ndarray, centre: tuple[float, float],
           window: int, factor: int, load_image: Callable) -> None:
    """The magnified window of the shown picture beside the flick GIF of previous, current and next frame
    (`load_image(store, frame)` reads a neighbour)."""
    left, right = st.columns(2)
    left.image(magnify(picture, centre, window, factor),
               caption=f"{factor}x around ({centre[0]:.0f}, {centre[1]:.0f})")
    read, unreadable = [], []
    for other in (shown.prev, None, shown.next):
        try:
            read.append(view.image if other is None else load_image(store, other))
        except SourceFrameError:  # a moved or changed neighbour: the flick shows the current frame there
            read.append(view.image)
            unreadable.append(str(other.number))
    crops = frame_view.flick_crops(read, centre, window, factor)  # through the module: tests wrap it
    caption = "flick: previous / current / next (same window)"
    if unreadable:
        numbers = ", ".join(dict.fromkeys(unreadable))
        caption += f"; frame {numbers} could not be read (its source file was moved or changed)"
    right.image(frame_view.flick_gif(crops), caption=caption)
