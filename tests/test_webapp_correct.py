"""Saving canvas drawings as corrections (webapp/autosave.py) and staging uploads (webapp/uploads.py)
against a real store made by the test."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from studio import corrections, films
from studio.films import FilmImportError
from tests.webapp_fixtures import H, W, make_plain_store, write_film
from webapp.autosave import CanvasSession, autosave
from webapp.canvas import ADD_COLOR, ERASE_COLOR, CanvasGeometry
from webapp.uploads import UploadError, UploadLimits, resolve_under_root, stage_upload

GEOM = CanvasGeometry(W // 2, H // 2, W, H)  # canvas shown at half size


def _stroke(points, colour=ADD_COLOR, width=2):
    return {"type": "Path", "stroke": colour, "strokeWidth": width,
            "path": [["M", *points[0]]] + [["L", *p] for p in points[1:]]}


@pytest.fixture
def plain(tmp_path):
    return make_plain_store(tmp_path)


def test_autosave_saves_once_per_change_and_never_duplicates(plain):
    store, film, frames = plain
    fid = frames[0].id
    base = np.zeros((H, W), bool)
    session = CanvasSession.start(store, fid, base)
    assert autosave(store, fid, {"objects": []}, GEOM, session, "ann") is None  # empty canvas: nothing
    drawing = {"objects": [_stroke([(2, 2), (20, 2)])]}
    row = autosave(store, fid, drawing, GEOM, session, "ann")
    assert row is not None and row.kind == "edit" and row.author == "ann"
    assert autosave(store, fid, drawing, GEOM, session, "ann") is None  # same drawing sent again
    assert len(corrections.history(store, fid)) == 1
    saved = corrections.current_mask(store, fid)
    assert saved[5, 10] and saved[5, 39] and not saved[20, 20]  # canvas y=2 -> rows 4..7 at full size
    drawing["objects"].append(_stroke([(10, 0), (10, 10)], ERASE_COLOR))
    autosave(store, fid, drawing, GEOM, session, "ann")
    now = corrections.current_mask(store, fid)
    assert not now[5, 20] and now[5, 10]
    assert len(corrections.history(store, fid)) == 2


def test_two_sessions_on_one_frame_lose_no_write(plain):
    store, film, frames = plain
    fid = frames[1].id
    base = np.zeros((H, W), bool)
    a = CanvasSession.start(store, fid, base)
    b = CanvasSession.start(store, fid, base)
    draw_a = {"objects": [_stroke([(2, 2), (28, 2)])]}  # row band at the top
    draw_b = {"objects": [_stroke([(2, 20), (28, 20)])]}  # row band at the bottom
    autosave(store, fid, draw_a, GEOM, a, "ann")
    autosave(store, fid, draw_b, GEOM, b, "bob")  # b started before a saved
    mask = corrections.current_mask(store, fid)
    assert mask[5, 30] and mask[40, 30], "bob's save must keep ann's stroke"
    draw_a["objects"].append(_stroke([(15, 8), (15, 14)]))
    autosave(store, fid, draw_a, GEOM, a, "ann")
    mask = corrections.current_mask(store, fid)
    assert mask[5, 30] and mask[40, 30] and mask[22, 31]
    assert [r.author for r in corrections.history(store, fid)] == ["ann", "bob", "ann"]


def test_canvas_session_starts_from_current_correction(plain):
    store, film, frames = plain
    fid = frames[2].id
    stored = np.zeros((H, W), bool)
    stored[10:20, 10:20] = True
    corrections.save_correction(store, fid, stored, "ann")
    session = CanvasSession.start(store, fid, np.ones((H, W), bool))
    np.testing.assert_array_equal(session.base, stored)
    erase = {"objects": [_stroke([(5, 5), (10, 10)], ERASE_COLOR, width=20)]}
    autosave(store, fid, erase, GEOM, session, "ann")
    assert not corrections.current_mask(store, fid)[10:20, 10:20].any()


def _png_bytes(tmp_path, seed=1):
    folder = tmp_path / f"src{seed}"
    write_film(folder, seed=seed, n=3)
    return [(p.name, p.read_bytes()) for p in sorted(folder.iterdir())]


def _film_count(store):
    return len(films.list_films(store))


def test_bad_uploads_are_refused_and_change_nothing(plain, tmp_path):
    store, film, frames = plain
    staging_root = store.data_dir / "uploads"
    before = _film_count(store)
    with pytest.raises(UploadError, match="unsupported upload"):
        stage_upload([("notes.txt", b"hello")], staging_root)
    with pytest.raises(UploadError, match="larger than"):
        stage_upload([("a.mp4", b"x" * 2048)], staging_root, UploadLimits(max_bytes=1024))
    with pytest.raises(UploadError, match="not a readable zip"):
        stage_upload([("frames.zip", b"PK\x03\x04 truncated")], staging_root)
    # A truncated PNG among good ones: staged, then refused by the all-or-nothing import.
    files = _png_bytes(tmp_path)
    files[1] = (files[1][0], files[1][1][:50])
    path, staging = stage_upload(files, staging_root)
    with pytest.raises(FilmImportError, match=files[1][0]):
        films.import_film(store, path)
    # A "huge" frame: its header claims 100000 x 100000 pixels; refused before decoding.
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    huge = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))
    path, staging = stage_upload([("frame_0001.png", huge)], staging_root)
    with pytest.raises(FilmImportError, match="frame_0001.png"):
        films.import_film(store, path)
    # Not a video although named like one.
    path, staging = stage_upload([("film.mp4", b"\x00" * 100)], staging_root)
    with pytest.raises(FilmImportError, match="film.mp4"):
        films.import_film(store, path)
    assert _film_count(store) == before
    assert not [p for p in (store.data_dir / "films").iterdir() if p.name.startswith(".staging")]


def test_zip_upload_is_flattened_and_traversal_skipped(plain, tmp_path):
    store, film, frames = plain
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in _png_bytes(tmp_path, seed=7):
            zf.writestr(f"scan/{name}", data)
        zf.writestr("../evil.png", b"x")
        zf.writestr("/abs.png", b"x")
    path, staging = stage_upload([("reel1.zip", buf.getvalue())], store.data_dir / "uploads")
    assert path.name == "reel1" and sorted(p.name for p in path.iterdir()) == [
        "frame_001.png", "frame_002.png", "frame_003.png"]
    assert not (staging.parent / "evil.png").exists()
    imported = films.import_film(store, path)
    assert imported.frame_count == 3 and imported.name == "reel1"


def test_path_import_cannot_leave_root(tmp_path):
    root = tmp_path / "root"
    (root / "film").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    assert resolve_under_root("film", root) == (root / "film").resolve()
    with pytest.raises(UploadError, match="outside the allowed import folder"):
        resolve_under_root("../outside", root)
    with pytest.raises(UploadError, match="outside the allowed import folder"):
        resolve_under_root(str(tmp_path / "outside"), root)
    (root / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(UploadError, match="outside the allowed import folder"):
        resolve_under_root("link", root)


def test_webapp_modules_do_not_import_torch():
    """The web server stays light: its modules and the use cases they call never load torch."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = ("import json, sys\n"
              "import webapp.overlay, webapp.canvas, webapp.autosave, webapp.frame_view, webapp.uploads\n"
              "import webapp.context, webapp.keyboard, webapp.review_counts, webapp.matte_archive\n"
              "import webapp.widget_state, webapp.frame_navigation, webapp.review_canvas, webapp.canvas_input\n"
              "import webapp.canvas_frames, webapp.magnifier\n"
              "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm'))))")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_frame_cache_decodes_once_prefetches_and_evicts(plain, monkeypatch):
    from webapp.frame_cache import FrameCache

    store, film, frames = plain
    calls = []
    real = films.frame_image
    monkeypatch.setattr(films, "frame_image", lambda s, f: calls.append(f.index) or real(s, f))
    cache = FrameCache(max_entries=2)
    first = cache.image(store, frames[0])
    assert cache.image(store, frames[0]) is first and calls == [0]
    np.testing.assert_array_equal(first, real(store, frames[0]))
    with pytest.raises(ValueError):
        first[0, 0] = 1  # shared between sessions: read-only
    cache.prefetch(store, [frames[1]])
    cache.wait()
    assert calls[:2] == [0, 1]
    cache.image(store, frames[1])
    assert calls.count(1) == 1  # served by the prefetch
    cache.image(store, frames[2])  # evicts frame 0 (LRU, 2 entries; frames have no probs here)
    cache.image(store, frames[0])
    assert calls.count(0) == 2
    assert cache.probs(store, frames[0]) is None
