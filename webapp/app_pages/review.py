"""Review page (with Correct): the frame with the defect overlay, live filters, magnifier and
previous/current/next flick, keyboard navigation, and a drawing canvas whose every change is saved
as a Correction (the model's proposal is never overwritten).

The canvas (webapp/review_canvas.py), its tools, the magnifier and the sidebar counters are one
`st.fragment`: a stroke, a navigation key or a magnifier click reruns them alone, not the film picker,
the navigation or the filters. The canvas shows the next frames from pictures it already holds, so a
key moves at once, and the fragment catches up. What the canvas sends is applied in its change
callback (`_apply_canvas`), and first in every button callback that saves or moves (`_canvas_first`):
Streamlit runs a button's callback before the component's.

Executed by st.navigation (webapp/app.py) as a script; also runnable alone by AppTest.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import streamlit as st

from studio import corrections, detection, frame_queries, jobs
from studio.frame_sources import SourceFrameError
from webapp import canvas_input, magnifier, review_canvas
from webapp import frame_navigation as nav
from webapp import keyboard
from webapp.canvas import ADD_COLOR, ERASE_COLOR, TOGGLE_COLOR, CanvasGeometry
from webapp.canvas_frames import Look, Window, cached_neighbours, filter_note, missing_neighbours, shown_entry
from webapp.context import AppContext, app_context, author, choose_film
from webapp.frame_cache import FrameCache
from webapp.frame_view import FrameView, build_view, load_correction, proposal_mask
from webapp.overlay import POLARITIES, MaskFilter
from webapp.review_counts import review_counts
from webapp.widget_state import keep

# label -> (canvas drawing mode, colour); the colour tells the server to add, erase or toggle.
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


@st.cache_resource(show_spinner=False)
def _picture_cache() -> review_canvas.PictureCache:
    # One per server process: the canvas pictures of frames around the shown one (webapp/canvas_frames.py).
    return review_canvas.PictureCache()


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


def _canvas_first(pending: Callable[[], None], action: Callable, *args) -> None:
    """A button's callback: what the canvas sent first (`pending`, `_apply_canvas` bound to the last
    run), then `action(*args)`."""
    pending()
    action(*args)


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
    canvas_input.bump(frame.id)
    nav.step(shown, +1)


def _undo(shown: nav.ShownFilm) -> None:
    frame = shown.current()
    try:
        corrections.undo(shown.store, frame.id, author())
    except corrections.NothingToUndo as exc:
        nav.notice(str(exc))
    canvas_input.bump(frame.id)


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
        for frame_id in accepted:
            canvas_input.bump(frame_id)


def _bulk_accept(shown: nav.ShownFilm, pending: Callable[[], None], box) -> None:
    """Accept a range of frames as the model proposed them, after an explicit confirmation."""
    with box.expander("Accept a range of frames"):
        left, right = st.columns(2)
        left.number_input("From frame number", min_value=0, value=None, step=1, key="bulk_from")
        right.number_input("To frame number", min_value=0, value=None, step=1, key="bulk_to")
        numbers = _range()
        chosen = 0 if numbers is None else frame_queries.count_numbered(shown.store, shown.film, numbers)
        st.checkbox(f"Accept the model's proposal on the {chosen} frames of this range that nobody has "
                    "reviewed (reviewed frames keep their mask)", key="bulk_confirm", disabled=not chosen)
        st.button("Accept range", on_click=_canvas_first, args=(pending, _accept_range, shown),
                  disabled=not (chosen and st.session_state.get("bulk_confirm")))


def _toggle_overlay() -> None:
    st.session_state["hide_overlay"] = not st.session_state.get("hide_overlay", False)


def _navigation(shown: nav.ShownFilm, pending: Callable[[], None], sb) -> None:
    """One row of buttons above the canvas; shots and go-to in the sidebar's `sb` (the canvas stays
    high). Each callback that saves or moves applies what the canvas sent first (`pending`)."""
    def first(action, *args) -> dict:
        return {"on_click": _canvas_first, "args": (pending, action, *args)}
    cols = st.columns(7)
    cols[0].button(keyboard.PREVIOUS, **first(nav.step, shown, -1), width="stretch")
    cols[1].button(keyboard.NEXT, **first(nav.step, shown, +1), width="stretch")
    cols[2].button("Next with detections", **first(nav.next_with_detections, shown), width="stretch")
    cols[3].button("Next suggested", **first(nav.next_suggested, shown), width="stretch")
    cols[4].button("Accept frame as is", **first(_accept, shown), type="primary",
                   width="stretch", help="Stores the frame's correction, or the model's full proposal if it has "
                                         "none; the overlay filters do not apply.")
    cols[5].button("Undo", **first(_undo, shown), width="stretch")
    cols[6].button(keyboard.OVERLAY, on_click=_toggle_overlay, width="stretch",
                   help="Show the frame without the overlay, and back (key o)")
    ends = frame_queries.frames_at(shown.store, shown.film, (0, shown.count - 1))
    sb.subheader("Navigate")
    left, right = sb.columns(2)
    left.button(keyboard.PREVIOUS_SHOT, **first(nav.shot, shown, -1), width="stretch")
    right.button(keyboard.NEXT_SHOT, **first(nav.shot, shown, +1), width="stretch")
    sb.number_input("Go to frame number", min_value=0, value=None, step=1, key=nav.GOTO, on_change=_canvas_first,
                    args=(pending, nav.go_to_number, shown),
                    placeholder=f"{ends[0].number}-{ends[shown.count - 1].number}")
    _bulk_accept(shown, pending, sb)


def _counters(ctx: AppContext, film, frame, box) -> None:
    """Into `box` in the sidebar: above the canvas they pushed it 100 px down the page."""
    counts = review_counts(ctx.store, film)
    a, b = box.columns(2)
    a.metric("Reviewed", f"{counts.reviewed}/{counts.frames}")
    b.metric("Corrected", counts.corrected)
    a.metric("Remaining", counts.frames - counts.reviewed)
    b.metric("Frame", f"{frame.index + 1}/{counts.frames}")


def _geometry(w: int, h: int, zoom: float | None) -> CanvasGeometry:
    """zoom None: fit the canvas to FIT_WIDTH, enlarging a narrower film too (a 480 px scan at 960 px)."""
    if zoom is None:
        return CanvasGeometry.fit(w, h, FIT_WIDTH)
    return CanvasGeometry(round(w * zoom), round(h * zoom), w, h)


def _tools(film) -> tuple[dict, CanvasGeometry]:
    """The tool row above the canvas: (the canvas's tool, its geometry for this film)."""
    tool_col, size_col, zoom_col = st.columns([4, 1, 1])
    tool = tool_col.radio("Tool", list(TOOLS), horizontal=True, **keep("tool"))
    brush = size_col.slider("Brush (px)", 1, 60, **keep("brush", 8))
    zoom = ZOOMS[zoom_col.selectbox("Canvas zoom", list(ZOOMS), **keep("zoom"))]
    mode, colour = TOOLS[tool]
    return ({"label": tool, "mode": mode, "colour": colour, "brush": brush, "radius": max(2, brush // 2)},
            _geometry(film.width, film.height, zoom))


def _view_of(ctx: AppContext, flt: MaskFilter, opacity: float):
    def view_of(frame) -> FrameView:
        return build_view(ctx.store, frame, flt, opacity, load_image=_image, load_pred=_probs,
                          load_mask=load_correction)
    return view_of


LAST_MASKS = "review_masks"  # (frame id, filters, probs, proposal, candidates) the last run built


def _masks(ctx: AppContext, flt: MaskFilter, view_of) -> canvas_input.FrameMasks:
    """A frame's proposal and toggle candidates for the canvas's drawings: those the last run built when
    they are that frame's with these filters and prediction (then a save builds no view: about 100 ms
    on a 2K frame), else from the cached prediction (proposal) or a new view (candidates)."""
    def last(frame) -> tuple | None:
        frame_id, shown_flt, probs, proposal, candidates = st.session_state.get(LAST_MASKS, (None,) * 5)
        current = frame_id == frame.id and shown_flt == flt and probs is _probs(ctx.store, frame)
        return (proposal, candidates) if current else None

    def proposal(frame):
        kept = last(frame)
        return kept[0] if kept else proposal_mask(_probs(ctx.store, frame), _image(ctx.store, frame).shape[:2])

    def candidates(frame):
        kept = last(frame)
        return kept[1] if kept else view_of(frame).candidates

    return canvas_input.FrameMasks(proposal, candidates)


def _show_notice() -> None:
    if notice := st.session_state.pop(nav.NOTICE, None):
        st.toast(notice)  # floats over the page: an st.info here moved the canvas 72 px down and back


CENTRED = "canvas_centred"  # a shift-click on the canvas set the magnifier's point


def _apply_canvas(ctx: AppContext, shown: nav.ShownFilm, flt: MaskFilter, opacity: float) -> None:
    """Save what the canvas drew, centre the magnifier where it was clicked, follow its navigation;
    `shown`, `flt` and `opacity` are the last run's (what the restorer drew under). Idempotent: a state
    is applied once (canvas_input.applied). Runs as a callback, before the page or fragment body."""
    masks = _masks(ctx, flt, _view_of(ctx, flt, opacity))
    outcome = canvas_input.apply(shown, review_canvas.sent_state(), author(), masks)
    for film_id, row in outcome.saved:
        _after_save(film_id)
        st.session_state["review_saved"] = f"Saved correction {row.id}"
    for sentence in outcome.dropped:
        nav.notice(sentence)
    if outcome.centred:
        st.session_state[CENTRED] = True


@st.fragment
def _review(ctx: AppContext, shown: nav.ShownFilm, flt: MaskFilter, opacity: float, counters,
            pending: Callable[[], None]) -> None:
    """The tools, the canvas, the captions and the magnifier; the counters into the sidebar's `counters`.
    Drawn out of page order (containers): "saved" goes out first, the canvas once the magnifier's
    widgets have decided the window it outlines, the magnifier's images next, the neighbours' pictures
    the canvas holds last (`_neighbours`)."""
    view_of = _view_of(ctx, flt, opacity)
    tool, geometry = _tools(shown.film)
    canvas_box, saved_box, below = st.container(), st.container(), st.container()
    _show_notice()
    # First on the wire: the restorer sees "saved" before the overlay is redrawn (same place, below).
    saved_box.caption(st.session_state.pop("review_saved", None) or
                      f"Every stroke is saved at {shown.film.width}x{shown.film.height} when the mouse is released.")
    window = frame_queries.frame_window(ctx.store, shown.film, shown.index())
    frame = window.frame
    st.session_state[nav.index_key(shown.film.id)] = frame.index
    _counters(ctx, shown.film, frame, counters)
    try:
        view, error = view_of(frame), None
        st.session_state[LAST_MASKS] = (frame.id, flt, view.probs, view.proposal, view.candidates)
    except SourceFrameError as exc:  # a source frame referenced in place was moved or changed
        view, error = None, str(exc)  # names the film, frame and file, and what to do
        st.session_state.pop(LAST_MASKS, None)
    look = Look(flt, opacity, bool(st.session_state.get("hide_overlay")))
    sent = review_canvas.sent_state()
    have = sent.have if sent is not None else frozenset()
    around = Window.around(ctx.store, shown.film, frame, shown.count)
    run = st.session_state["canvas_run"] = st.session_state.get("canvas_run", 0) + 1
    # The shown frame and the neighbours already cached now; the others once the page is drawn.
    data = {"film": shown.film.id, "count": shown.count, "index": frame.index, "ack": canvas_input.applied(),
            "run": run, "canvas": [geometry.canvas_w, geometry.canvas_h],
            "image": [shown.film.width, shown.film.height],
            "tool": tool, "magnifier": None,  # the magnifier's window, once its widgets are drawn
            "frames": sorted([shown_entry(ctx.store, frame, view, error, geometry, look, _picture_cache(), have),
                              *cached_neighbours(around, geometry, look, _picture_cache(), have)],
                             key=lambda f: f["index"])}
    if view is None:
        with canvas_box:
            review_canvas.mount(data, pending)
        below.error(error)  # the navigation above still works
        _neighbours(ctx, around, geometry, look, have, view_of, run)
        return
    picture = view.frame_rgb if look.hide_overlay else view.picture
    with below:
        st.caption("Magenta adds, cyan erases, yellow clicks toggle a whole predicted defect; shift-click centres "
                   f"the magnifier; the wheel zooms, the middle button or space + drag pans.{filter_note(view)}  \n"
                   f"Keys: {keyboard.legend(keyboard.REVIEW_KEYS)}")
        with st.expander("Magnifier and flick", expanded=True):
            centred = bool(st.session_state.pop(CENTRED, False))
            centre, size, factor = magnifier.controls(frame, view, centred)
            data["magnifier"] = {"x": centre[0], "y": centre[1], "size": size}
            with canvas_box:
                review_canvas.mount(data, pending)
            magnifier.images(ctx.store, window, view, picture, centre, size, factor, load_image=_image)
        # While the restorer looks at this frame, decode the next frame to enter the canvas's window.
        ahead = frame_queries.frames_at(ctx.store, shown.film, [frame.index + review_canvas.WINDOW[1] + 1])
        _frame_cache().prefetch(ctx.store, list(ahead.values()))
        if st.toggle("Show the frame at full resolution (1:1, lossless)", key="full_res"):
            # Behind a toggle: PNG-encoding a 2K frame on every rerun would cost ~100 ms.
            st.image(picture, output_format="PNG")
        _neighbours(ctx, around, geometry, look, have, view_of, run)


def _neighbours(ctx: AppContext, around: Window, geometry: CanvasGeometry, look: Look, have: frozenset[str],
                view_of, run: int) -> None:
    """Last in the fragment: build the pictures of the neighbours not cached yet and hand them to the
    canvas of this `run` (after a filter change, five frames' views: the frame shown came first)."""
    review_canvas.mount_more(run, missing_neighbours(ctx.store, around, geometry, look, _picture_cache(), view_of,
                                                     _image, have))


def render(ctx: AppContext) -> None:
    # No page title and no counters above the canvas: the sidebar's navigation names the page, and the
    # canvas starts right under one row of buttons and the tools (the status line is the canvas's own).
    film = choose_film(ctx)
    if film is None:
        return
    counters = st.sidebar.container()  # the fragment fills it: a save changes the counts
    # Only the frames shown (a feature has 130 000: loading them all took 3 s per run).
    count = frame_queries.frame_count(ctx.store, film)
    if count == 0:
        st.warning("This film has no frames.")
        return
    shown = nav.ShownFilm(ctx.store, film, count)
    navigate = st.sidebar.container()  # above the filters, drawn once the filters are known
    flt, opacity = _filters()
    pending = functools.partial(_apply_canvas, ctx, shown, flt, opacity)
    _navigation(shown, pending, navigate)
    _show_notice()
    _review(ctx, shown, flt, opacity, counters, pending)
    keyboard.install(keyboard.REVIEW_KEYS, keyboard.STEPS)  # last: its (empty) element adds no gap above


render(app_context())
