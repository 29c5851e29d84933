"""Imports under damage and races (issue 15): a truncated video, the folder of a live (copying) import
swept or removed under it, symlinks out of the import root, bad film names, two
imports racing for one default name."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import correlnet.frames as framelib
import correlnet.video as video
from db.testing import temporary_store
from studio import staging
from studio.films import FilmImportError, film_frames, frame_image, import_film, list_films
from tests.test_import import COPY, assert_store_empty, moving_frames, progress, write_folder


@pytest.fixture
def store(tmp_path):
    with temporary_store(tmp_path / "data") as s:
        yield s


def write_avi(path: Path, n: int = 12) -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 24, (64, 48))
    for img in moving_frames(n, shape=(48, 64), channels=3):
        writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    writer.release()
    return path.read_bytes()


def live_folders(store) -> list[Path]:
    """The film folders of imports that have not finished (they hold the live lock's file)."""
    return sorted(p.parent for p in (store.data_dir / "films").glob(f"*/{staging.LIVE_FILE}"))


def test_truncated_video_is_refused_naming_the_file_and_frame(store, tmp_path):
    full = write_avi(tmp_path / "full.avi")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full[: int(len(full) * 0.6)])  # the header still says 12 frames
    with pytest.raises(FilmImportError) as info:
        import_film(store, cut)
    message = str(info.value)
    assert "cut.avi" in message and "decoding failed at frame" in message and "of the 12" in message
    assert_store_empty(store)


def test_header_one_frame_over_is_tolerated_two_is_not(tmp_path, monkeypatch):
    """Containers are often one frame off (a real .mkv says 311, decodes 310); two is damage."""
    path = tmp_path / "clip.avi"
    write_avi(path, 6)
    monkeypatch.setattr(video, "video_header_count", lambda p: (7, True))
    assert len(list(video.iter_video_frames(path))) == 6
    monkeypatch.setattr(video, "video_header_count", lambda p: (8, True))
    with pytest.raises(framelib.FrameReadError, match="frame 7 of the 8"):
        list(video.iter_video_frames(path))
    # A count estimated from duration x rate (no count in the header) gets 1 %: 3 frames of 300.
    monkeypatch.setattr(video, "video_header_count", lambda p: (300, False))
    video.check_video_complete(path, 297)
    with pytest.raises(framelib.FrameReadError, match="frame 297 of the 300"):
        video.check_video_complete(path, 296)


def test_real_mkv_one_frame_short_of_its_duration_imports(store):
    mkv = Path(__file__).resolve().parents[2] / "shared" / "data" / "clean_video" / "decord_flipping_a_pancake.mkv"
    if not mkv.is_file():
        pytest.skip(f"{mkv} not found")
    assert video.video_header_count(mkv) == (311, False)
    assert sum(1 for _ in video.iter_video_frames(mkv)) == 310


def test_sweep_spares_a_live_import_even_when_its_folder_looks_a_day_old(store, tmp_path):
    write_folder(tmp_path / "long", moving_frames(5))
    write_folder(tmp_path / "other", moving_frames(3, seed=7))

    def second_import_meanwhile(done: int, total: int) -> None:
        if done == 2:
            [live] = live_folders(store)
            for item in (live, live / "frames", live / staging.LIVE_FILE):  # a day without a visible sign
                if item.exists():
                    os.utime(item, (0, 0))
            import_film(store, tmp_path / "other", cfg=COPY)  # its sweep must leave the running import alone

    film = import_film(store, tmp_path / "long", job=progress(second_import_meanwhile), cfg=COPY)
    frames = film_frames(store, film)
    assert film.frame_count == len(frames) == 5
    for frame, img in zip(frames, moving_frames(5)):
        assert np.array_equal(frame_image(store, frame), img)
    assert live_folders(store) == [] and len(list((store.data_dir / "films").iterdir())) == 2


def test_sweep_removes_a_dead_import(store, tmp_path):
    films_dir = store.data_dir / "films"
    dead, alive, owned = films_dir / "dead", films_dir / "alive", films_dir / "owned"
    for folder in (dead, alive, owned):
        folder.mkdir(parents=True)
    staging.LiveLock(dead).close()  # the process died: the kernel released its lock
    live = staging.LiveLock(alive)  # locked, though it looks a day old
    for folder in (dead, alive, owned):
        for item in (folder, folder / staging.LIVE_FILE):
            if item.exists():
                os.utime(item, (0, 0))
    assert staging.sweep_stale(films_dir, {owned}) == [dead]  # a film's folder is never swept, however old
    assert not dead.exists() and alive.exists() and owned.exists()
    live.close()


@pytest.mark.parametrize("damage", ["folder", "frame"])
def test_import_fails_when_its_staging_vanishes(store, tmp_path, damage):
    write_folder(tmp_path / "src", moving_frames(5))

    def clean_up_meanwhile(done: int, total: int) -> None:
        [live] = live_folders(store)
        if damage == "folder" and done == 2:
            shutil.rmtree(live)  # e.g. an old sweep, or an administrator
        if damage == "frame" and done == total:
            (live / "frames" / "000001.png").unlink()

    with pytest.raises(FilmImportError, match="vanished") as info:
        import_film(store, tmp_path / "src", job=progress(clean_up_meanwhile), cfg=COPY)
    assert "import again" in str(info.value)
    assert_store_empty(store)


def test_symlinked_frame_outside_the_import_root_is_refused(store, tmp_path):
    root = tmp_path / "imports"
    write_folder(root / "reel", moving_frames(3))
    secret = tmp_path / "elsewhere" / "secret.png"
    secret.parent.mkdir()
    cv2.imwrite(str(secret), moving_frames(1, seed=3)[0])
    (root / "reel" / "frame_4.png").symlink_to(secret)
    with pytest.raises(FilmImportError, match="outside the allowed import folder") as info:
        import_film(store, root / "reel", root=root)
    assert "frame_4.png" in str(info.value)
    assert_store_empty(store)
    (root / "reel" / "frame_4.png").unlink()
    (root / "reel" / "frame_4.png").symlink_to(root / "reel" / "frame_3.png")  # inside the root: fine
    assert import_film(store, root / "reel", root=root).frame_count == 4


@pytest.mark.parametrize("name", ["../../x", "a/b", "two\nlines", "", "   ", " padded", "x" * 300, ".."])
def test_bad_film_names_are_refused(store, tmp_path, name):
    write_folder(tmp_path / "src", moving_frames(3))
    with pytest.raises(FilmImportError, match="film name"):
        import_film(store, tmp_path / "src", name=name)
    assert_store_empty(store)


def test_default_name_from_an_odd_folder_name_is_made_valid(store, tmp_path):
    write_folder(tmp_path / "reel\none", moving_frames(3))
    assert import_film(store, tmp_path / "reel\none").name == "reel_one"


def test_two_imports_racing_for_one_default_name_both_succeed(store, tmp_path):
    write_folder(tmp_path / "a" / "reel", moving_frames(3))
    write_folder(tmp_path / "b" / "reel", moving_frames(3, seed=5))

    def other_import_lands_first(done: int, total: int) -> None:
        if done == 1:
            import_film(store, tmp_path / "b" / "reel")

    film = import_film(store, tmp_path / "a" / "reel", job=progress(other_import_lands_first))
    assert film.name == "reel-2"
    assert sorted(f.name for f in list_films(store)) == ["reel", "reel-2"]
