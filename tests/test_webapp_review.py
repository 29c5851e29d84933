"""The Review page for a restorer's whole day (issue 14, items 4-6), through AppTest: the canvas right
under one row of buttons, "fit" filling 960 px, notices that float instead of moving the canvas, key
presses that count when they come faster than the page redraws, suggestions that move on, the overlay
toggle, go-to-frame and shot navigation. Predictions are written directly (no model)."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pytest

from db.models import Frame, ModelVersion
from studio import corrections, films, jobs
from studio.detection import _save_prediction
from tests.test_active_order import reference_order
from tests.webapp_fixtures import (FRAMES, H, W, canvas_data, canvas_drawing, make_plain_store, send_canvas,
                                   send_review, shown_entry, write_film)
from webapp.canvas import ADD_COLOR, TOGGLE_COLOR
from webapp.review_canvas import PictureCache

APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")
pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

SHOTS = [0, 0, 1, 1, 1]  # frames 0-1 are shot 0, frames 2-4 shot 1
DEFECT = (slice(10, 20), slice(30, 40))  # every frame's prediction: one 10x10 square


@pytest.fixture
def review(tmp_path, monkeypatch):
    store, film, frames = make_plain_store(tmp_path)
    with store.write() as s:
        version = ModelVersion(path="/m.pt", sha256="0" * 64, arch="efficient-correlnet", encoder=None)
        s.add(version)
        for frame, shot in zip(frames, SHOTS):
            s.get(Frame, frame.id).shot = shot
    for i, frame in enumerate(frames):
        probs = np.full((H, W), 0.02 + 0.04 * i, np.float32)  # later frames are more uncertain
        probs[DEFECT] = 0.9
        _save_prediction(store, film, frame, version.id, probs, set_uncertainty=True)
    for key, value in {"CORRELNET_DATA_DIR": str(tmp_path / "data"), "CORRELNET_IMPORT_ROOT": str(tmp_path / "imports"),
                       "CORRELNET_DEVICE": "cpu", "CORRELNET_RETRAIN_AFTER": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    return store, film, films.film_frames(store, film)


def _page(film, index: int = 0) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("app_pages/review.py").run()
    at.session_state[f"frame_index:{film.id}"] = index
    at.run()
    assert not at.exception, at.exception
    return at


def _index(at, film) -> int:
    return at.session_state[f"frame_index:{film.id}"]


def _click(at, label: str) -> AppTest:
    [button] = [b for b in at.button if b.label == label]
    button.click().run()
    assert not at.exception, at.exception
    return at


def _decode(url: str) -> np.ndarray:
    data = base64.b64decode(url.split(",", 1)[1])
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _background(at) -> np.ndarray:
    """The shown frame's picture as the canvas is sent it, enlarged to the canvas pixel by pixel (as
    the browser draws it: image-rendering pixelated)."""
    cw, ch = canvas_data(at)["canvas"]
    return cv2.resize(_decode(shown_entry(at)["picture"]["url"]), (cw, ch), interpolation=cv2.INTER_NEAREST)


# --- item 4: layout ------------------------------------------------------------------------------------

def _before_canvas(node, out: list) -> bool:
    """Collect the types of the elements drawn before the canvas (depth first); True once it is found."""
    for child in node.children.values():
        if getattr(child, "key", None) == "review-canvas":
            return True
        if hasattr(child, "children") and child.children:
            if _before_canvas(child, out):
                return True
        else:
            out.append(getattr(child, "type", type(child).__name__))
    return False


def test_the_canvas_comes_right_after_one_row_of_buttons_and_the_tools(review):
    _, film, _ = review
    at = _page(film)
    before: list = []
    assert _before_canvas(at.main, before)
    # Title, counters, the keys' legend and notices pushed the canvas 533 px down the page; the status
    # line is the canvas's own first line.
    assert before == ["button"] * 7 + ["radio", "slider", "selectbox"], before
    assert [b.label for b in at.main.children[0].button][:2] == ["◀ Previous", "Next ▶"]
    assert any(m.label == "Reviewed" for m in at.sidebar.metric)
    assert shown_entry(at)["status"] == "model's proposal (orange)"


def test_fit_shows_a_narrow_film_at_960_px(review):
    _, film, _ = review
    at = _page(film)
    assert at.selectbox(key="zoom").value == "fit (960 px)"
    data = canvas_data(at)
    assert data["canvas"] == [960, round(H * 960 / W)] and data["image"] == [W, H]
    # Sent at the film's size (the browser enlarges it pixel by pixel): a narrow film costs no more.
    assert _decode(shown_entry(at)["picture"]["url"]).shape[:2] == (H, W)
    assert "detail" not in shown_entry(at)


def test_a_notice_floats_and_never_moves_the_canvas(review):
    _, film, _ = review
    at = _click(_page(film), "Undo")  # nothing to undo on an unreviewed frame
    assert any("nothing" in t.value.lower() or "no " in t.value.lower() for t in at.toast), [t.value for t in at.toast]
    assert not at.main.info and not at.main.warning


# --- item 5: keys that get lost ------------------------------------------------------------------------

def test_a_press_that_comes_before_the_page_redrew_still_counts(review):
    """The callbacks registered by the last run must act on the frame shown now: a second "k"/"j" or "a"
    sent before the page redrew after the first one was a no-op (or accepted the previous frame again)."""
    store, film, frames = review
    at = _page(film, 0)
    at.session_state[f"frame_index:{film.id}"] = 1  # the first press moved on; the page has not redrawn
    [next_button] = [b for b in at.button if b.label == "Next ▶"]
    next_button.click().run()
    assert _index(at, film) == 2
    at.session_state[f"frame_index:{film.id}"] = 3
    [accept] = [b for b in at.button if b.label == "Accept frame as is"]
    accept.click().run()
    assert corrections.current_correction(store, frames[3].id) is not None
    assert corrections.current_correction(store, frames[2].id) is None
    assert _index(at, film) == 4


def test_next_suggested_moves_even_from_the_frame_it_would_suggest(review):
    store, film, frames = review
    top = frames[reference_order(store, film.id)[0]]  # the frame "s" would suggest
    at = _click(_page(film, top.index), "Next suggested")
    first = _index(at, film)
    assert first != top.index, "pressing s on the most uncertain frame stayed on it"
    _click(at, "Next suggested")
    assert _index(at, film) not in (first, top.index)


# --- item 6: overlay toggle, go to frame, shots ----------------------------------------------------

def test_overlay_toggle_shows_the_frame_without_the_overlay(review):
    store, film, frames = review
    at = _page(film, 1)
    yi, xi = 15, 35  # an image pixel inside the predicted square, and its centre on the 960 px canvas
    y, x = int((yi + 0.5) * 960 / W), int((xi + 0.5) * 960 / W)
    shown = _background(at)[y, x].astype(int)
    assert shown[0] - shown[2] > 60, shown  # orange over the gray frame
    _click(at, "Overlay on/off")
    plain = _background(at)[y, x].astype(int)
    gray = int(films.frame_image(store, frames[1])[yi, xi])
    assert abs(plain - gray).max() <= 8, (plain, gray)  # the frame itself, up to JPEG rounding
    assert "overlay hidden" in shown_entry(at)["status"]
    _click(at, "Overlay on/off")
    assert _background(at)[y, x][0] - _background(at)[y, x][2] > 60


def test_go_to_frame_number(review):
    _, film, frames = review
    at = _page(film)
    at.sidebar.number_input(key="goto_frame").set_value(frames[3].number).run()
    assert _index(at, film) == 3 and at.sidebar.number_input(key="goto_frame").value is None
    at.sidebar.number_input(key="goto_frame").set_value(999).run()
    assert _index(at, film) == 3 and any("No frame numbered 999" in t.value for t in at.toast)


def test_shot_buttons_jump_between_cuts(review):
    _, film, _ = review
    at = _page(film, 0)
    assert _index(_click(at, "Shot ▶"), film) == 2
    _click(at, "Shot ▶")
    assert _index(at, film) == 2 and any("last shot" in t.value for t in at.toast)
    at.session_state[f"frame_index:{film.id}"] = 4
    at.run()
    assert _index(_click(at, "◀ Shot"), film) == 2  # from inside a shot: to its first frame
    assert _index(_click(at, "◀ Shot"), film) == 0
    assert FRAMES == len(SHOTS)


def test_bulk_accept_of_a_range_needs_a_confirmation_and_keeps_reviewed_frames(review):
    store, film, frames = review
    edited = np.zeros((H, W), bool)
    corrections.save_correction(store, frames[2].id, edited, "ann")  # reviewed before: must stay as it is
    at = _page(film)
    at.sidebar.number_input(key="bulk_from").set_value(frames[1].number)
    at.sidebar.number_input(key="bulk_to").set_value(frames[3].number).run()
    [accept] = [b for b in at.sidebar.button if b.label == "Accept range"]
    assert accept.disabled, "a range is accepted only after the confirmation"
    at.sidebar.checkbox(key="bulk_confirm").check().run()
    [accept] = [b for b in at.sidebar.button if b.label == "Accept range"]
    accept.click().run()
    assert not at.exception, at.exception
    kinds = [[r.kind for r in corrections.history(store, f.id)] for f in frames]
    assert kinds == [[], ["accept"], ["edit"], ["accept"], []]
    np.testing.assert_array_equal(corrections.current_mask(store, frames[1].id), _square())
    assert any("on 2 frames; 1 already reviewed" in t.value for t in at.toast), [t.value for t in at.toast]
    assert at.sidebar.checkbox(key="bulk_confirm").value is False


def _square() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[DEFECT] = True
    return mask


# --- a source frame referenced in place was moved or changed ----------------------------------------------

def test_a_missing_source_frame_is_named_on_the_page_not_a_traceback(review, tmp_path):
    store, film, frames = review
    (tmp_path / "imports" / "tiny" / frames[1].source_name).unlink()  # frame 2 moved away by the user
    at = _page(film, index=1)
    [error] = at.error
    assert f"film 'tiny', frame {frames[1].number}" in error.value and "is missing" in error.value
    assert "correlnet film relink tiny NEW_FOLDER" in error.value
    at = _page(film, index=0)  # its neighbour still shows, the flick names the frame it could not read
    assert not at.error
    captions = [c for e in at.main if e.type == "image" for c in e.captions]
    assert any(f"frame {frames[1].number} could not be read" in c for c in captions), captions
    # The canvas holds no picture of it: the restorer who steps there reads why in its status line.
    [moved] = [f for f in canvas_data(at)["frames"] if f["index"] == 1]
    assert "picture" not in moved and moved["token"] is None and "is missing" in moved["status"]


# --- the review canvas's state (webapp/review_canvas.py, webapp/canvas_input.py) ---------------------------

SCALE = 960 // W  # canvas px per image px on the fit canvas


def _stroke(y: float, x0: float, x1: float, colour: str = ADD_COLOR, width: float = 2 * SCALE) -> dict:
    """A brush stroke along image row y (pixel centres), columns x0..x1, in canvas px."""
    return {"type": "Path", "stroke": colour, "fill": None, "strokeWidth": width,
            "path": [["M", x0 * SCALE, y * SCALE], ["L", x1 * SCALE, y * SCALE]]}


def test_the_canvas_sends_the_frame_it_moved_to_and_the_server_follows(review):
    store, film, frames = review
    at = _page(film, 0)
    data = canvas_data(at)
    assert [f["index"] for f in data["frames"]] == [0, 1, 2, 3]  # the shown frame and WINDOW ahead
    # Its neighbours' pictures are the pictures the page sends once it shows them.
    ahead = {f["index"]: f for f in data["frames"]}
    send_canvas(at, target=3, nav=lambda seq: seq)
    assert _index(at, film) == 3 and canvas_data(at)["ack"] == data["ack"] + 1
    assert shown_entry(at)["picture"] == ahead[3]["picture"] and shown_entry(at)["token"] == ahead[3]["token"]
    assert [f["index"] for f in canvas_data(at)["frames"]] == [1, 2, 3, 4]
    assert any(m.label == "Frame" and m.value == f"4/{FRAMES}" for m in at.sidebar.metric)
    # A button moves on; the state the canvas sent before is not applied again by the next run.
    _click(at, "◀ Previous")
    assert _index(at, film) == 2
    at.run()
    assert _index(at, film) == 2


def test_a_stroke_lands_on_the_frame_it_was_drawn_on_even_with_a_key_press_in_the_same_run(review):
    store, film, frames = review
    at = _page(film, 1)
    stroke = _stroke(30.5, 2, 20)
    send_canvas(at, drawings=canvas_drawing(at, stroke), target=2, nav=lambda seq: seq)
    assert _index(at, film) == 2
    mask = corrections.current_mask(store, frames[1].id)
    yy, xx = np.mgrid[:H, :W] + 0.5  # pixel centres within the brush's 1 px radius of the segment
    along = np.clip(xx, 2, 20)
    np.testing.assert_array_equal(mask, _square() | (np.hypot(xx - along, yy - 30.5) <= 1))
    assert corrections.current_correction(store, frames[2].id) is None
    assert any(c.value.startswith("Saved correction") for c in at.caption)


def test_a_stroke_sent_under_the_old_token_after_a_save_keeps_both(review):
    """The browser may send a second stroke before it hears of the token the first save gave the frame:
    both land, and the next stroke under the new token lands on top."""
    store, film, frames = review
    at = _page(film, 0)
    first, second, third = _stroke(25.5, 2, 10), _stroke(30.5, 2, 10), _stroke(35.5, 2, 10)
    old = canvas_drawing(at, first)
    token = old(0)[0]["token"]
    send_canvas(at, drawings=old)
    assert shown_entry(at)["token"] != token  # a save ends the canvas session
    send_canvas(at, drawings=lambda seq: [{"token": token, "seq": seq, "objects": [first, second]}])
    send_canvas(at, drawings=canvas_drawing(at, third))
    mask = corrections.current_mask(store, frames[0].id)
    assert mask[25, 2:11].all() and mask[30, 2:11].all() and mask[35, 2:11].all() and mask[DEFECT].all()
    assert len(corrections.history(store, frames[0].id)) == 3


def test_a_toggle_click_is_applied_once(review):
    store, film, frames = review
    at = _page(film, 0)
    r = 2
    click = {"type": "Circle", "left": 35 * SCALE - r, "top": 15 * SCALE - r, "width": 2 * r, "height": 2 * r,
             "radius": r, "originX": "left", "originY": "top", "strokeWidth": 0, "stroke": TOGGLE_COLOR,
             "fill": TOGGLE_COLOR}
    drawing = canvas_drawing(at, click)
    send_canvas(at, drawings=drawing)
    assert not corrections.current_mask(store, frames[0].id).any()  # the predicted square rejected
    state = dict(at.session_state["review-canvas"]["review"])
    # Sent again as new (the browser had not heard of the save): its session is gone, its token is old.
    at.session_state["canvas_sessions"].clear()
    state["seq"] += 1
    state["drawings"] = [dict(state["drawings"][0], seq=state["seq"])]
    send_review(at, state)
    assert not corrections.current_mask(store, frames[0].id).any(), "the click was applied twice"
    assert len(corrections.history(store, frames[0].id)) == 1
    assert not any("not saved" in t.value for t in at.toast), "a drawing saved before is no loss"


def test_a_shift_click_centres_the_magnifier(review):
    _, film, frames = review
    at = _page(film, 0)
    at.selectbox(key=f"magnify:{frames[0].id}").set_value(1).run()  # magnifying defect 1 first
    send_canvas(at, magnify=lambda seq: {"x": 12.7, "y": 40.2, "n": seq})
    assert at.selectbox(key=f"magnify:{frames[0].id}").value == 0  # a point now, the one clicked
    assert (at.slider(key=f"mx:{film.id}").value, at.slider(key=f"my:{film.id}").value) == (12, 40)
    captions = [c for e in at.main if e.type == "image" for c in e.captions]
    assert "6x around (12, 40)" in captions, captions
    assert canvas_data(at)["magnifier"] == {"x": 12, "y": 40, "size": 64}


# --- what the canvas sent is applied before any button acts (canvas_input, review._canvas_first) ------------

def test_undo_clicked_right_after_a_stroke_undoes_that_stroke(review):
    """Streamlit runs a button's callback before the component's: Undo pressed right after mouse-up undid
    the correction before the stroke, then the stroke (its token replaced by the undo) was dropped."""
    store, film, frames = review
    stored = _square()
    stored[40:44, 2:8] = True  # a correction made before the page opened: no canvas session holds it
    corrections.save_correction(store, frames[0].id, stored, "ann")
    at = _page(film, 0)
    drawing = canvas_drawing(at, _stroke(30.5, 2, 20))
    [undo] = [b for b in at.button if b.label == "Undo"]
    undo.click()
    send_canvas(at, drawings=drawing)  # the stroke and the click reach the server in one run
    assert [r.kind for r in corrections.history(store, frames[0].id)] == ["edit", "edit", "undo"]
    np.testing.assert_array_equal(corrections.current_mask(store, frames[0].id), stored)


def test_a_stroke_released_right_before_a_page_switch_is_saved(review):
    store, film, frames = review
    at = _page(film, 0)
    drawing = canvas_drawing(at, _stroke(30.5, 2, 20))
    at.switch_page("app_pages/training.py")
    send_canvas(at, drawings=drawing)  # the Review page's body does not run
    mask = corrections.current_mask(store, frames[0].id)
    assert mask is not None and mask[30, 2:21].all() and mask[DEFECT].all()


def test_a_drawing_that_cannot_be_saved_is_named_in_a_toast(review):
    store, film, frames = review
    at = _page(film, 0)
    drawing = canvas_drawing(at, _stroke(30.5, 2, 20))
    _click(at, "Accept frame as is")  # frame 0 accepted: its token is replaced; the page moves on
    send_canvas(at, drawings=drawing)  # a stroke the browser drew under the old token, sent late
    assert [r.kind for r in corrections.history(store, frames[0].id)] == ["accept"]
    assert any("frame index 0 was not saved" in t.value for t in at.toast), [t.value for t in at.toast]


def test_a_stroke_counts_towards_retraining_on_its_own_film(review, tmp_path, monkeypatch):
    """A stroke on one film that arrives once the restorer has picked another film counts for its own."""
    store, film, frames = review
    write_film(tmp_path / "imports" / "other", seed=5)
    other = films.import_film(store, tmp_path / "imports" / "other", name="other")
    monkeypatch.setenv("CORRELNET_RETRAIN_AFTER", "1")
    at = _page(film, 0)
    drawing = canvas_drawing(at, _stroke(30.5, 2, 20))
    at.sidebar.selectbox(key="film_id").set_value(other.id).run()
    assert canvas_data(at)["film"] == other.id
    send_canvas(at, drawings=drawing)
    assert corrections.current_correction(store, frames[0].id) is not None
    assert [j.kind for j in jobs.list_jobs(store, film.id)] == ["finetune"]
    assert jobs.list_jobs(store, other.id) == []


# --- what travels to the browser (webapp/canvas_frames.py, review_canvas.PictureCache) ---------------------

def test_a_picture_the_browser_holds_is_sent_by_key_alone(review):
    _, film, _ = review
    at = _page(film, 0)
    first = {f["index"]: f["picture"] for f in canvas_data(at)["frames"]}
    assert all(p["url"].startswith("data:image/jpeg;base64,") for p in first.values())
    send_canvas(at, have=[p["key"] for i, p in first.items() if i != 2])
    again = {f["index"]: f["picture"] for f in canvas_data(at)["frames"]}
    assert {i: p["key"] for i, p in again.items()} == {i: p["key"] for i, p in first.items()}
    assert [i for i, p in again.items() if "url" in p] == [2]  # the one it does not hold
    assert again[2] == first[2]


def _counting(monkeypatch, module, name: str) -> list:
    calls = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def test_a_filter_change_draws_the_frame_first_and_its_neighbours_after(review, monkeypatch):
    import streamlit as st

    import webapp.frame_view as frame_view
    import webapp.review_canvas as review_canvas

    _, film, _ = review
    st.cache_resource.clear()  # no picture cached by an earlier test
    at = _page(film, 1)
    at.sidebar.slider(key="opacity").set_value(0.35).run()
    # The canvas was sent the frame shown alone: the neighbours' five views came after it.
    assert [f["index"] for f in canvas_data(at, merged=False)["frames"]] == [1]
    assert [f["index"] for f in canvas_data(at)["frames"]] == [0, 1, 2, 3, 4]
    # A step encodes only the frame entering the window: the one it shows now was sent as a neighbour.
    encoded = _counting(monkeypatch, review_canvas, "encode_jpeg")
    send_canvas(at, target=2, nav=lambda seq: seq)
    assert shown_entry(at)["index"] == 2 and len(encoded) == 0  # frames 0-4: all held already
    send_canvas(at, target=3, nav=lambda seq: seq)
    assert [f["index"] for f in canvas_data(at, merged=False)["frames"]] == [1, 2, 3, 4]
    assert len(encoded) == 0  # the end of the film: nothing new to build
    # With the overlay hidden a neighbour is its frame alone: no view is built for it.
    views = _counting(monkeypatch, frame_view, "build_view")
    _click(at, "Overlay on/off")
    assert len(views) == 1, "only the frame shown needs its view"
    assert len(encoded) == 4 and all("overlay hidden" in f["status"] for f in canvas_data(at)["frames"])


def test_the_picture_cache_holds_a_byte_budget():
    cache = PictureCache(max_bytes=1000)
    pic = {name: {"key": name, "url": "x" * 400} for name in "abc"}
    for name in "ab":
        cache.get((name,), lambda name=name: pic[name])
    assert cache.nbytes == 800 and cache.peek(("a",)) is pic["a"]  # "a" used last now
    cache.get(("c",), lambda: pic["c"])  # over 1000 bytes: the least recently used goes
    assert cache.peek(("b",)) is None and cache.peek(("a",)) is pic["a"] and cache.nbytes == 800
    big = {"key": "d", "url": "x" * 5000}
    assert cache.get(("d",), lambda: big) is big and cache.peek(("d",)) is big  # the newest stays
    assert cache.nbytes == 5000 and cache.peek(("a",)) is None
