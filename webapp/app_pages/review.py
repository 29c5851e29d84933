"""Review page (with Correct): the frame with the defect overlay, live filters, magnifier and
previous/current/next flick, keyboard navigation, and a drawing canvas whose every change is saved
as a Correction (the model's proposal is never overwritten).

Executed by st.navigation (webapp/app.py) as a script; also runnable alone by AppTest.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from studio import active, corrections, detection, films, jobs
from webapp import keyboard
from webapp.autosave import CanvasSession, autosave
from webapp.canvas import ADD_COLOR, ERASE_COLOR, TOGGLE_COLOR, CanvasGeometry
from webapp.context import AppContext, app_context, author, choose_film
from webapp.frame_cache import FrameCache
from webapp.frame_view import build_view, encode_jpeg, flick_crops, flick_gif, load_correction
from webapp.overlay import POLARITIES, MaskFilter, component_labels, magnify
from webapp.review_counts import review_counts

# label -> (canvas drawing_mode, colour); the colour tells the server to add, erase or toggle.
TOOLS = {
    "Add brush": ("freedraw", ADD_COLOR), "Erase brush": ("freedraw", ERASE_COLOR),
    "Add rectangle": ("rect", ADD_COLOR), "Erase rectangle": ("rect", ERASE_COLOR),
    "Add polygon": ("polygon", ADD_COLOR), "Erase polygon": ("polygon", ERASE_COLOR),
    "Click a defect (reject / accept)": ("point", TOGGLE_COLOR),
}
ZOOMS = {"fit (960 px)": None, "100 %": 1.0, "200 %": 2.0}


@st.cache_resource(show_spinner=False)
def _frame_cache() -> FrameCache:
    # One per server process, shared by every session: decoded frames keyed by path + checksum.
    return FrameCache(max_entries=24)


def _image(store, frame) -> np.ndarray:
    return _frame_cache().image(store, frame)


def _probs(store, frame) -> np.ndarray | None:
    return _frame_cache().probs(store, frame)


def _filters() -> tuple[MaskFilter, float]:
    sb = st.sidebar
    sb.subheader("Overlay")
    threshold = sb.slider("Threshold", 0.05, 0.95, 0.5, 0.05, key="threshold")
    polarity = sb.radio("Polarity", POLARITIES, horizontal=True, key="polarity",
                        format_func={"both": "both", "dark": "dark only", "light": "light only"}.get)
    min_size = int(sb.number_input("Minimum defect size (px)", 1, 10_000, 1, key="min_size"))
    dilation = sb.slider("Dilation (px)", 0, 10, 0, key="dilation")
    opacity = sb.slider("Opacity", 0.0, 1.0, 0.55, 0.05, key="opacity")
    return MaskFilter(threshold, polarity, min_size, dilation), opacity


def _index_key(film) -> str:
    return f"frame_index:{film.id}"


def _go(film_id: int, index: int) -> None:
    st.session_state[f"frame_index:{film_id}"] = index


def _next_with_detections(store, frames, index: int) -> None:
    for f in frames[index + 1:] + frames[:index]:
        prediction = detection.latest_prediction(store, f.id)
        if prediction is not None and prediction.defect_pixels > 0:
            _go(f.film_id, f.index)
            return
    st.session_state["review_notice"] = "No other frame has detections."


def _next_suggested(store, film) -> None:
    chosen = active.next_frames_to_review(store, film, 1)
    if chosen:
        _go(film.id, chosen[0].index)
    else:
        st.session_state["review_notice"] = "Every frame is reviewed."


def _after_save(frame) -> None:
    """Each saved correction may trigger fine-tuning (every settings.retrain_after corrections)."""
    ctx = app_context()
    job = jobs.maybe_queue_after_correction(ctx.store, frame.film_id, ctx.settings)
    if job is not None:
        st.session_state["review_notice"] = f"{ctx.settings.retrain_after} new corrections: fine-tuning queued (job {job.id})"


def _accept(store, frame, n_frames: int) -> None:
    shown_id, mask = st.session_state.get("shown_mask", (None, None))
    if shown_id != frame.id:
        return
    corrections.save_correction(store, frame.id, mask, author(), kind="accept")
    _after_save(frame)
    _bump_canvas(frame.id)
    _go(frame.film_id, min(frame.index + 1, n_frames - 1))


def _undo(store, frame) -> None:
    try:
        corrections.undo(store, frame.id, author())
    except corrections.NothingToUndo as exc:
        st.session_state["review_notice"] = str(exc)
    _bump_canvas(frame.id)


def _bump_canvas(frame_id: int) -> None:
    # A new key remounts the canvas empty, on top of the mask now stored.
    st.session_state["review_nonce"] = st.session_state.get("review_nonce", 0) + 1
    st.session_state[f"canvas_gen:{frame_id}"] = st.session_state.get(f"canvas_gen:{frame_id}", 0) + 1


def _navigation(ctx: AppContext, film, frames, frame) -> None:
    n = len(frames)
    cols = st.columns(6)
    cols[0].button("◀ Previous", on_click=_go, args=(film.id, max(frame.index - 1, 0)), width="stretch")
    cols[1].button("Next ▶", on_click=_go, args=(film.id, min(frame.index + 1, n - 1)), width="stretch")
    cols[2].button("Next with detections", on_click=_next_with_detections, args=(ctx.store, frames, frame.index),
                   width="stretch")
    cols[3].button("Next suggested", on_click=_next_suggested, args=(ctx.store, film), width="stretch")
    cols[4].button("Accept frame as is", on_click=_accept, args=(ctx.store, frame, n), type="primary",
                   width="stretch")
    cols[5].button("Undo", on_click=_undo, args=(ctx.store, frame), width="stretch")
    keyboard.install(keyboard.REVIEW_KEYS)
    st.caption("Keys: " + keyboard.legend(keyboard.REVIEW_KEYS))


def _counters(ctx: AppContext, film) -> None:
    counts = review_counts(ctx.store, film)
    a, b, c, d = st.columns(4)
    a.metric("Reviewed", f"{counts.reviewed}/{counts.frames}")
    b.metric("Corrected", counts.corrected)
    c.metric("Remaining", counts.frames - counts.reviewed)
    d.metric("Frame", f"{st.session_state[_index_key(film)] + 1}/{counts.frames}")


def _canvas(ctx: AppContext, frame, view) -> None:
    from streamlit_drawable_canvas import st_canvas  # registers its component: only inside a page run

    h, w = view.frame_rgb.shape[:2]
    tool_col, size_col, zoom_col = st.columns([4, 1, 1])
    tool = tool_col.radio("Tool", list(TOOLS), horizontal=True, key="tool")
    brush = size_col.slider("Brush (px)", 1, 60, 8, key="brush")
    zoom = ZOOMS[zoom_col.selectbox("Canvas zoom", list(ZOOMS), key="zoom")]
    geometry = (CanvasGeometry.fit(w, h, 960) if zoom is None
                else CanvasGeometry(round(w * zoom), round(h * zoom), w, h))
    gen = st.session_state.get(f"canvas_gen:{frame.id}", 0)
    key = f"canvas-{frame.id}-{gen}-{geometry.canvas_w}"
    mounted_key, session = st.session_state.get("canvas_session", (None, None))
    if mounted_key != key:  # a new frame, zoom or generation: start from the mask stored now
        session = CanvasSession.start(ctx.store, frame.id, view.predicted)
        st.session_state["canvas_session"] = (key, session)
    mode, colour = TOOLS[tool]
    # Save what the canvas sent before drawing it again: a save reruns at once, so the canvas is sent
    # to the browser once per save (with the new overlay), not twice in quick succession, which can
    # make Streamlit re-create it empty (see webapp/autosave.py).
    _save(ctx, frame, _sent_drawing(key), geometry, session, view)
    result = st_canvas(fill_color=colour, stroke_width=brush, stroke_color=colour,
                       background_image=encode_jpeg(view.picture, geometry.canvas_w),
                       width=geometry.canvas_w, height=geometry.canvas_h, drawing_mode=mode,
                       point_display_radius=max(2, brush // 2), key=key, update_streamlit=True)
    _save(ctx, frame, result.json_data, geometry, session, view)
    st.caption(f"Magenta adds, cyan erases, yellow clicks toggle a whole predicted defect. "
               f"Saved automatically at {w}x{h}. {st.session_state.pop('review_saved', '')}")


def _sent_drawing(key: str) -> dict | None:
    """The drawing the canvas `key` sent for this rerun, read before the canvas is drawn (components
    v2 keep it in st.session_state[key]["drawing"]["raw"]); None before its first send."""
    try:
        drawing = st.session_state[key]["drawing"]["raw"]
    except (KeyError, TypeError, AttributeError):
        return None
    return drawing if isinstance(drawing, dict) else None


def _save(ctx: AppContext, frame, drawing: dict | None, geometry: CanvasGeometry, session: CanvasSession,
          view) -> None:
    """Autosave `drawing`; after a save, rerun to redraw the overlay in Fig. 5 colours."""
    if drawing is None:
        return
    saved = autosave(ctx.store, frame.id, drawing, geometry, session, author(), predicted=view.predicted)
    if saved is not None:
        _after_save(frame)
        st.session_state["review_saved"] = f"Saved correction {saved.id}"
        st.session_state["review_nonce"] = st.session_state.get("review_nonce", 0) + 1
        st.rerun()


def _magnifier(ctx: AppContext, frames, frame, view) -> None:
    h, w = view.frame_rgb.shape[:2]
    count, labels, areas = component_labels(view.shown_mask)
    order = [int(i) for i in np.argsort(-areas[1:]) + 1][:50] if count > 1 else []
    choice = st.selectbox("Magnify defect", [0] + order, key=f"magnify:{frame.id}",
                          format_func=lambda i: "choose a point below" if i == 0 else f"defect {i} ({areas[i]} px)")
    factor = st.slider("Zoom factor", 2, 16, 6, key="zoom_factor")
    window = max(8, 384 // factor)
    if choice:
        ys, xs = np.nonzero(labels == choice)
        centre = (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5)
    else:
        # Keyed per film: a remembered position may not fit another film's size.
        centre = (st.slider("Centre x", 0, w - 1, w // 2, key=f"mx:{frame.film_id}"),
                  st.slider("Centre y", 0, h - 1, h // 2, key=f"my:{frame.film_id}"))
    left, right = st.columns(2)
    left.image(magnify(view.picture, centre, window, factor), caption=f"{factor}x around ({centre[0]:.0f}, {centre[1]:.0f})")
    images = [_image(ctx.store, frames[frame.prev_index]), view.image, _image(ctx.store, frames[frame.next_index])]
    crops = flick_crops(images, centre, window, factor)
    right.image(flick_gif(crops), caption="flick: previous / current / next (same window)")


def render(ctx: AppContext) -> None:
    st.title("Review")
    film = choose_film(ctx)
    if film is None:
        return
    flt, opacity = _filters()
    frames = films.film_frames(ctx.store, film)
    if not frames:
        st.warning("This film has no frames.")
        return
    idx_key = _index_key(film)
    st.session_state[idx_key] = int(np.clip(st.session_state.get(idx_key, 0), 0, len(frames) - 1))
    frame = frames[st.session_state[idx_key]]
    _counters(ctx, film)
    _navigation(ctx, film, frames, frame)
    if notice := st.session_state.pop("review_notice", None):
        st.info(notice)
    view = build_view(ctx.store, frame, flt, opacity, load_image=_image, load_pred=_probs, load_mask=load_correction)
    # One entry per session (not per frame): a 2K mask is 2 MB.
    st.session_state["shown_mask"] = (frame.id, view.shown_mask)
    status = "no prediction yet (start detection on the Films page)" if view.probs is None else (
        "corrected: green agreed, blue false positive, red missed" if view.corrected is not None
        else "model's proposal (orange)")
    st.markdown(f"**Frame {frame.number}** (index {frame.index}) - {status}")
    _canvas(ctx, frame, view)
    with st.expander("Magnifier and flick", expanded=True):
        _magnifier(ctx, frames, frame, view)
    # While the restorer looks at this frame, decode the next one and its next neighbour.
    upcoming = frames[min(frame.index + 1, len(frames) - 1)]
    _frame_cache().prefetch(ctx.store, [upcoming, frames[upcoming.next_index]])
    if st.toggle("Show the frame at full resolution (1:1, lossless)", key="full_res"):
        # Behind a toggle: PNG-encoding a 2K frame on every rerun would cost ~100 ms.
        st.image(view.picture, output_format="PNG")


render(app_context())
