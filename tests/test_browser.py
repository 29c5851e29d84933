"""The real app in Debian Chromium (Playwright, sync API): open Review, see the overlay, draw an add
and an erase stroke on the canvas, check the stored correction pixel by pixel at full resolution,
queue retraining and watch its progress. Takes a screenshot of every page into docs/screenshots/.
The canvas is the app's own component (webapp/review_canvas.py): its status line, picture and strokes
live in a shadow root, which Playwright's locators enter.

The exact-pixel drawing checks run on a synthetic film (its 1440-px frames make the canvas scale 1.5).
Where the real footage is available (../shared/data/real_film, as the `real_film_dir` fixture finds it)
a few of its frames are imported as a second film, predicted by the shipped default model, and the
screenshots, a correction and the retraining happen on that film, so the README shows real detections;
elsewhere everything happens on the synthetic film.

Skips where /usr/bin/chromium is absent (install it with `apt-get install -y chromium`; never
`playwright install`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.browser_fixtures import CHROMIUM, ROOT, app_idle, drag, launch_chromium, serve_app, settled_box, wait_for

SHOTS = ROOT / "docs" / "screenshots"
FILM_H, FILM_W = 270, 1440  # shown at 960 px: canvas -> image scale 1.5
REAL_CLIP = ROOT.parent / "shared" / "data" / "real_film" / "the_great_train_robbery"  # as tests/conftest.py
REAL_FRAMES = range(1, 6)  # 00001-00005.png: consecutive, 480x368, dust and blotches on every frame
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")]


def _segment_distance(shape, a, b) -> np.ndarray:
    """Distance of every pixel centre to segment a-b (image coordinates x, y)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    p = np.stack([xx + 0.5, yy + 0.5], axis=-1)
    a, b = np.asarray(a, float), np.asarray(b, float)
    t = np.clip(((p - a) @ (b - a)) / np.dot(b - a, b - a), 0, 1)
    return np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1)


@dataclass(frozen=True)
class ShotFilm:
    """The film the screenshots are taken on: its name as the sidebar picker shows it, and its frames."""
    film: object
    label: str
    frames: list


def _import_real_film(ws, tmp_path: Path) -> ShotFilm | None:
    """A few frames of the real clip as film "great train robbery", predicted by the shipped default
    model (registered for that film and made its active version); None where the footage is absent."""
    if not REAL_CLIP.is_dir():
        return None
    import shutil

    from correlnet.default_model import default_model_path
    from studio import detection, films, versions

    folder = tmp_path / "imports" / "great train robbery"
    folder.mkdir(parents=True)
    for i in REAL_FRAMES:
        shutil.copy(REAL_CLIP / f"{i:05d}.png", folder / f"{i:05d}.png")
    film = films.import_film(ws.store, folder, name="great train robbery")
    version = versions.register_model_version(ws.store, default_model_path(), film_id=film.id,
                                              note="shipped default model")
    versions.activate_model_version(ws.store, film.id, version.id)
    detection.detect_film(ws.store, film, version, device="cpu")
    film = films.get_film(ws.store, film.id)
    return ShotFilm(film, f"{film.name} (id {film.id})", films.film_frames(ws.store, film))


@pytest.fixture
def running_app(tmp_path):
    from tests.webapp_fixtures import make_web_store

    ws = make_web_store(tmp_path, h=FILM_H, w=FILM_W, n=3)
    real = _import_real_film(ws, tmp_path)
    with serve_app(ws.env, tmp_path) as url:
        yield ws, url, real


def _choose_film(page, label: str) -> None:
    """Pick a film in the sidebar's "Film" selectbox (the first selectbox in the sidebar)."""
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name=label).click()


def _open(page, url: str, real: ShotFilm | None) -> None:
    """Open a page in a new session; on the real film where there is one (a new session picks film 1)."""
    page.goto(url)
    if real is not None:
        from playwright.sync_api import expect

        picker = page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first
        expect(picker).to_be_visible()
        _choose_film(page, real.label)
        expect(page.get_by_role("combobox", name="Film")).to_have_value(real.label)


def _review_real_film(page, url: str, store, real: ShotFilm) -> None:
    """Screenshots of Review on the real film at 200 % zoom: the model's proposal, then the stored
    correction (an erase rectangle over false positives on the wainscot, an add stroke on the floor)."""
    from playwright.sync_api import expect

    from studio import corrections

    _open(page, f"{url}/review", real)
    frame = real.frames[0]
    expect(page.get_by_text(f"Frame {frame.number} (index 0) - model's proposal (orange)")).to_be_visible()
    page.get_by_role("combobox", name="Canvas zoom").click()
    page.get_by_role("option", name="200 %").click()
    canvas = page.locator("canvas.rc-ink").first
    expect(canvas).to_have_attribute("width", str(2 * real.film.width))
    box = settled_box(canvas)
    assert round(box["width"]) == 960 and round(box["height"]) == 736, box  # 480x368 frames at 200 %
    page.wait_for_timeout(800)
    page.screenshot(path=str(SHOTS / "review.png"))
    # canvas px = 2 image px: a "missed" mark on the floor
    first = _draw_and_wait(page, canvas, (560, 660), (700, 660),
                              lambda: corrections.current_correction(store, frame.id), "the add stroke's autosave")
    _choose_tool(page, "Erase rectangle")
    second = _draw_and_wait(  # over the wainscot's stripes, which the model flags
        page, canvas, (120, 360), (290, 560),
        lambda: (c := corrections.current_correction(store, frame.id)) and c.id != first.id
        and not corrections.current_mask(store, frame.id)[182:278, 62:143].any() and c,
        "the erase rectangle's autosave (image rows 182-277, columns 62-142 cleared)")
    mask = corrections.current_mask(store, frame.id)
    added, erased = mask[329:331, 290:340], mask[182:278, 62:143]
    at_first = corrections.load_correction(store, first)[329:331, 290:340]
    assert added.all(), (f"add stroke not stored where drawn: {added.sum()}/{added.size} px set "
                         f"({at_first.sum()} in the add stroke's own save {first.id}, then lost)")
    assert not erased.any(), f"erase rectangle not stored where drawn: {erased.sum()} px still set"
    # Next and back show the stored correction: the overlay in Fig. 5 colours.
    page.get_by_role("button", name="Next ▶").click()
    expect(page.get_by_text("(index 1)")).to_be_visible()
    page.get_by_role("button", name="◀ Previous").click()
    expect(page.get_by_text("(index 0) - corrected: green agreed")).to_be_visible()
    assert corrections.current_correction(store, frame.id).id == second.id  # navigating saved nothing
    page.wait_for_timeout(800)
    page.screenshot(path=str(SHOTS / "review-corrected.png"))
    # Wheel zoom on the floor's add stroke, and the magnifier shift-clicked onto it.
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 630, box["y"] + 660)
    page.mouse.wheel(0, -700)
    wait_for(lambda: _view_transform(page)[0] > 3, 10, "the wheel zoom")
    zoom, ox, oy = _view_transform(page)
    page.keyboard.down("Shift")  # at the middle of image pixel (315, 330): 2 canvas px per image px
    page.mouse.click(box["x"] + (631 - ox) * zoom, box["y"] + (661 - oy) * zoom)
    page.keyboard.up("Shift")
    expect(page.get_by_test_id("stImageCaption").filter(has_text="6x around (315, 330)")).to_be_visible()
    page.wait_for_timeout(800)
    page.screenshot(path=str(SHOTS / "review-zoom.png"))


def _choose_tool(page, label: str) -> None:
    """Click a tool and wait until the canvas has it (the radio's run sends it to the canvas)."""
    from playwright.sync_api import expect

    page.get_by_text(label, exact=True).click()
    expect(page.locator(".rc-view")).to_have_attribute("data-tool", label)


def _picture_shown(page) -> None:
    """Wait until the canvas shows the frame's own picture (it takes no drawing on another frame's)."""
    from playwright.sync_api import expect

    expect(page.locator(".rc-view.rc-loading")).to_have_count(0)


def _draw_and_wait(page, canvas, start, end, saved, what: str):
    """Drag once from start to end (canvas px) and return what `saved()` returns once the stroke is stored:
    a first stroke that is lost fails here, no second one hides it."""
    _picture_shown(page)
    drag(page, canvas.bounding_box(), start, end)
    return wait_for(saved, 20, what)


def test_review_draw_save_and_retrain_in_chromium(running_app):
    from playwright.sync_api import expect, sync_playwright

    from studio import corrections, detection, jobs
    from studio.films import frame_image
    from webapp.overlay import MaskFilter, filter_mask

    ws, url, real = running_app
    expect.set_options(timeout=30_000)  # runs on shared CI cores take seconds
    store, frame = ws.store, ws.frames[0]
    probs = detection.load_prediction(store, detection.latest_prediction(store, frame.id))
    base = filter_mask(probs, frame_image(store, frame), MaskFilter())  # what the canvas starts from
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1500, "height": 1300})
        page.set_default_timeout(60_000)  # generous: CI machines and shared cores are slow
        outside = []  # the app must work offline: no request leaves it (issue 14, item 7)
        page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:", "about:")) else outside.append(r.url))
        page.goto(f"{url}/review")
        canvas = page.locator("canvas.rc-ink").first  # the canvas's drawing layer, in its shadow root
        expect(canvas).to_be_visible(timeout=120_000)  # the first run of a fresh server is the slowest
        expect(page.get_by_text("model's proposal (orange)")).to_be_visible()
        expect(canvas).to_have_attribute("width", "960")
        box = settled_box(canvas)
        assert round(box["width"]) == 960 and round(box["height"]) == 180, box
        if real is None:
            page.wait_for_timeout(500)
            page.screenshot(path=str(SHOTS / "review.png"))

        # Add stroke (brush 8 canvas px = 12 image px), then an erase stroke across it.
        add_a, add_b = (100, 60), (400, 60)
        _picture_shown(page)
        drag(page, box, add_a, add_b)
        first = wait_for(lambda: corrections.current_correction(store, frame.id), 20, "the add stroke's autosave")
        _choose_tool(page, "Erase brush")
        box = canvas.bounding_box()
        erase_a, erase_b = (250, 20), (250, 120)
        drag(page, box, erase_a, erase_b)
        wait_for(lambda: (c := corrections.current_correction(store, frame.id)) and c.id != first.id and c,
                  20, "the erase stroke's autosave")
        expect(page.get_by_text("corrected: green agreed")).to_be_visible()
        if real is None:
            page.screenshot(path=str(SHOTS / "review-corrected.png"))

        # Keyboard: "j" moves the canvas on, also with the tool radio focused (it keeps only its arrow keys).
        page.keyboard.press("j")
        expect(page.get_by_text("(index 1)")).to_be_visible()

        mask = corrections.current_mask(store, frame.id)
        scale = FILM_W / 960
        d_add = _segment_distance(mask.shape, np.multiply(add_a, scale), np.multiply(add_b, scale))
        d_erase = _segment_distance(mask.shape, np.multiply(erase_a, scale), np.multiply(erase_b, scale))
        r = 8 * scale / 2  # brush radius in image pixels
        tol = 1.5 * scale  # a pointer lands within about a CSS pixel
        erased = d_erase <= r - tol
        added = (d_add <= r - tol) & (d_erase > r + tol)
        untouched = (d_add > r + tol) & (d_erase > r + tol)
        assert added.sum() > 1000 and erased.sum() > 500
        assert mask[added].all(), "pixels under the add stroke must be set"
        assert not mask[erased].any(), "pixels under the erase stroke must be cleared"
        np.testing.assert_array_equal(mask[untouched], base[untouched])  # nothing else changed

        if real is not None:
            _review_real_film(page, url, store, real)

        # Retraining: enough edited frames for the fixed validation split (3) and training, then one click.
        # Accepted-as-is frames would not do: their mask is the model's proposal (studio.evidence).
        train_film, train_frames = (ws.film, ws.frames) if real is None else (real.film, real.frames)
        for f in train_frames[1:]:  # the restorer fixes a corner of each other frame's proposal
            edited = detection.load_prediction(store, detection.latest_prediction(store, f.id)) >= detection.THRESHOLD
            edited[2:6, 2:6] = ~edited[2:6, 2:6]
            corrections.save_correction(store, f.id, edited, "test")
        _open(page, f"{url}/training", real)
        page.get_by_role("button", name="Retrain on my corrections").click()
        expect(page.get_by_text("Fine-tuning job")).to_be_visible()
        job = [j for j in jobs.list_jobs(store, train_film.id) if j.kind == "finetune"][0]
        # Progress written by the worker: a step above 0 with its loss.
        expect(page.get_by_text(re.compile(rf"finetune job {job.id}: running, step [1-9]"))).to_be_visible(
            timeout=120_000)
        page.screenshot(path=str(SHOTS / "training.png"))
        jobs.request_cancel(store, job.id)

        page.goto(f"{url}/")  # Films is the default page: Streamlit serves it at "/" ("/films" is "not found")
        expect(page.get_by_text("Films in the store")).to_be_visible()
        expect(page.get_by_text("Detection runs in")).to_be_visible()  # the page's last line: fully drawn
        expect(page.get_by_text(re.compile(r"\d+/\d+ frames predicted"))).to_have_count(1 + (real is not None))
        page.wait_for_timeout(800)
        expect(page.get_by_text("Page not found")).to_have_count(0)
        page.screenshot(path=str(SHOTS / "films.png"))
        _open(page, f"{url}/export", real)
        page.get_by_role("button", name="Prepare export").click()
        expect(page.get_by_text("mattes ready")).to_be_visible()
        page.screenshot(path=str(SHOTS / "export.png"))
        browser.close()
    assert not outside, f"requests outside the app: {sorted(set(outside))[:10]}"


def _view_transform(page) -> tuple[float, float, float]:
    """The canvas's wheel zoom and pan offset (canvas px), as it shows them on its view element."""
    view = page.locator(".rc-view").first
    return tuple(float(view.get_attribute(f"data-{name}")) for name in ("zoom", "ox", "oy"))


def _zoom_pan_and_magnify(page, canvas, store, frame) -> None:
    """Wheel zoom keeps the point under the pointer; a stroke drawn zoomed in lands at full resolution;
    the middle button pans; a shift-click centres the magnifier on the image point clicked."""
    from playwright.sync_api import expect

    from studio import corrections

    wait_for(lambda: app_idle(page), 30, "the presses' run")
    _picture_shown(page)
    box = canvas.bounding_box()
    centre = ((DARK_BLOB[1] + BLOB / 2) * RGB_SCALE, (DARK_BLOB[0] + BLOB / 2) * RGB_SCALE)  # canvas px
    page.mouse.move(box["x"] + centre[0], box["y"] + centre[1])
    page.mouse.wheel(0, -400)
    wait_for(lambda: _view_transform(page)[0] > 1.5, 10, "the wheel zoom")
    zoom, ox, oy = _view_transform(page)
    # Still under it, up to the pointer's rounding to whole screen px.
    assert (ox + centre[0] / zoom, oy + centre[1] / zoom) == pytest.approx(centre, abs=1.0)
    # The dark blob, painted orange (blue ~4; the brown film and the painted light blob have blue > 30),
    # is drawn zoom times wider: the run of such pixels through its centre.
    row = _canvas_rgb(page, canvas)[int(centre[1])].astype(int)
    orange = np.r_[False, row[:, 2] < 20, False]
    starts, ends = np.nonzero(np.diff(orange.astype(int)) == 1)[0], np.nonzero(np.diff(orange.astype(int)) == -1)[0]
    [width] = [e - b for b, e in zip(starts, ends) if b <= centre[0] < e]
    assert abs(width - BLOB * RGB_SCALE * zoom) <= 4, (width, zoom)
    # A brush stroke across the zoomed view, 60 screen px below the blob's centre: 60 / zoom canvas px.
    _choose_tool(page, "Add brush")
    before = corrections.current_correction(store, frame.id)
    drag(page, box, (centre[0] - 150, centre[1] + 60), (centre[0] + 150, centre[1] + 60))
    row = wait_for(lambda: (c := corrections.current_correction(store, frame.id)) and c != before and c, 20,
                   "the zoomed stroke's autosave")
    mask = corrections.load_correction(store, row)
    y_img = (oy + (centre[1] + 60) / zoom) / RGB_SCALE
    x0, x1 = [(ox + (centre[0] + d) / zoom) / RGB_SCALE for d in (-150, 150)]
    r = 8 / RGB_SCALE / 2  # brush 8 canvas px
    rows = np.nonzero(mask[:, int(x0 + 2):int(x1 - 2)].all(axis=1))[0]
    assert len(rows) and abs(rows.mean() + 0.5 - y_img) < 0.6 and len(rows) <= 2 * r + 2, (rows, y_img)
    assert not mask[:, : int(x0 - r - 1)][int(y_img) - 2:int(y_img) + 3].any()  # nothing left of its start
    # Middle-button drag pans by the drag over the zoom.
    page.mouse.move(box["x"] + 500, box["y"] + 300)
    page.mouse.down(button="middle")
    page.mouse.move(box["x"] + 400, box["y"] + 250, steps=5)
    page.mouse.up(button="middle")
    zoom2, ox2, oy2 = _view_transform(page)
    assert zoom2 == zoom and (ox2 - ox, oy2 - oy) == pytest.approx((100 / zoom, 50 / zoom), abs=0.01)
    # Space + left drag pans too, also with the tool radio focused (where a click on a tool leaves the
    # focus), and draws nothing.
    page.get_by_role("radio", name="Add brush").focus()
    assert page.evaluate("document.activeElement.type") == "radio"
    page.mouse.move(box["x"] + 500, box["y"] + 300)
    page.keyboard.down(" ")
    expect(page.locator(".rc-view.rc-pan")).to_have_count(1)  # the hand: the left button pans now
    page.mouse.down()
    page.mouse.move(box["x"] + 420, box["y"] + 260, steps=5)
    page.mouse.up()
    page.keyboard.up(" ")
    zoom3, ox3, oy3 = _view_transform(page)
    assert zoom3 == zoom and (ox3 - ox2, oy3 - oy2) == pytest.approx((80 / zoom, 40 / zoom), abs=0.01)
    page.wait_for_timeout(500)
    wait_for(lambda: app_idle(page) and not page.evaluate("window.__correlnetCanvas.busy()"), 30, "the canvas's sends")
    assert corrections.current_correction(store, frame.id).id == row.id, "space + drag saved a stroke"
    zoom2, ox2, oy2 = zoom3, ox3, oy3
    # Shift-click: the magnifier centres on that image point (its sliders hold whole pixels). Clicked at
    # the middle of image pixel (x, y), so the pointer's rounding cannot move it to the next one.
    x, y = [int((o + p / zoom2) / RGB_SCALE) for o, p in ((ox2, 300), (oy2, 200))]
    page.keyboard.down("Shift")
    page.mouse.click(box["x"] + ((x + 0.5) * RGB_SCALE - ox2) * zoom2, box["y"] + ((y + 0.5) * RGB_SCALE - oy2) * zoom2)
    page.keyboard.up("Shift")
    expect(page.get_by_test_id("stImageCaption").filter(has_text="6x around")).to_have_text(f"6x around ({x}, {y})")


# -- issue 14's checks on a colour film --------------------------------------------------------------------

RGB_H, RGB_W, RGB_FRAMES = 120, 160, 24  # fit to 960 px: one image pixel is 6 canvas pixels
RGB_SCALE = 960 // RGB_W
DARK_BLOB, LIGHT_BLOB = (20, 24), (84, 124)  # (y, x) top-left of a 12x12 blob on every frame
BLOB = 12
DARK_RGB, LIGHT_RGB = (16, 12, 8), (250, 246, 238)
LUMA = np.array([0.299, 0.587, 0.114])  # BT.601, written out here as the reference


def _colour_levels(n: int, seed: int = 3) -> list[np.ndarray]:
    """n (H, W, 3) uint8 frames of a coloured texture panning 2 px a frame (so previous, current and
    next differ everywhere), each with the dark and the light blob."""
    import cv2

    rng = np.random.default_rng(seed)
    pad = 2 * n
    texture = cv2.GaussianBlur(rng.random((RGB_H + pad, RGB_W + pad, 3)).astype(np.float32), (0, 0), 2)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    base = np.array([170.0, 120.0, 70.0]) + 70.0 * (texture - 0.5)  # orange-brown, not grey
    frames = []
    for i in range(n):
        img = np.round(base[:, 2 * i: 2 * i + RGB_W][: RGB_H]).astype(np.uint8)
        (dy, dx), (ly, lx) = DARK_BLOB, LIGHT_BLOB
        img[dy:dy + BLOB, dx:dx + BLOB], img[ly:ly + BLOB, lx:lx + BLOB] = DARK_RGB, LIGHT_RGB
        frames.append(img)
    return frames


def _blob_mask(top_left) -> np.ndarray:
    mask = np.zeros((RGB_H, RGB_W), bool)
    mask[top_left[0]:top_left[0] + BLOB, top_left[1]:top_left[1] + BLOB] = True
    return mask


def _import_colour_film(ws, tmp_path: Path) -> tuple[ShotFilm, list[np.ndarray]]:
    """Film "colour": RGB frames stored as RGB, predicted as exactly its two blobs (probability 0.9),
    written straight to the store under a registered version, so the proposal is known. Returns the
    film and the frames' levels as written."""
    import cv2

    from studio import films, versions
    from studio.detection import _save_prediction

    folder = tmp_path / "imports" / "colour"
    folder.mkdir(parents=True)
    levels = _colour_levels(RGB_FRAMES)
    for i, img in enumerate(levels):
        cv2.imwrite(str(folder / f"{i + 1:05d}.png"), img[..., ::-1])
    film = films.import_film(ws.store, folder, name="colour")
    frames = films.film_frames(ws.store, film)
    assert films.frame_image(ws.store, frames[0]).shape == (RGB_H, RGB_W, 3)  # kept in colour
    version = versions.register_model_version(ws.store, ws.model_path, film_id=film.id, note="blobs")
    probs = np.where(_blob_mask(DARK_BLOB) | _blob_mask(LIGHT_BLOB), np.float32(0.9), np.float32(0.0))
    for frame in frames:
        _save_prediction(ws.store, film, frame, version.id, probs, set_uncertainty=True)
    return ShotFilm(film, f"colour (id {film.id})", frames), levels


@pytest.fixture
def colour_app(tmp_path):
    """A store with film "tiny" (gray, not predicted: the worker's detection job) and film "colour"."""
    from tests.webapp_fixtures import make_web_store

    ws = make_web_store(tmp_path, predict=False)
    colour, levels = _import_colour_film(ws, tmp_path)
    with serve_app(ws.env, tmp_path) as url:
        yield ws, url, colour, levels


def _nav(page, title: str) -> None:
    """Switch page with the sidebar's navigation link (the same session, as a restorer does), once the
    run in progress has ended."""
    wait_for(lambda: app_idle(page), 60, "the app to finish its run")
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()


def _canvas_rgb(page, canvas) -> np.ndarray:
    """What the canvas shows (background frame with its overlay), (H, W, 3) uint8 in canvas px."""
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB"))


def _painted(shot: np.ndarray, top_left) -> bool:
    """Whether the blob at image top_left is painted in the proposal's orange: its centre patch is
    much redder than blue (the blobs themselves are neutral: dark or light grey)."""
    cy, cx = [(v + BLOB / 2) * RGB_SCALE for v in top_left]
    patch = shot[int(cy) - 6:int(cy) + 6, int(cx) - 6:int(cx) + 6].reshape(-1, 3).astype(int)
    return bool(np.median(patch[:, 0] - patch[:, 2]) > 60)


def _flick_frames(page, url: str) -> list[np.ndarray]:
    """The frames of the flick GIF the page shows, as (H, W) uint8 grey."""
    import io

    from PIL import Image

    from urllib.parse import urljoin

    src = page.get_by_test_id("stImage").filter(has_text="flick").locator("img").get_attribute("src")
    response = page.request.get(urljoin(url + "/", src))
    if not response.ok:  # a rerun replaced the media file between reading src and fetching it
        return []
    data = response.body()
    with Image.open(io.BytesIO(data)) as gif:
        shown = []
        for k in range(gif.n_frames):
            gif.seek(k)
            shown.append(np.asarray(gif.convert("L")))
    return shown


def _flick_reference(levels: list[np.ndarray], index: int, size: int = 64, factor: int = 6) -> list[np.ndarray]:
    """Previous, current and next frame's luma in the magnifier's default window (centred on the
    frame, 384 // 6 = 64 px at 6x), computed here from the levels the test wrote."""
    x0, y0 = RGB_W // 2 - size // 2, RGB_H // 2 - size // 2
    out = []
    for i in (max(index - 1, 0), index, min(index + 1, len(levels) - 1)):
        luma = np.round(levels[i][y0:y0 + size, x0:x0 + size].astype(float) @ LUMA)
        out.append(np.repeat(np.repeat(luma, factor, axis=0), factor, axis=1))
    return out


def test_review_of_a_colour_film_in_chromium(colour_app):
    """Issue 14's "Done when" on an RGB film: the film choice survives page switches; the flick view
    shows previous, current and next frame (differing, not blank); the polarity filters keep the right
    blob; a rectangle dragged past the right edge draws; 20 quick presses move 20 frames; wheel zoom, pan
    and click-to-centre the magnifier; a finished job's status shows without a reload."""
    from playwright.sync_api import expect, sync_playwright

    from studio import corrections, jobs

    ws, url, colour, levels = colour_app
    expect.set_options(timeout=30_000)  # runs on shared CI cores take seconds
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1500, "height": 1300})
        page.set_default_timeout(60_000)
        page.goto(f"{url}/review")
        picker = page.get_by_role("combobox", name="Film")
        expect(picker).to_have_value(f"tiny (id {ws.film.id})", timeout=120_000)  # a new session: film 1
        _choose_film(page, colour.label)
        expect(page.get_by_text("Frame 1 (index 0) - model's proposal (orange)")).to_be_visible()

        # The choice survives every page switch, the Films page (no picker) included.
        for title in ("Training", "Export", "Films", "Review"):
            _nav(page, title)
            if title == "Films":
                expect(page.get_by_text("Films in the store")).to_be_visible()
            else:
                expect(picker).to_have_value(colour.label)
        expect(page.get_by_text("Frame 1 (index 0) - model's proposal (orange)")).to_be_visible()

        # Flick view on frame 2: previous, current and next frame as they are (the colour-frame bug
        # showed one white image).
        page.keyboard.press("j")
        expect(page.get_by_text("Frame 2 (index 1)")).to_be_visible()
        shown = wait_for(lambda: (f := _flick_frames(page, url)) and len(f) == 3
                         and np.abs(f[1].astype(float) - _flick_reference(levels, 1)[1]).max() <= 1 and f,
                         30, "the flick view of frame 2")
        for got, want in zip(shown, _flick_reference(levels, 1)):
            assert np.abs(got.astype(float) - want).max() <= 1
            assert got.std() > 5  # not blank
        assert not np.array_equal(shown[0], shown[1]) and not np.array_equal(shown[1], shown[2])

        # Polarity: both blobs painted; dark only keeps the dark one; light only the light one.
        canvas = page.locator("canvas.rc-ink").first
        expect(canvas).to_have_attribute("width", "960")
        for choice, dark, light in (("both", True, True), ("dark only", True, False),
                                    ("light only", False, True), ("both", True, True)):
            page.get_by_test_id("stSidebar").get_by_text(choice, exact=True).click()
            wait_for(lambda: app_idle(page) and (s := _canvas_rgb(page, canvas)) is not None
                     and (_painted(s, DARK_BLOB), _painted(s, LIGHT_BLOB)) == (dark, light), 30,
                     f"polarity {choice!r}: dark blob painted {dark}, light blob painted {light}")

        # A rectangle started 10 px inside the right edge and dragged on past it and down covers the
        # rows it was dragged over (canvas y 300-420: image rows 50-70) up to the frame's last column;
        # it stayed the tool's 16 px starting square (rows 50-52) when leaving the canvas ended the drag.
        frame = colour.frames[1]  # the frame shown since the flick check
        _choose_tool(page, "Add rectangle")
        box = canvas.bounding_box()
        _picture_shown(page)
        drag(page, box, (box["width"] - 10, 300), (box["width"] + 40, 420))
        wait_for(lambda: corrections.current_correction(ws.store, frame.id), 20, "the rectangle's autosave")
        edge = np.asarray(corrections.current_mask(ws.store, frame.id))[:, RGB_W - 2:] > 0
        assert edge[55:68].all(), f"rectangle at the right edge stored on rows {np.nonzero(edge.any(1))[0]}"
        assert not edge[:48].any() and not edge[72:].any()

        # 20 quick presses move 20 frames: the canvas shows each at once and tells the server the frame
        # it reached (a button click per press lost one in 3 of 7 runs on a loaded machine).
        for _ in range(20):
            page.keyboard.press("j")
            page.wait_for_timeout(40)
        expect(page.get_by_text("Frame 22 (index 21)")).to_be_visible()
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar.get_by_test_id("stMetric").filter(has_text="Frame")).to_contain_text(f"22/{RGB_FRAMES}")
        _zoom_pan_and_magnify(page, canvas, ws.store, colour.frames[21])

        # A finished detection job's status appears on the Films page without a reload.
        _nav(page, "Films")
        expect(page.get_by_text("Films in the store")).to_be_visible()
        page.evaluate("window.__sameDocument = true")
        page.locator(f".st-key-detect-{ws.film.id} button").click()
        job = wait_for(lambda: [j for j in jobs.list_jobs(ws.store, ws.film.id) if j.kind == "predict"], 20,
                       "the queued detection job")[0]
        expect(page.get_by_text(f"detection job {job.id}: succeeded")).to_be_visible(timeout=180_000)
        assert jobs.get_job(ws.store, job.id).status == "succeeded"
        assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
        browser.close()
