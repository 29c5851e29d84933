"""AppTest for every page of the web app against a store made by the test (CORRELNET_DATA_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from studio import corrections, films, jobs
from webapp.matte_archive import matte_zip
from tests.webapp_fixtures import FRAMES, H, W, canvas_drawing, make_web_store, send_canvas, write_film
from webapp.canvas import ADD_COLOR

APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")
pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    ws = make_web_store(tmp_path_factory.mktemp("web"))
    saved = {k: os.environ.get(k) for k in ws.env}
    os.environ.update(ws.env)
    yield ws
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
    return at


def _button(at: AppTest, label: str):
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} in {[b.label for b in at.button]}"
    return matches[0]


def test_films_page_lists_film_and_refuses_path_outside_root(web, tmp_path):
    at = _app()
    assert [t.value for t in at.title] == ["Films"]
    labels = {b.label for b in at.button}
    assert {"Import upload", "Import from path", "Start detection"} <= labels
    assert "tiny" in str(at.dataframe[0].value["name"].tolist())
    outside = tmp_path / "elsewhere"
    write_film(outside)
    before = len(films.list_films(web.store))
    at.text_input(key="import_path").set_value(str(outside))
    _button(at, "Import from path").click().run()
    assert any("outside the allowed import folder" in e.value for e in at.error)
    assert len(films.list_films(web.store)) == before


def test_films_page_truncated_frame_gives_error_and_changes_nothing(web):
    folder = Path(web.settings.import_root) / "broken"
    write_film(folder, seed=3)
    frame = folder / "frame_003.png"
    frame.write_bytes(frame.read_bytes()[:60])  # truncated PNG
    before = len(films.list_films(web.store))
    at = _app()
    at.text_input(key="import_path").set_value("broken")
    _button(at, "Import from path").click().run()
    assert any("frame_003.png" in e.value for e in at.error), [e.value for e in at.error]
    assert len(films.list_films(web.store)) == before
    assert not [p for p in (web.store.data_dir / "films").iterdir() if p.name.startswith(".staging")]


def test_start_detection_queues_one_predict_job(web, tmp_path):
    # A second, unpredicted film: its detect button is enabled.
    folder = Path(web.settings.import_root) / "second"
    write_film(folder, seed=5, n=3)
    film = films.import_film(web.store, folder, name="second")
    at = _app()
    at.button(key=f"detect-{film.id}").click().run()
    at.button(key=f"detect-{film.id}").click().run()
    predict = [j for j in jobs.list_jobs(web.store, film.id) if j.kind == "predict"]
    assert len(predict) == 1 and predict[0].status == "queued"


def test_review_page_widgets_navigation_and_accept(web):
    at = _app("review")
    assert not at.exception
    for label in ("◀ Previous", "Next ▶", "Next with detections", "Next suggested", "Accept frame as is", "Undo"):
        _button(at, label)
    assert at.slider(key="threshold").value == 0.5
    assert at.radio(key="polarity").value == "both"
    assert at.sidebar.selectbox(key="film_id").value == web.film.id
    key = f"frame_index:{web.film.id}"
    assert at.session_state[key] == 0
    _button(at, "Next ▶").click().run()
    assert at.session_state[key] == 1
    _button(at, "◀ Previous").click().run()
    assert at.session_state[key] == 0
    _button(at, "Accept frame as is").click().run()
    assert not at.exception
    row = corrections.current_correction(web.store, web.frames[0].id)
    assert row is not None and row.kind == "accept"
    np.testing.assert_array_equal(corrections.load_correction(web.store, row), _proposal(web, web.frames[0]))
    assert at.session_state[key] == 1  # accept moves on to the next frame
    assert any(m.label == "Reviewed" and m.value.startswith("1/") for m in at.metric)


def _proposal(web, frame) -> np.ndarray:
    from studio import detection

    return detection.load_prediction(web.store, detection.latest_prediction(web.store, frame.id)) >= detection.THRESHOLD


def test_review_threshold_changes_what_is_painted_only(web):
    """The threshold slider changes the painted defects (the magnifier lists them), not the mask a
    drawing starts from; accepting is covered for every filter and format in test_webapp_formats.py."""
    from studio import detection
    from webapp.overlay import component_labels

    at = _app("review")
    at.session_state[f"frame_index:{web.film.id}"] = 2  # a frame nobody else corrects in these tests
    at.run()
    frame = web.frames[2]
    probs = detection.load_prediction(web.store, detection.latest_prediction(web.store, frame.id))
    listed = {}
    for thr in (0.05, 0.95):
        at.slider(key="threshold").set_value(thr).run()
        listed[thr] = len(at.selectbox(key=f"magnify:{frame.id}").options) - 1
        assert listed[thr] == min(component_labels(probs >= thr)[0] - 1, 50)
    assert listed[0.05] != listed[0.95]
    # A stroke drawn with the threshold at 0.95 lands on the full proposal (probability >= 0.5).
    stroke = {"type": "Rect", "left": 0, "top": 0, "width": 15, "height": 15, "originX": "left", "originY": "top",
              "strokeWidth": 0, "stroke": ADD_COLOR, "fill": ADD_COLOR}  # image pixel (0, 0) on the fit canvas
    send_canvas(at, drawings=canvas_drawing(at, stroke))
    expected = probs >= detection.THRESHOLD
    expected[0, 0] = True
    np.testing.assert_array_equal(corrections.current_mask(web.store, frame.id), expected)


def test_training_button_queues_exactly_one_job_even_clicked_twice(web):
    at = _app("training")
    _button(at, "Retrain on my corrections").click().run()
    _button(at, "Retrain on my corrections").click().run()
    assert not at.exception
    queued = [j for j in jobs.list_jobs(web.store, web.film.id) if j.kind == "finetune"]
    assert len(queued) == 1 and queued[0].status == "queued"
    assert "Activate this version" in {b.label for b in at.button}
    _button(at, "Cancel job").click().run()
    assert jobs.get_job(web.store, queued[0].id).status == "cancelled"


def test_training_button_trains_the_film_chosen_in_the_same_rerun(tmp_path, monkeypatch):
    """A restorer who picks another film and clicks before the page redraws queues that film:
    both widget changes reach the server in one rerun, and the button was drawn for the old film."""
    ws = make_web_store(tmp_path, predict=False)
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    write_film(tmp_path / "imports" / "other", seed=1)
    other = films.import_film(ws.store, tmp_path / "imports" / "other", name="other")
    at = _app("training")
    assert at.sidebar.selectbox[0].value == ws.film.id
    at.sidebar.selectbox[0].set_value(other.id)
    _button(at, "Retrain on my corrections").click().run()
    assert not at.exception, at.exception
    queued = {j.film_id for j in jobs.list_jobs(ws.store) if j.kind == "finetune"}
    assert queued == {other.id}


def test_export_page_prepares_zip_of_mattes(web):
    import io
    import zipfile

    at = _app("export")
    _button(at, "Prepare export").click().run()
    assert not at.exception
    assert any("mattes ready" in s.value for s in at.success)
    archive = matte_zip(web.store, web.film, "png", "best")
    assert archive.written == FRAMES and archive.missing == []
    with zipfile.ZipFile(io.BytesIO(archive.zip_bytes)) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".png"))
        assert len(names) == FRAMES
        first = cv2.imdecode(np.frombuffer(zf.read(names[0]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert first.shape == (H, W) and set(np.unique(first)) <= {0, 255}
    assert b'"annotations"' in archive.coco


def test_review_undo_and_next_suggested(web):
    at = _app("review")
    key = f"frame_index:{web.film.id}"
    at.session_state[key] = 3
    at.run()
    frame = web.frames[3]
    _button(at, "Accept frame as is").click().run()
    assert corrections.current_correction(web.store, frame.id).kind == "accept"
    _button(at, "◀ Previous").click().run()
    assert at.session_state[key] == 3
    _button(at, "Undo").click().run()
    assert not at.exception
    # Undoing the first correction goes back to the model's proposal, as a new row.
    assert [r.kind for r in corrections.history(web.store, frame.id)] == ["accept", "reset"]
    _button(at, "Next suggested").click().run()
    suggested = web.frames[at.session_state[key]]
    assert corrections.history(web.store, suggested.id) == []


def test_training_page_shows_the_gate_verdict_with_frames_and_uncertainty(tmp_path, monkeypatch):
    ws = make_web_store(tmp_path, predict=False)
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    job = jobs.queue_training(ws.store, ws.film.id)
    jobs.claim_next_job(ws.store, "w")
    verdict = ("not published: a tie (gain +0.0000, under 0.001); gate score 0.500 -> 0.500 (...) on 3 edited "
               "validation frame(s): gain +0.000, 90% interval -0.003 to +0.002, better in 39% of bootstrap resamples")
    jobs.finish_job(ws.store, job.id, "w", "succeeded", verdict)
    at = _app("training")
    assert any(verdict in c.value and f"job {job.id}" in c.value for c in at.caption), [c.value for c in at.caption]
