"""The Review page for a restorer's whole day (issue 14, items 4-6), through AppTest: the canvas right
under one row of buttons, "fit" filling 960 px, notices that float instead of moving the canvas, key
presses that count when they come faster than the page redraws, suggestions that move on, the overlay
toggle, go-to-frame and shot navigation. Predictions are written directly (no model)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from db.models import Frame, ModelVersion
from studio import corrections, films
from studio.detection import _save_prediction
from tests.test_active_order import reference_order
from tests.webapp_fixtures import FRAMES, H, W, make_plain_store

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


def _canvas_args(at) -> dict:
    [canvas] = at.get("bidi_component")
    return json.loads(canvas.proto.json)


def _background(at) -> np.ndarray:
    url = _canvas_args(at)["backgroundImageURL"]
    data = base64.b64decode(url.split(",", 1)[1])
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# --- item 4: layout ------------------------------------------------------------------------------------

def test_the_canvas_comes_right_after_one_row_of_buttons_a_status_line_and_the_tools(review):
    _, film, _ = review
    at = _page(film)
    before = []
    for element in at.main.children.values():  # top level, in page order
        if getattr(element, "type", None) == "bidi_component":
            break
        before.append(element.type)
    # Title, counters, the keys' legend and notices pushed the canvas 533 px down the page.
    assert before == ["flex_container", "markdown", "flex_container"], before
    assert [b.label for b in at.main.children[0].button][:2] == ["◀ Previous", "Next ▶"]
    assert any(m.label == "Reviewed" for m in at.sidebar.metric)


def test_fit_shows_a_narrow_film_at_960_px(review):
    _, film, _ = review
    at = _page(film)
    assert at.selectbox(key="zoom").value == "fit (960 px)"
    args = _canvas_args(at)
    assert (args["canvasWidth"], args["canvasHeight"]) == (960, round(H * 960 / W))
    # Enlarged with nearest-neighbour: the predicted square's edge stays sharp (15 canvas px per pixel).
    picture = _background(at)
    assert picture.shape[:2] == (round(H * 960 / W), 960)


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
    assert any("overlay hidden" in m.value for m in at.markdown)
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
