"""Every review function on the four frame formats the importer keeps (issue 14, item 1): gray 8-bit,
gray 16-bit, RGB 8-bit and RGB 16-bit. The flick view, the polarity filters, the overlay, drawing and
"Accept frame as is", first as functions and then through the Review page (AppTest), against
expectations worked out by hand from the 8-bit levels each frame is built from.

A 16-bit frame holds level * 257 (257 * 255 = 65535), so its luma is exactly the 8-bit level again:
every expectation below holds unchanged for all four formats.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PIL import Image

from webapp.canvas import ADD_COLOR, TOGGLE_COLOR, CanvasGeometry, apply_drawing
from webapp.frame_view import build_view, flick_crops, flick_gif
from webapp.overlay import MISSED_RGB, PREDICTED_RGB, MaskFilter, dilate, filter_mask, overlay, to_gray_u8

FORMATS = ("gray8", "gray16", "rgb8", "rgb16")
H, W = 24, 32
BACKGROUND, DARK, LIGHT = 128, 20, 230
# Per frame of the page's film: top-left (y, x) of a dark 3x3 speck and a light 4x4 speck.
DARK_AT = [(5, 4), (5, 10), (5, 16)]
LIGHT_AT = [(14, 24), (14, 18), (14, 12)]


def encode(levels: np.ndarray, fmt: str) -> np.ndarray:
    """(H, W) gray or (H, W, 3) RGB 8-bit levels -> the frame as stored in `fmt`."""
    levels = np.asarray(levels, np.uint8)
    if fmt.startswith("rgb") and levels.ndim == 2:
        levels = np.repeat(levels[..., None], 3, axis=2)
    if fmt.startswith("gray") and levels.ndim != 2:
        raise ValueError("a gray format takes (H, W) levels")
    return levels.astype(np.uint16) * 257 if fmt.endswith("16") else levels


def box(y: int, x: int, size: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y:y + size, x:x + size] = True
    return mask


def scene_levels(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame i of the film: mid-grey with its dark and light speck -> (levels, dark mask, light mask)."""
    dark, light = box(*DARK_AT[i], 3), box(*LIGHT_AT[i], 4)
    levels = np.full((H, W), BACKGROUND, np.uint8)
    levels[dark], levels[light] = DARK, LIGHT
    return levels, dark, light


def probs_on(mask: np.ndarray) -> np.ndarray:
    """The model's output for a frame: 0.9 on the specks, 0 elsewhere (so the proposal is exactly them)."""
    return np.where(mask, np.float32(0.9), np.float32(0.0))


# -- the functions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_to_gray_u8_gives_back_the_levels(fmt):
    levels = np.array([[0, 20, 128], [200, 230, 255]], np.uint8)
    got = to_gray_u8(encode(levels, fmt))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, levels)  # before the fix an RGB frame came out all 255


@pytest.mark.parametrize("fmt", FORMATS)
def test_polarity_keeps_the_dark_speck_for_dark_and_the_light_one_for_light(fmt):
    levels, dark, light = scene_levels(0)
    frame, probs = encode(levels, fmt), probs_on(dark | light)
    np.testing.assert_array_equal(filter_mask(probs, frame, MaskFilter(polarity="dark")), dark)
    np.testing.assert_array_equal(filter_mask(probs, frame, MaskFilter(polarity="light")), light)
    np.testing.assert_array_equal(filter_mask(probs, frame, MaskFilter(polarity="both")), dark | light)


@pytest.mark.parametrize("fmt", ["gray16", "rgb16"])
def test_polarity_judges_16_bit_frames_at_full_depth(fmt):
    # 32770 on 32800 differs by 30 / 65535, less than one 8-bit level (both are 128 after >> 8).
    frame = np.full((H, W), 32800, np.uint16)
    speck = box(10, 10, 3)
    frame[speck] = 32770
    if fmt == "rgb16":
        frame = np.repeat(frame[..., None], 3, axis=2)
    probs = probs_on(speck)
    np.testing.assert_array_equal(filter_mask(probs, frame, MaskFilter(polarity="dark")), speck)
    assert not filter_mask(probs, frame, MaskFilter(polarity="light")).any()


@pytest.mark.parametrize("fmt", ["rgb8", "rgb16"])
def test_polarity_of_a_coloured_speck_follows_luma(fmt):
    # On (128, 128, 128): pure green has luma 0.587 * 255 = 149.7 (lighter; the channel mean, 85, would
    # call it darker); pure blue 0.114 * 255 = 29.1 (darker).
    levels = np.full((H, W, 3), BACKGROUND, np.uint8)
    green, blue = box(4, 4, 3), box(15, 20, 3)
    levels[green], levels[blue] = (0, 255, 0), (0, 0, 255)
    frame, probs = encode(levels, fmt), probs_on(green | blue)
    np.testing.assert_array_equal(filter_mask(probs, frame, MaskFilter(polarity="light")), green)
    np.testing.assert_array_equal(filter_mask(probs, frame, MaskFilter(polarity="dark")), blue)


@pytest.mark.parametrize("fmt", FORMATS)
def test_flick_crops_and_gif_show_each_frame_as_it_is(fmt):
    scenes = [scene_levels(i)[0] for i in range(3)]
    frames = [encode(levels, fmt) for levels in scenes]
    crops = flick_crops(frames, (16.0, 12.0), size=64, factor=2)  # a window larger than the frame: all of it
    for crop, levels in zip(crops, scenes):
        np.testing.assert_array_equal(crop, np.repeat(np.repeat(levels, 2, axis=0), 2, axis=1))
    with Image.open(io.BytesIO(flick_gif(crops))) as gif:
        assert gif.n_frames == 3
        shown = []
        for k in range(3):
            gif.seek(k)
            shown.append(np.asarray(gif.convert("L")))
    for got, crop in zip(shown, crops):
        np.testing.assert_array_equal(got, crop)  # not one blank white image
    assert not np.array_equal(shown[0], shown[1]) and not np.array_equal(shown[1], shown[2])


@pytest.mark.parametrize("fmt", FORMATS)
def test_overlay_paints_over_the_frame_as_it_is(fmt):
    levels, dark, light = scene_levels(0)
    frame = encode(levels, fmt)
    full = overlay(frame, dark, None, opacity=1.0)
    assert tuple(full[6, 5]) == PREDICTED_RGB
    assert tuple(full[0, 0]) == (BACKGROUND,) * 3 and tuple(full[15, 25]) == (LIGHT,) * 3
    half = overlay(frame, dark, None, opacity=0.5)
    # 20 + 0.5 * (c - 20), rounded, for c = (255, 140, 0)
    assert tuple(half[6, 5]) == (138, 80, 10)
    missed = np.zeros((H, W), bool)
    missed[0, 0] = True
    assert tuple(overlay(frame, dark, dark | missed, opacity=1.0)[0, 0]) == MISSED_RGB


def _view(fmt: str, flt: MaskFilter):
    levels, dark, light = scene_levels(0)
    frame = encode(levels, fmt)
    view = build_view(None, SimpleNamespace(index=0), flt, 1.0, load_image=lambda s, f: frame,
                      load_pred=lambda s, f: probs_on(dark | light), load_mask=lambda s, f: None)
    return view, dark, light


@pytest.mark.parametrize("fmt", FORMATS)
def test_view_paints_the_filtered_defects_but_keeps_the_full_proposal(fmt):
    view, dark, light = _view(fmt, MaskFilter(polarity="light", dilation=1))
    np.testing.assert_array_equal(view.proposal, dark | light)
    np.testing.assert_array_equal(view.candidates, light)
    np.testing.assert_array_equal(view.predicted, dilate(light, 1))
    np.testing.assert_array_equal(view.shown_mask, view.predicted)
    np.testing.assert_array_equal(view.saved_mask, dark | light)  # what accept stores and drawing starts from
    assert tuple(view.picture[6, 5]) == (DARK,) * 3  # the dark speck is hidden, not painted
    assert tuple(view.picture[15, 25]) == PREDICTED_RGB


def _click(cx: float, cy: float, radius: int = 1) -> dict:
    # What the point tool sends (see tests/test_canvas.py).
    return {"type": "Circle", "left": cx - radius, "top": cy - radius, "radius": radius, "width": 2 * radius,
            "height": 2 * radius, "strokeWidth": 0, "stroke": TOGGLE_COLOR, "fill": TOGGLE_COLOR}


@pytest.mark.parametrize("fmt", FORMATS)
def test_drawing_with_a_filter_on_keeps_the_hidden_defects(fmt):
    view, dark, light = _view(fmt, MaskFilter(polarity="light", dilation=2))
    geometry = CanvasGeometry(W, H, W, H)  # 1:1
    stroke = {"type": "Rect", "left": 0, "top": 0, "width": 2, "height": 2, "strokeWidth": 0,
              "stroke": ADD_COLOR, "fill": ADD_COLOR}
    added = apply_drawing({"objects": [stroke]}, geometry, view.saved_mask, view.candidates)
    np.testing.assert_array_equal(added, dark | light | box(0, 0, 2))
    # A click on the painted ring the dilation adds round the light speck rejects the speck, and only it.
    rejected = apply_drawing({"objects": [_click(23.5, 16.5)]}, geometry, view.saved_mask, view.candidates)
    np.testing.assert_array_equal(rejected, dark)


# -- the Review page -----------------------------------------------------------------------------------

APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")


@pytest.fixture(scope="module", params=FORMATS)
def film_store(request, tmp_path_factory):
    """A store holding a three-frame film in one format, each frame predicted as exactly its two specks
    (written directly: no model, so the proposal is known)."""
    from db.models import ModelVersion
    from db.store import Store
    from studio import films
    from studio.detection import _save_prediction
    from studio.settings import Settings

    fmt = request.param
    root = tmp_path_factory.mktemp(fmt)
    env = {"CORRELNET_DATA_DIR": str(root / "data"), "CORRELNET_IMPORT_ROOT": str(root / "imports"),
           "CORRELNET_DEVICE": "cpu", "CORRELNET_RETRAIN_AFTER": "0"}
    store = Store.open(Settings.from_env(env))
    folder = root / "imports" / fmt
    folder.mkdir(parents=True)
    for i in range(3):
        frame = encode(scene_levels(i)[0], fmt)
        cv2.imwrite(str(folder / f"frame_{i + 1:03d}.png"), frame[..., ::-1] if frame.ndim == 3 else frame)
    film = films.import_film(store, folder, name=fmt)
    frames = films.film_frames(store, film)
    stored = films.frame_image(store, frames[0])
    assert stored.dtype == (np.uint16 if fmt.endswith("16") else np.uint8)
    assert stored.ndim == (3 if fmt.startswith("rgb") else 2)
    with store.write() as s:
        version = ModelVersion(path="/m.pt", sha256="0" * 64, arch="efficient-correlnet", encoder=None)
        s.add(version)
    for i, frame in enumerate(frames):
        _, dark, light = scene_levels(i)
        _save_prediction(store, film, frame, version.id, probs_on(dark | light), set_uncertainty=True)
    return SimpleNamespace(fmt=fmt, store=store, film=film, frames=frames, env=env)


@pytest.fixture
def page(film_store, monkeypatch):
    pytest.importorskip("streamlit")
    for key, value in film_store.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    return film_store


def _review(ws, index: int):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    at.switch_page("app_pages/review.py").run()
    assert not at.exception, at.exception
    at.session_state[f"frame_index:{ws.film.id}"] = index
    at.run()
    assert not at.exception, at.exception
    return at


def _defects_listed(at, frame) -> list[str]:
    return list(at.selectbox(key=f"magnify:{frame.id}").options[1:])


def test_page_polarity_filters_keep_the_right_speck(page):
    at = _review(page, 1)
    frame = page.frames[1]
    # cv2 labels in scan order: the dark speck (row 5) is defect 1, the light one (row 14) defect 2.
    assert _defects_listed(at, frame) == ["defect 2 (16 px)", "defect 1 (9 px)"]
    at.radio(key="polarity").set_value("dark").run()
    assert _defects_listed(at, frame) == ["defect 1 (9 px)"]
    assert any("The filters paint 9 px, Accept stores the full proposal's 25 px" in c.value for c in at.caption)
    at.radio(key="polarity").set_value("light").run()
    assert _defects_listed(at, frame) == ["defect 1 (16 px)"]
    assert not at.exception, at.exception


def test_page_flick_view_shows_previous_current_and_next(page, monkeypatch):
    import webapp.frame_view as frame_view

    made = []
    real = frame_view.flick_crops
    monkeypatch.setattr(frame_view, "flick_crops", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    _review(page, 1)
    frame = page.frames[1]
    crops = made[-1]
    # Default window: 384 // 6 = 64 px at 6x, larger than the 32x24 frame, so each crop is a whole frame.
    for crop, index in zip(crops, (frame.prev_index, frame.index, frame.next_index)):
        np.testing.assert_array_equal(crop, np.repeat(np.repeat(scene_levels(index)[0], 6, axis=0), 6, axis=1))
    assert (frame.prev_index, frame.next_index) == (0, 2)
    assert len({c.tobytes() for c in crops}) == 3


def test_page_accept_with_a_filter_on_stores_the_full_proposal(page):
    from studio import corrections

    at = _review(page, 2)
    frame = page.frames[2]
    _, dark, light = scene_levels(2)
    at.radio(key="polarity").set_value("light").run()
    at.number_input(key="min_size").set_value(10).run()
    assert _defects_listed(at, frame) == ["defect 1 (16 px)"]
    [accept] = [b for b in at.button if b.label == "Accept frame as is"]
    accept.click().run()
    assert not at.exception, at.exception
    row = corrections.current_correction(page.store, frame.id)
    assert row.kind == "accept"
    np.testing.assert_array_equal(corrections.load_correction(page.store, row), dark | light)
    # Accepting again on a corrected frame keeps the correction, whatever the filters.
    at.session_state[f"frame_index:{page.film.id}"] = 2
    at.radio(key="polarity").set_value("dark").run()
    [accept] = [b for b in at.button if b.label == "Accept frame as is"]
    accept.click().run()
    rows = corrections.history(page.store, frame.id)
    assert [r.kind for r in rows] == ["accept", "accept"]
    np.testing.assert_array_equal(corrections.load_correction(page.store, rows[-1]), dark | light)


def test_page_stroke_with_a_filter_on_starts_from_the_full_proposal(page):
    """A stroke drawn while the filters hide the dark speck saves it too: the canvas session starts
    from the model's full proposal, never from what the overlay paints."""
    from studio import corrections
    from tests.webapp_fixtures import canvas_data, canvas_drawing, send_canvas

    at = _review(page, 0)
    frame = page.frames[0]
    _, dark, light = scene_levels(0)
    at.radio(key="polarity").set_value("light").run()
    at.number_input(key="min_size").set_value(10).run()
    assert _defects_listed(at, frame) == ["defect 1 (16 px)"]  # only the light speck is painted
    scale = canvas_data(at)["canvas"][0] / W  # canvas px per image px
    stroke = {"type": "Rect", "left": 0, "top": 0, "width": 2 * scale, "height": 2 * scale, "strokeWidth": 0,
              "stroke": ADD_COLOR, "fill": ADD_COLOR}  # image pixels (0..1, 0..1)
    send_canvas(at, drawings=canvas_drawing(at, stroke))
    np.testing.assert_array_equal(corrections.current_mask(page.store, frame.id), dark | light | box(0, 0, 2))
