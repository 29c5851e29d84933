"""Importing films: formats kept bit-exact (copied or in place), natural order, neighbours, the store
unchanged on bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select

import studio.films as films_mod
import studio.resumable_import as resumable_mod
from correlnet import frames as framelib
from correlnet import video
from correlnet.job_context import CallbackJob
from db.models import Film, Frame
from db.testing import temporary_store
from studio.films import FilmImportError, ImportConfig, film_frames, frame_image, get_film, import_film, list_films


@pytest.fixture
def store(tmp_path):
    with temporary_store(tmp_path / "data") as s:
        yield s


COPY = ImportConfig(in_place=False)  # frames copied into the store as PNG (the only way for videos)


def progress(callback) -> CallbackJob:
    """A job context calling callback(done, total) on every progress report."""
    return CallbackJob(lambda done=0, total=0, **_: callback(done, total))


def moving_frames(n: int, shape=(40, 56), dtype=np.uint8, channels=1, seed=0) -> list[np.ndarray]:
    """A bright square moving over a grainy background (distinct frames, no duplicates)."""
    rng = np.random.default_rng(seed)
    top = 65535 if dtype == np.uint16 else 255
    out = []
    for t in range(n):
        img = rng.normal(0.4, 0.05, shape)
        img[10:20, 4 + 3 * t:14 + 3 * t] = 0.9
        img = (np.clip(img, 0, 1) * top).astype(dtype)
        if channels == 3:
            img = np.stack([img, img // 2, top - img], axis=-1)
        out.append(img)
    return out


def write_folder(folder: Path, images: list[np.ndarray], pattern="frame_{}.png", start=1) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        path = folder / pattern.format(start + i)
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
        assert cv2.imwrite(str(path), bgr)
        paths.append(path)
    return paths


def assert_store_empty(store) -> None:
    with store.session() as s:
        assert s.execute(select(func.count()).select_from(Film)).scalar() == 0
        assert s.execute(select(func.count()).select_from(Frame)).scalar() == 0
    films_dir = store.data_dir / "films"
    assert not films_dir.exists() or list(films_dir.iterdir()) == []


@pytest.mark.parametrize("in_place", [True, False])
@pytest.mark.parametrize("dtype,channels,pattern", [
    (np.uint8, 1, "f_{}.png"), (np.uint16, 1, "scan.{}.tif"), (np.uint16, 3, "shot_{}.png"), (np.uint8, 3, "x{}.tiff"),
])
def test_frames_are_kept_bit_exact(store, tmp_path, dtype, channels, pattern, in_place):
    images = moving_frames(5, dtype=dtype, channels=channels)
    paths = write_folder(tmp_path / "src", images, pattern)
    calls = []
    film = import_film(store, tmp_path / "src", job=progress(lambda d, t: calls.append((d, t))),
                       cfg=ImportConfig(in_place=in_place))
    assert (film.bit_depth, film.channels, film.width, film.height) == (np.dtype(dtype).itemsize * 8, channels, 56, 40)
    assert film.status == "ready" and film.frame_count == 5 and calls[-1] == (5, 5)
    frames = film_frames(store, film)
    for frame, img, path in zip(frames, images, paths):
        stored = frame_image(store, frame)
        assert stored.dtype == img.dtype and np.array_equal(stored, img)
        if in_place:
            assert (frame.path, frame.source_path, frame.source_size) == ("", str(path.resolve()), path.stat().st_size)
        else:
            assert (store.data_dir / frame.path).suffix == ".png" and frame.source_path is None


def test_jpeg_frames_import_as_decoded(store, tmp_path):
    paths = write_folder(tmp_path / "jpg", moving_frames(3, channels=3), "f{}.jpg")
    film = import_film(store, tmp_path / "jpg")
    for frame, path in zip(film_frames(store, film), paths):
        assert np.array_equal(frame_image(store, frame), framelib.read_image(path))


def test_natural_order_numbers_and_neighbours(store, tmp_path):
    images = moving_frames(12)
    write_folder(tmp_path / "nat", images, "frame_{}.png", start=1)  # frame_1 .. frame_12: "10" sorts after "9"
    film = import_film(store, tmp_path / "nat", name="nat")
    frames = film_frames(store, film)
    assert [f.number for f in frames] == list(range(1, 13))
    assert [f.source_name for f in frames[8:11]] == ["frame_9.png", "frame_10.png", "frame_11.png"]
    assert np.array_equal(frame_image(store, frames[9]), images[9])
    assert [(f.prev_index, f.next_index) for f in frames[1:-1]] == [(i - 1, i + 1) for i in range(1, 11)]
    assert frames[0].neighbour_flag and (frames[0].prev_index, frames[0].next_index) == (1, 1)
    assert not any(f.is_duplicate for f in frames)


def test_duplicated_frame_is_skipped_as_neighbour(store, tmp_path):
    images = moving_frames(8)
    images.insert(4, images[3].copy())  # a repeated frame (e.g. telecine)
    write_folder(tmp_path / "dup", images)
    frames = film_frames(store, import_film(store, tmp_path / "dup"))
    assert [f.index for f in frames if f.is_duplicate] == [4]
    assert (frames[3].prev_index, frames[3].next_index) == (2, 5)
    assert (frames[4].prev_index, frames[4].next_index) == (2, 5)


def test_video_import(store, tmp_path):
    images = moving_frames(6, shape=(48, 64), channels=3)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 24, (64, 48))
    for img in images:
        writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    writer.release()
    film = import_film(store, path)
    assert film.name == "clip" and film.frame_count == 6 and (film.width, film.height, film.channels) == (64, 48, 3)
    frames = film_frames(store, film)
    assert [f.number for f in frames] == [1, 2, 3, 4, 5, 6]
    decoded = list(video.iter_video_frames(path))
    for k, frame in enumerate(frames):  # stored exactly as decoded, in order (MJPG is lossy, so not == images)
        stored = frame_image(store, frame)
        assert np.array_equal(stored, decoded[k])
        assert int(np.argmin([np.abs(stored.astype(float) - img).mean() for img in images])) == k


def test_reimport_returns_the_existing_film(store, tmp_path):
    write_folder(tmp_path / "a", moving_frames(4))
    first = import_film(store, tmp_path / "a")
    files = sorted(p for p in (store.data_dir / "films").rglob("*") if p.is_file())
    again = import_film(store, tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    copy = import_film(store, tmp_path / "copy", name="other")  # same content elsewhere: same film
    assert again.id == copy.id == first.id and again.already_imported and copy.already_imported
    assert not first.already_imported
    assert sorted(p for p in (store.data_dir / "films").rglob("*") if p.is_file()) == files
    # Different content under the same default name gets a new film with a free name.
    write_folder(tmp_path / "b" / "a", moving_frames(4, seed=9))
    other = import_film(store, tmp_path / "b" / "a")
    assert other.id != first.id and other.name == "a-2"
    with pytest.raises(FilmImportError, match="already exists"):
        write_folder(tmp_path / "c", moving_frames(4, seed=5))
        import_film(store, tmp_path / "c", name="a")
    assert [f.name for f in list_films(store)] == ["a", "a-2"]
    assert get_film(store, "a-2").id == get_film(store, str(other.id)).id == other.id


def _bad_zero_byte(folder: Path) -> Path:
    bad = folder / "frame_3.png"
    bad.write_bytes(b"")
    return bad


def _bad_truncated(folder: Path) -> Path:
    bad = folder / "frame_3.png"
    bad.write_bytes(bad.read_bytes()[:200])
    return bad


def _bad_size(folder: Path) -> Path:
    bad = folder / "frame_4.png"
    cv2.imwrite(str(bad), np.zeros((40, 60), np.uint8))
    return bad


def _bad_depth(folder: Path) -> Path:
    bad = folder / "frame_2.png"
    cv2.imwrite(str(bad), np.zeros((40, 56), np.uint16))
    return bad


@pytest.mark.parametrize("damage,message", [
    (_bad_zero_byte, "empty"), (_bad_truncated, "frame_3.png"), (_bad_size, "share size"), (_bad_depth, "16-bit"),
])
def test_bad_frame_leaves_the_store_unchanged(store, tmp_path, damage, message):
    write_folder(tmp_path / "src", moving_frames(5))
    bad = damage(tmp_path / "src")
    with pytest.raises(FilmImportError, match=message) as info:
        import_film(store, tmp_path / "src")
    assert bad.name in str(info.value)
    assert_store_empty(store)


def test_empty_folder_and_missing_path(store, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no frames here")
    with pytest.raises(FilmImportError, match="no frames"):
        import_film(store, tmp_path / "empty")
    with pytest.raises(FilmImportError, match="no such file"):
        import_film(store, tmp_path / "absent")
    (tmp_path / "broken.mp4").write_bytes(b"")
    with pytest.raises(FilmImportError, match="broken.mp4"):
        import_film(store, tmp_path / "broken.mp4")
    (tmp_path / "junk.mov").write_bytes(b"\x00not a movie" * 100)
    with pytest.raises(FilmImportError, match="junk.mov"):
        import_film(store, tmp_path / "junk.mov")
    (tmp_path / "clip.txt").write_text("x")
    with pytest.raises(FilmImportError, match="not a video"):
        import_film(store, tmp_path / "clip.txt")
    assert_store_empty(store)


def test_oversized_frame_is_refused_from_its_header(store, tmp_path, monkeypatch):
    write_folder(tmp_path / "big", moving_frames(3))
    monkeypatch.setattr(framelib, "read_image", lambda path: pytest.fail("decoded an oversized frame"))
    with pytest.raises(FilmImportError, match="56x40, above the import limit") as info:
        import_film(store, tmp_path / "big", cfg=ImportConfig(max_pixels=1000))
    assert "frame_1.png" in str(info.value)
    assert_store_empty(store)


def test_failure_while_committing_removes_the_copied_frames(store, tmp_path):
    write_folder(tmp_path / "one", moving_frames(3))
    write_folder(tmp_path / "two", moving_frames(3, seed=4))

    def name_taken_meanwhile(done: int, total: int) -> None:  # a race on the name, before the first commit
        if done == 1:
            import_film(store, tmp_path / "one", name="one", cfg=COPY)

    with pytest.raises(FilmImportError, match="meanwhile"):
        import_film(store, tmp_path / "two", name="one", cfg=COPY, job=progress(name_taken_meanwhile))
    with store.session() as s:
        assert s.execute(select(func.count()).select_from(Film)).scalar() == 1
        assert s.execute(select(func.count()).select_from(Frame)).scalar() == 3
    assert len(list((store.data_dir / "films").iterdir())) == 1


def test_killed_import_leftovers_are_swept(store, tmp_path):
    import os

    write_folder(tmp_path / "kept", moving_frames(3, seed=2))
    kept = import_film(store, tmp_path / "kept", cfg=COPY)
    owned = store.path(kept.storage_dir)
    old = store.data_dir / "films" / ".staging-dead"  # an older version's staging folder
    dead = store.data_dir / "films" / "0123abcd"  # an import killed before its first commit: no Film row
    young = store.data_dir / "films" / ".staging-running"
    for folder in (old, dead, young):
        (folder / "frames").mkdir(parents=True)
    for folder in (old, dead, owned):
        os.utime(folder, (0, 0))
    write_folder(tmp_path / "src", moving_frames(3))
    import_film(store, tmp_path / "src")
    assert not old.exists() and not dead.exists() and young.exists()
    assert all(frame_image(store, f) is not None for f in film_frames(store, kept))  # a film's own folder stays


@pytest.mark.parametrize("in_place", [True, False])
def test_same_source_imported_meanwhile_returns_that_film(store, tmp_path, monkeypatch, in_place):
    write_folder(tmp_path / "one", moving_frames(3))
    cfg = ImportConfig(in_place=in_place)
    first = import_film(store, tmp_path / "one", cfg=cfg)
    # As if it landed after our check (in place: the check before reading, by folder).
    monkeypatch.setattr(films_mod, "_existing", lambda store, sha: None)
    monkeypatch.setattr(resumable_mod, "same_folder_imported", lambda store, path, files: None)
    again = import_film(store, tmp_path / "one", cfg=cfg)
    assert again.id == first.id and again.already_imported
    assert len(list((store.data_dir / "films").iterdir())) == 1 and len(list_films(store, importing=True)) == 1


def test_real_footage_import(store, real_film_dir):
    folder = real_film_dir / "the_great_train_robbery"
    film = import_film(store, folder)
    assert (film.frame_count, film.width, film.height, film.bit_depth) == (48, 480, 368, 8)
    frames = film_frames(store, film)
    assert [f.number for f in frames] == list(range(1, 49))
    assert [f.source_name for f in frames] == [f"{n:05d}.png" for n in range(1, 49)]
    for k in (0, 17, 47):
        assert np.array_equal(frame_image(store, frames[k]), framelib.read_image(folder / frames[k].source_name))
    assert not any(f.is_duplicate for f in frames) and {f.shot for f in frames} == {0}
    assert [(f.prev_index, f.next_index) for f in frames[1:-1]] == [(i - 1, i + 1) for i in range(1, 47)]
    assert [f.index for f in frames if f.neighbour_flag] == [0, 47]
