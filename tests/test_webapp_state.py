"""State a restorer sets on one page survives the switch to another (issue 14, item 3): the film picker."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio import films
from tests.webapp_fixtures import make_plain_store, write_film

APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")
pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402


@pytest.fixture
def two_films(tmp_path, monkeypatch):
    store, first, _ = make_plain_store(tmp_path)
    write_film(tmp_path / "imports" / "second", seed=1, n=3)
    second = films.import_film(store, tmp_path / "imports" / "second", name="second")
    for key, value in {"CORRELNET_DATA_DIR": str(tmp_path / "data"), "CORRELNET_IMPORT_ROOT": str(tmp_path / "imports"),
                       "CORRELNET_DEVICE": "cpu", "CORRELNET_RETRAIN_AFTER": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    return first, second


def _switch(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def _picked(at: AppTest) -> int:
    return at.sidebar.selectbox(key="film_id").value


def test_film_choice_survives_page_switches(two_films):
    first, second = two_films
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    _switch(at, "review")
    assert _picked(at) == first.id
    at.sidebar.selectbox(key="film_id").set_value(second.id).run()
    assert "Next suggested" in {b.label for b in at.button} and _picked(at) == second.id  # still on Review
    # Page to page, through the Films page (which has no picker), and back.
    for page in ("training", "export", "films", "review", "films", "training"):
        _switch(at, page)
        if page != "films":
            assert _picked(at) == second.id, f"the film picker went back to film {_picked(at)} on {page}"
    at.sidebar.selectbox(key="film_id").set_value(first.id).run()
    _switch(at, "films")
    _switch(at, "export")
    assert _picked(at) == first.id


def test_tool_zoom_and_filters_survive_page_switches(two_films):
    """The Review page's tool, brush, zoom and overlay filters, and the Export page's choices, come back
    as the restorer left them after visiting other pages."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    _switch(at, "review")
    chosen = {"tool": "Erase rectangle", "zoom": "200 %", "polarity": "dark", "brush": 20, "threshold": 0.3,
              "dilation": 2, "min_size": 4, "opacity": 0.8, "zoom_factor": 10}
    at.radio(key="tool").set_value(chosen["tool"])
    at.selectbox(key="zoom").set_value(chosen["zoom"])
    at.radio(key="polarity").set_value(chosen["polarity"])
    for key in ("brush", "threshold", "dilation", "opacity", "zoom_factor"):
        at.slider(key=key).set_value(chosen[key])
    at.number_input(key="min_size").set_value(chosen["min_size"])
    at.run()
    _switch(at, "export")
    at.radio(key="export_source").set_value("corrected")
    at.radio(key="export_format").set_value("tiff").run()
    for page in ("training", "films", "review"):
        _switch(at, page)
    shown = {"tool": at.radio(key="tool").value, "zoom": at.selectbox(key="zoom").value,
             "polarity": at.radio(key="polarity").value, "min_size": at.number_input(key="min_size").value,
             **{key: at.slider(key=key).value for key in ("brush", "threshold", "dilation", "opacity", "zoom_factor")}}
    assert shown == chosen
    _switch(at, "export")
    assert (at.radio(key="export_source").value, at.radio(key="export_format").value) == ("corrected", "tiff")
