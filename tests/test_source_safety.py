"""A user's in-place source frames are never removed by the store's clean-up and never served changed
(issue 16 review): relinking into the data folder is refused, `correlnet db check --repair` spares a
folder that holds referenced frames, and a file replaced between its checksum and its decoding is refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from sqlalchemy import update

from correlnet import frames as framelib
from db.models import Frame
from db.testing import temporary_store
from studio.films import film_frames, frame_image, import_film
from studio.frame_sources import RelinkError, SourceFrameError, relink_film
from studio.store_check import check_store, repair_store
from tests.test_import import moving_frames, write_folder


@pytest.fixture
def store(tmp_path):
    with temporary_store(tmp_path / "data") as s:
        yield s


def test_relinking_into_the_data_folder_is_refused_and_changes_nothing(store, tmp_path):
    write_folder(tmp_path / "src", moving_frames(3), "f_{}.png")
    film = import_film(store, tmp_path / "src", name="reel")
    before = [f.source_path for f in film_frames(store, film)]
    inside = store.data_dir / "films" / "reel1"
    shutil.copytree(tmp_path / "src", inside)
    with pytest.raises(RelinkError, match="inside the store's data folder") as info:
        relink_film(store, film, inside)
    assert "nothing was changed" in str(info.value)
    assert [f.source_path for f in film_frames(store, film)] == before


@pytest.mark.parametrize("where", ["films/reel1", "models/reel1", "uploads/upload-1"])
def test_repair_never_removes_a_folder_that_holds_referenced_frames(store, tmp_path, where):
    """Rows pointing into the data folder (a relink by an older version, or by hand) keep their files."""
    write_folder(tmp_path / "src", moving_frames(3), "f_{}.png")
    film = import_film(store, tmp_path / "src", name="reel")
    inside = store.data_dir / where
    shutil.copytree(tmp_path / "src", inside)
    with store.write() as s:
        for frame in film_frames(store, film):
            s.execute(update(Frame).where(Frame.id == frame.id)
                      .values(source_path=str((inside / frame.source_name).resolve())))
    junk_file = store.data_dir / "films" / "stray.tmp"  # a real piece of junk, to show repair still runs
    junk_file.write_bytes(b"x")
    report = check_store(store, min_age_s=0, upload_min_age_s=0)
    assert not any(p.resolve() == inside.resolve() or inside.resolve().is_relative_to(p.resolve())
                   for p in report.junk), report.junk
    assert junk_file in report.junk
    repair_store(store, report)
    assert not junk_file.exists()
    for frame, image in zip(film_frames(store, film), moving_frames(3)):
        assert np.array_equal(frame_image(store, frame), image)  # still there, still verified


def test_a_file_replaced_while_it_is_read_is_refused(store, tmp_path, monkeypatch):
    paths = write_folder(tmp_path / "src", moving_frames(3), "f_{}.png")
    film = import_film(store, tmp_path / "src", name="reel")
    frame = film_frames(store, film)[1]
    other = tmp_path / "other.png"
    write_folder(tmp_path / "o", moving_frames(1, seed=9), "g_{}.png")[0].rename(other)
    real = framelib.read_image

    def swapped(path):  # the checksum has passed; the file is replaced before the decoder opens it
        other.replace(path)
        return real(path)

    monkeypatch.setattr(framelib, "read_image", swapped)
    with pytest.raises(SourceFrameError, match="frame 2: .* changed while it was being read"):
        frame_image(store, frame)
    monkeypatch.setattr(framelib, "read_image", real)
    with pytest.raises(SourceFrameError, match="changed"):  # and every later read refuses it too
        frame_image(store, frame)
    assert paths[1].exists()


def test_relink_refuses_while_a_copy_took_frames_into_the_store(store, tmp_path, monkeypatch):
    """A relink racing `film import --copy` must not point a just-copied frame back at a source."""
    import studio.frame_sources as sources

    write_folder(tmp_path / "src", moving_frames(3), "f_{}.png")
    film = import_film(store, tmp_path / "src", name="reel")
    shutil.copytree(tmp_path / "src", tmp_path / "moved")
    first = film_frames(store, film)[0]
    real = sources.source_problem

    def copy_meanwhile(ref, checksum=True):  # the copy commits frame 1 while relink checks the files
        with store.write() as s:
            s.execute(update(Frame).where(Frame.id == first.id).values(source_path=None, source_size=None))
        return real(ref, checksum)

    monkeypatch.setattr(sources, "source_problem", copy_meanwhile)
    with pytest.raises(RelinkError, match="being copied into the store"):
        relink_film(store, film, tmp_path / "moved")
    frames = film_frames(store, film)
    assert frames[0].source_path is None
    assert all(f.source_path == str((tmp_path / "src" / f.source_name).resolve()) for f in frames[1:])
