"""Review page (with Correct): the frame with the defect overlay, live filters, magnifier and
previous/current/next flick, keyboard navigation, and a drawing canvas whose every change is saved
as a Correction (the model's proposal is never overwritten).

Executed by st.navigation (webapp/app.py) as a script; also runnable alone by AppTest.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from studio import corrections, detection, evidence, frame_queries, jobs
from studio.frame_sources import SourceFrameError
from webapp import frame_navigation as nav
from webapp import keyboard
from webapp.autosave import CanvasSession, autosave
from webapp.canvas import ADD_COLOR, ERASE_COLOR, KEEP_DRAGGING_SCRIPT, TOGGLE_COLOR, CanvasGeometry
from webapp.context import AppContext, app_context, author, choose_film
from webapp.frame_cache import FrameCache
from webapp.frame_view import build_view, encode_jpeg, flick_crops, flick_gif, load_correction
from webapp.overlay import POLARITIES, MaskFilter, component_labels, magnify
from webapp.review_counts import review_counts
from webapp.widget_state import keep

# label -> (canvas drawing_mode, colour); the colour tells the server to add, erase or toggle.
TOOLS = {
    "Add brush": ("freedraw", ADD_COLOR), "Erase brush": ("freedraw", ERASE_COLOR),
    "Add rectangle": ("rect", ADD_COLOR), "Erase rectangle": ("rect", ERASE_COLOR),
    "Add polygon": ("polygon", ADD_COLOR), "Erase polygon": ("polygon", ERASE_COLOR),
    "Click a defect (reject / accept)": ("point", TOGGLE_COLOR),
}
FIT_WIDTH = 960
ZOOMS = {f"fit ({FIT_WIDTH} px)": None, "100 %": 1.0, "200 %": 2.0}
# The filters are review aids (look at the dust only, at faint candidates, at single pixels): were they
# to shape what is saved, a polarity filter left on would store an empty or half mask under "accept".
DISPLAY_ONLY = (f"These change only what is painted. Accepting or drawing starts from the model's full "
                f"proposal (probability >= {detection.THRESHOLD:g}); click a painted defect to add or reject it.")


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
    sb.caption(DISPLAY_ONLY)
    threshold = sb.slider("Threshold", 0.05, 0.95, step=0.05, **keep("threshold", detection.THRESHOLD))
    polarity = sb.radio("Polarity", POLARITIES, horizontal=True, **keep("polarity"),
                        format_func={"both": "both", "dark": "dark only", "light": "light only"}.get)
    min_size = int(sb.number_input("Minimum defect size (px)", 1, 10_000, **keep("min_size", 1)))
    dilation = sb.slider("Dilation (px)", 0, 10, **keep("dilation", 0))
    opacity = sb.slider("Opacity", 0.0, 1.0, step=0.05, **keep("opacity", 0.55))
    return MaskFilter(threshold, polarity, min_size, dilation), opacity


def _after_save(film_id: int) -> None:
    """Each saved correction may trigger fine-tuning (every settings.retrain_after corrections)."""
    ctx = app_context()
    job = jobs.maybe_queue_after_correction(ctx.store, film_id, ctx.settings)
    if job is not None:
        nav.notice(f"{ctx.settings.retrain_after} new corrections: fine-tuning queued (job {job.id})")


def _accept(shown: nav.ShownFilm) -> None:
    """Store the shown frame's current correction, else the model's proposal, as accepted
    (FrameView.saved_mask): never the filtered overlay; then move on."""
    frame = shown.current()
    try:
        corrections.accept_frame(shown.store, frame.id, author())
    except LookupError as exc:  # no prediction yet: nothing to accept
        nav.notice(str(exc))
        return
    _after_save(frame.film_id)
    _bump_canvas(frame.id)
    nav.step(shown, +1)


def _undo(shown: nav.ShownFilm) -> None:
    frame = shown.current()
    try:
        corrections.undo(shown.store, frame.id, author())
    except corrections.NothingToUndo as exc:
        nav.notice(str(exc))
    _bump_canvas(frame.id)


def _range() -> tuple[int, int] | None:
    """The frame numbers typed in "Accept a range of frames" (either order), or None."""
    low, high = st.session_state.get("bulk_from"), st.session_state.get("bulk_to")
    return None if low is None or high is None else (int(low), int(high))


def _accept_range(shown: nav.ShownFilm) -> None:
    numbers = _range()
    ids = [] if numbers is None else frame_queries.frame_ids_numbered(shown.store, shown.film, numbers)
    accepted, reviewed, unpredicted = corrections.accept_unreviewed(shown.store, ids, author())
    st.session_state["bulk_confirm"] = False  # each range is confirmed on its own
    nav.notice(f"Accepted the model's proposal on {len(accepted)} frames; {len(reviewed)} already reviewed kept "
               f"their mask" + (f", {len(unpredicted)} not predicted yet" if unpredicted else "") + ".")
    if accepted:
        _after_save(shown.film.id)
        _bump_canvas(shown.current().id)


def _bulk_accept(shown: nav.ShownFilm) -> None:
    """Accept a range of frames as the model proposed them, after an explicit confirmation."""
    with st.sidebar.expander("Accept a range of frames"):
        left, right = st.columns(2)
        left.number_input("From frame number", min_value=0, value=None, step=1, key="bulk_from")
        right.number_input("To frame number", min_value=0, value=None, step=1, key="bulk_to")
        numbers = _range()
        chosen = 0 if numbers is None else frame_queries.count_numbered(shown.store, shown.film, numbers)
        st.checkbox(f"Accept the model's proposal on the {chosen} frames of this range that nobody has "
                    "reviewed (reviewed frames keep their mask)", key="bulk_confirm", disabled=not chosen)
        st.button("Accept range", on_click=_accept_range, args=(shown,),
                  disabled=not (chosen and st.session_state.get("bulk_confirm")))


def _toggle_overlay() -> None:
    st.session_state["hide_overlay"] = not st.session_state.get("hide_overlay", False)


def _bump_canvas(frame_id: int) -> None:
    # A new key remounts the canvas empty, on top of the mask now stored.
    st.session_state["review_nonce"] = st.session_state.get("review_nonce", 0) + 1
    st.session_state[f"canvas_gen:{frame_id}"] = st.session_state.get(f"canvas_gen:{frame_id}", 0) + 1


def _navigation(shown: nav.ShownFilm, window: frame_queries.FrameWindow) -> None:
    """One row of buttons above the canvas; shots and go-to in the sidebar (the canvas stays high)."""
    cols = st.columns(7)
    cols[0].button(keyboard.PREVIOUS, on_click=nav.step, args=(shown, -1), width="stretch")
    cols[1].button(keyboard.NEXT, on_click=nav.step, args=(shown, +1), width="stretch")
    cols[2].button("Next with detections", on_click=nav.next_with_detections, args=(shown,), width="stretch")
    cols[3].button("Next suggested", on_click=nav.next_suggested, args=(shown,), width="stretch")
    cols[4].button("Accept frame as is", on_click=_accept, args=(shown,), type="primary",
                   width="stretch", help="Stores the frame's correction, or the model's full proposal if it has "
                                         "none; the overlay filters do not apply.")
    cols[5].button("Undo", on_click=_undo, args=(shown,), width="stretch")
    cols[6].button(keyboard.OVERLAY, on_click=_toggle_overlay, width="stretch",
                   help="Show the frame without the overlay, and back (key o)")
    sb = st.sidebar
    sb.subheader("Navigate")
    left, right = sb.columns(2)
    left.button(keyboard.PREVIOUS_SHOT, on_click=nav.shot, args=(shown, -1), width="stretch")
    right.button(keyboard.NEXT_SHOT, on_click=nav.shot, args=(shown, +1), width="stretch")
    sb.number_input("Go to frame number", min_value=0, value=None, step=1, key=nav.GOTO, on_change=nav.go_to_number,
                    args=(shown,), placeholder=f"{window.first.number}-{window.last.number}")
    _bulk_accept(shown)


def _counters(ctx: AppContext, film, frame) -> None:
    """In the sidebar: above the canvas they pushed it 100 px down the page."""
    counts = review_counts(ctx.store, film)
    a, b = st.sidebar.columns(2)
    a.metric("Reviewed", f"{counts.reviewed}/{counts.frames}")
    b.metric("Corrected", counts.corrected)
    a.metric("Remaining", counts.frames - counts.reviewed)
    b.metric("Frame", f"{frame.index + 1}/{counts.frames}")


def _geometry(w: int, h: int, zoom: float | None) -> CanvasGeometry:
    """zoom None: fit the canvas to FIT_WIDTH, enlarging a narrower film too (a 480 px scan at 960 px)."""
    if zoom is None:
        return CanvasGeometry.fit(w, h, FIT_WIDTH)
    return CanvasGeometry(round(w * zoom), round(h * zoom), w, h)


def _canvas(ctx: AppContext, frame, view, picture: np.ndarray, note: str) -> None:
    from streamlit_drawable_canvas import st_canvas  # registers its component: only inside a page run

    h, w = view.frame_rgb.shape[:2]
    tool_col, size_col, zoom_col = st.columns([4, 1, 1])
    tool = tool_col.radio("Tool", list(TOOLS), horizontal=True, **keep("tool"))
    brush = size_col.slider("Brush (px)", 1, 60, **keep("brush", 8))
    zoom = ZOOMS[zoom_col.selectbox("Canvas zoom", list(ZOOMS), **keep("zoom"))]
    geometry = _geometry(w, h, zoom)
    gen = st.session_state.get(f"canvas_gen:{frame.id}", 0)
    key = f"canvas-{frame.id}-{gen}-{geometry.canvas_w}"
    mounted_key, session = st.session_state.get("canvas_session", (None, None))
    if mounted_key != key:  # a new frame, zoom or generation: start from the mask stored now
        session = CanvasSession.start(ctx.store, frame.id, view.proposal)
        st.session_state["canvas_session"] = (key, session)
    mode, colour = TOOLS[tool]
    # Save what the canvas sent before drawing it again: a save reruns at once, so the canvas is sent
    # to the browser once per save (with the new overlay), not twice in quick succession, which can
    # make Streamlit re-create it empty (see webapp/autosave.py).
    _save(ctx, frame, _sent_drawing(key), geometry, session, view)
    result = st_canvas(fill_color=colour, stroke_width=brush, stroke_color=colour,
                       background_image=encode_jpeg(picture, geometry.canvas_w),
                       width=geometry.canvas_w, height=geometry.canvas_h, drawing_mode=mode,
                       point_display_radius=max(2, brush // 2), key=key, update_streamlit=True)
    _save(ctx, frame, result.json_data, geometry, session, view)
    # Below the canvas, so a message that comes and goes never moves it.
    st.caption(f"Magenta adds, cyan erases, yellow clicks toggle a whole predicted defect. "
               f"Saved automatically at {w}x{h}. {st.session_state.pop('review_saved', '')}{note}  \n"
               f"Keys: {keyboard.legend(keyboard.REVIEW_KEYS)}")


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
    saved = autosave(ctx.store, frame.id, drawing, geometry, session, author(), predicted=view.candidates)
    if saved is not None:
        _after_save(frame.film_id)
        st.session_state["review_saved"] = f"Saved correction {saved.id}"
        st.session_state["review_nonce"] = st.session_state.get("review_nonce", 0) + 1
        st.rerun()


def _magnifier(ctx: AppContext, shown: frame_queries.FrameWindow, view, picture: np.ndarray) -> None:
    frame = shown.frame
    h, w = view.frame_rgb.shape[:2]
    count, labels, areas = component_labels(view.shown_mask)
    order = [int(i) for i in np.argsort(-areas[1:]) + 1][:50] if count > 1 else []
    choice = st.selectbox("Magnify defect", [0] + order, key=f"magnify:{frame.id}",
                          format_func=lambda i: "choose a point below" if i == 0 else f"defect {i} ({areas[i]} px)")
    factor = st.slider("Zoom factor", 2, 16, **keep("zoom_factor", 6))
    window = max(8, 384 // factor)
    if choice:
        ys, xs = np.nonzero(labels == choice)
        centre = (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5)
    else:
        # Keyed per film: a remembered position may not fit another film's size.
        centre = (st.slider("Centre x", 0, w - 1, w // 2, key=f"mx:{frame.film_id}"),
                  st.slider("Centre y", 0, h - 1, h // 2, key=f"my:{frame.film_id}"))
    left, right = st.columns(2)
    left.image(magnify(picture, centre, window, factor),
               caption=f"{factor}x around ({centre[0]:.0f}, {centre[1]:.0f})")
    images, unreadable = [], []
    for other in (shown.prev, None, shown.next):
        try:
            images.append(view.image if other is None else _image(ctx.store, other))
        except SourceFrameError:  # a moved or changed neighbour: the flick shows the current frame there
            images.append(view.image)
            unreadable.append(str(other.number))
    crops = flick_crops(images, centre, window, factor)
    caption = "flick: previous / current / next (same window)"
    if unreadable:
        numbers = ", ".join(dict.fromkeys(unreadable))
        caption += f"; frame {numbers} could not be read (its source file was moved or changed)"
    right.image(flick_gif(crops), caption=caption)


def _status(frame, view) -> tuple[str, str]:
    """(one-line status above the canvas, note for the caption below it)."""
    status = "no prediction yet (start detection on the Films page)" if view.probs is None else (
        "accepted as is: the model's proposal (orange), not checked defect by defect; an edit makes it "
        "training evidence" if view.evidence == evidence.ACCEPTED
        else "corrected: green agreed, blue false positive, red missed" if view.corrected is not None
        else "model's proposal (orange)")
    if st.session_state.get("hide_overlay"):
        status += "; overlay hidden (o shows it)"
    note = ""
    if view.corrected is None and view.probs is not None and not np.array_equal(view.predicted, view.proposal):
        note = (f" The filters paint {int(view.predicted.sum())} px, Accept stores the full proposal's "
                f"{int(view.proposal.sum())} px.")
    return f"**Frame {frame.number}** (index {frame.index}) - {status}", note


def render(ctx: AppContext) -> None:
    # No page title and no counters above the canvas: the sidebar's navigation names the page, and the
    # canvas starts right under one row of buttons, one status line and the tools.
    film = choose_film(ctx)
    if film is None:
        return
    # Only the frames shown (a feature has 130 000: loading them all took 3 s per run).
    window = frame_queries.frame_window(ctx.store, film, st.session_state.get(nav.index_key(film.id), 0))
    if window is None:
        st.warning("This film has no frames.")
        return
    frame = window.frame
    st.session_state[nav.index_key(film.id)] = frame.index
    _counters(ctx, film, frame)
    _navigation(nav.ShownFilm(ctx.store, film, window.count), window)
    flt, opacity = _filters()
    if notice := st.session_state.pop(nav.NOTICE, None):
        st.toast(notice)  # floats over the page: an st.info here moved the canvas 72 px down and back
    try:
        view = build_view(ctx.store, frame, flt, opacity, load_image=_image, load_pred=_probs,
                          load_mask=load_correction)
    except SourceFrameError as exc:  # a source frame referenced in place was moved or changed
        st.error(str(exc))  # names the film, frame and file, and what to do; the navigation above still works
        keyboard.install(keyboard.REVIEW_KEYS)
        return
    picture = view.frame_rgb if st.session_state.get("hide_overlay") else view.picture
    status, note = _status(frame, view)
    st.markdown(status)
    _canvas(ctx, frame, view, picture, note)
    with st.expander("Magnifier and flick", expanded=True):
        _magnifier(ctx, window, view, picture)
    # While the restorer looks at this frame, decode the next one and its next neighbour.
    _frame_cache().prefetch(ctx.store, list(window.upcoming))
    if st.toggle("Show the frame at full resolution (1:1, lossless)", key="full_res"):
        # Behind a toggle: PNG-encoding a 2K frame on every rerun would cost ~100 ms.
        st.image(picture, output_format="PNG")
    keyboard.install(keyboard.REVIEW_KEYS)  # last: its (empty) element adds no gap above the canvas
    st.html(KEEP_DRAGGING_SCRIPT, unsafe_allow_javascript=True)  # a rectangle may be dragged past the edge


render(app_context())
