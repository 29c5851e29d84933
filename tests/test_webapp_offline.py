"""The app works offline (issue 14, item 7): nothing it sends the browser points outside the app.
Chromium showed 23 failed requests to fonts.gstatic.com: with no page_icon, Streamlit's frontend
turns the current page's ":material/..." icon into a favicon URL on that host."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.webapp_fixtures import make_plain_store

APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")
pytest.importorskip("streamlit")
import streamlit  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402


def test_every_page_sets_a_local_favicon(tmp_path, monkeypatch):
    make_plain_store(tmp_path)
    for key, value in {"CORRELNET_DATA_DIR": str(tmp_path / "data"), "CORRELNET_IMPORT_ROOT": str(tmp_path / "imports"),
                       "CORRELNET_RETRAIN_AFTER": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    icons = []
    real = streamlit.set_page_config
    monkeypatch.setattr(streamlit, "set_page_config",
                        lambda *a, **kw: icons.append(kw.get("page_icon")) or real(*a, **kw))
    at = AppTest.from_file(APP, default_timeout=60).run()
    for page in ("review", "training", "export", "films"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
    assert icons and all(icons), f"a page run without page_icon: the favicon comes from fonts.gstatic.com ({icons})"
    for icon in icons:
        assert not str(icon).startswith((":material", "http")), icon
