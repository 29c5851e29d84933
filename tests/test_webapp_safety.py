"""Nothing lost, nothing overwritten, nothing outside its place, through the web app (issue 15, items 6,
7, 9 and 12a): uploads never overwrite or escape, path imports keep symlinked frames inside the import
root, export zips have safe member names whatever the film is called, and the app binds to localhost
from any working folder."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from db.models import Film
from studio import corrections, films
from tests.webapp_fixtures import make_plain_store, write_film
from webapp.uploads import UploadError, stage_upload

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "webapp" / "app.py")


@pytest.fixture
def plain(tmp_path):
    return make_plain_store(tmp_path)


def _frames(tmp_path: Path, seed: int, n: int = 3) -> list[tuple[str, bytes]]:
    folder = tmp_path / f"src{seed}"
    write_film(folder, seed=seed, n=n)
    return [(p.name, p.read_bytes()) for p in sorted(folder.iterdir())]


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# --- item 9: uploads -----------------------------------------------------------------------------------

def test_zip_with_one_frame_name_in_two_folders_is_refused_not_overwritten(plain, tmp_path):
    store, _, _ = plain
    reel_a, reel_b = _frames(tmp_path, 1), _frames(tmp_path, 2)
    members = {f"a/{n}": d for n, d in reel_a} | {f"b/{n}": d for n, d in reel_b}
    uploads = store.data_dir / "uploads"
    with pytest.raises(UploadError, match=r"two frames named frame_001\.png \(a/frame_001\.png and b/frame_001\.png\)"):
        stage_upload([("reels.zip", _zip(members))], uploads)
    assert list(uploads.iterdir()) == []  # the staging folder is gone too


def test_zip_with_distinct_names_in_folders_keeps_every_frame(plain, tmp_path):
    store, _, _ = plain
    frames = _frames(tmp_path, 3, n=4)
    members = {f"{'a' if i < 2 else 'b'}/{n}": d for i, (n, d) in enumerate(frames)}
    path, staging = stage_upload([("reel.zip", _zip(members))], store.data_dir / "uploads")
    assert sorted(p.name for p in path.iterdir()) == [n for n, _ in frames]
    for name, data in frames:
        assert (path / name).read_bytes() == data


def test_two_uploaded_files_of_one_name_are_refused(plain, tmp_path):
    store, _, _ = plain
    (name, first), (_, second) = _frames(tmp_path, 1)[0], _frames(tmp_path, 2)[0]
    with pytest.raises(UploadError, match=f"two frames named {name}"):
        stage_upload([(name, first), (f"other/{name}", second)], store.data_dir / "uploads")


def test_uploaded_names_cannot_leave_the_staging_folder(plain, tmp_path):
    store, _, _ = plain
    uploads = store.data_dir / "uploads"
    frames = _frames(tmp_path, 4)
    # Windows separators in a browser-sent name, and in zip members (zips written on Windows).
    files = [(f"..\\..\\{n}", d) for n, d in frames]
    path, staging = stage_upload(files, uploads)
    assert path.parent == staging and sorted(p.name for p in path.iterdir()) == [n for n, _ in frames]
    members = {f"..\\{frames[0][0]}": frames[0][1]} | {f"scan\\{n}": d for n, d in frames[1:]}
    path, staging = stage_upload([("..zip", _zip(members))], uploads)
    assert path == staging / "frames" and sorted(p.name for p in path.iterdir()) == [n for n, _ in frames[1:]]
    assert sorted(p.name for p in uploads.parent.iterdir() if p.suffix == ".png") == []


def test_every_upload_gets_its_own_folder(plain):
    """Two uploads of the same file never share a folder (tempfile.mkdtemp: created new, or it raises)."""
    store, _, _ = plain
    uploads = store.data_dir / "uploads"
    file = [("clip.mp4", b"\x00" * 100)]
    first, first_staging = stage_upload(file, uploads)
    second, second_staging = stage_upload(file, uploads)
    assert first_staging != second_staging and first.exists() and second.exists()
    assert first_staging.name.startswith("upload-")  # `correlnet db check` finds a crashed app's leftovers


# --- item 6: symlinked frames through the Films page --------------------------------------------------

def _films_page(tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    for key, value in {"CORRELNET_DATA_DIR": str(tmp_path / "data"), "CORRELNET_IMPORT_ROOT": str(tmp_path / "imports"),
                       "CORRELNET_DEVICE": "cpu", "CORRELNET_RETRAIN_AFTER": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def test_films_page_refuses_a_frame_symlinked_from_outside_the_import_root(plain, tmp_path, monkeypatch):
    store, _, _ = plain
    secret = tmp_path / "elsewhere"
    write_film(secret, seed=9, n=2)
    folder = tmp_path / "imports" / "linked"
    write_film(folder, seed=8, n=2)
    (folder / "frame_003.png").symlink_to(secret / "frame_001.png")  # the folder itself is inside the root
    before = len(films.list_films(store))
    at = _films_page(tmp_path, monkeypatch)
    at.text_input(key="import_path").set_value("linked")
    next(b for b in at.button if b.label == "Import from path").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any("frame_003.png" in e and "outside the allowed import folder" in e for e in errors), errors
    assert len(films.list_films(store)) == before


# --- item 7: export zip of a film stored under a bad name ---------------------------------------------

@pytest.mark.parametrize("bad_name", ["../../escaped", "two\nlines", "/abs/olute", "..\\win"])
def test_matte_zip_member_names_are_safe_for_a_film_stored_under_a_bad_name(plain, bad_name):
    from webapp.matte_archive import matte_zip

    store, film, frames = plain
    corrections.save_correction(store, frames[0].id, np.zeros((film.height, film.width), bool), "ann")
    with store.write() as s:  # a name stored before names were checked (studio.films.check_film_name)
        s.get(Film, film.id).name = bad_name
    film = films.get_film(store, film.id)
    archive = matte_zip(store, film, "png", "corrected")
    assert archive.written >= 1
    assert archive.stem and all(c.isalnum() or c in "-_" for c in archive.stem), archive.stem
    with zipfile.ZipFile(io.BytesIO(archive.zip_bytes)) as zf:
        names = zf.namelist()
    assert len(names) == archive.written + 1 and sum(n.endswith(".coco.json") for n in names) == 1
    for name in names:
        parts = name.split("/")
        assert len(parts) == 2 and parts[0] == archive.stem, name
        assert ".." not in parts and "\\" not in name and "\n" not in name and not name.startswith("/")


# --- item 12a: the address comes with the entry point ------------------------------------------------

def _listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_app_binds_to_localhost_when_started_from_another_folder(tmp_path):
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("needs Linux's /proc/net/tcp to see which address the server listens on")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HOME": str(tmp_path), "CORRELNET_DATA_DIR": str(tmp_path / "data"),
           "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("STREAMLIT_")}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", APP, "--server.port", str(port)],
                            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _listening(port) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        time.sleep(0.5)  # an all-interfaces server opens its IPv6 socket just after the IPv4 one
        addresses = _listening(port)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    loopback = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1
    assert addresses, "the app never listened"
    assert addresses <= loopback, f"the app listens on {addresses}, not on localhost only"


def test_scanner_frames_upload_like_pngs_and_other_files_are_refused_by_name(plain, tmp_path):
    """DPX, Cineon and EXR frames (what film import reads) pass the upload; the formats come from one home."""
    from correlnet.frames import IMAGE_SUFFIXES
    from correlnet.video import VIDEO_SUFFIXES
    from webapp.uploads import ACCEPTED

    assert {"." + s for s in ACCEPTED} == set(IMAGE_SUFFIXES) | set(VIDEO_SUFFIXES) | {".zip"}
    store, _, _ = plain
    files = [(f"scan.{n}.{ext}", f"{ext} bytes {n}".encode()) for n, ext in ((1001, "dpx"), (1002, "DPX"), (1003, "exr"))]
    path, staging = stage_upload(files, store.data_dir / "uploads")
    assert sorted(p.name for p in path.iterdir()) == sorted(n for n, _ in files)
    assert (path / "scan.1003.exr").read_bytes() == b"exr bytes 1003"
    with pytest.raises(UploadError, match=r"unsupported upload \(\.txt\)"):
        stage_upload([("notes.txt", b"x")], store.data_dir / "uploads")
    path, _ = stage_upload([("reel.mxf", b"mxf")], store.data_dir / "uploads")
    assert path.name == "reel.mxf"
