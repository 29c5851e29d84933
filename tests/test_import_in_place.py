"""Frame folders imported in place (issue 16): nothing copied, every read verified against the row's size
and sha256, a changed or moved frame named in the error, relinking, and an interrupted import that
resumes to exactly the rows of an uninterrupted one."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import studio.resumable_import as resumable_mod
from correlnet import frames as framelib
from db.files import sha256_file
from db.models import Film, Frame
from db.testing import temporary_store
from studio import staging
from studio.cli import main
from studio.films import FilmImportError, FilmNotFound, ImportConfig, film_frames, frame_image, get_film, import_film
from studio.films import list_films
from studio.frame_sources import RelinkError, SourceFrameError, relink_film
from tests.test_import import moving_frames, progress, write_folder
from tests.test_neighbours import MARKET_DUPLICATE_PAIRS

FRAME_COLUMNS = [c.name for c in Frame.__table__.columns if c.name not in ("id", "film_id")]
FILM_COLUMNS = ["name", "source_path", "source_sha", "width", "height", "bit_depth", "channels", "frame_count",
                "status"]


class Interrupted(Exception):
    """Stands in for a kill: raised from inside the import."""


@pytest.fixture
def store(tmp_path):
    with temporary_store(tmp_path / "data") as s:
        yield s


def store_files(store) -> list[Path]:
    """Every file under the store's data folder except the database."""
    return sorted(p for p in store.data_dir.rglob("*") if p.is_file() and not p.name.startswith("studio.db"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def film_rows(store, film) -> tuple[tuple, list[tuple]]:
    with store.session() as s:
        row = s.get(Film, film.id)
        head = tuple(getattr(row, c) for c in FILM_COLUMNS)
    return head, [tuple(getattr(f, c) for c in FRAME_COLUMNS) for f in film_frames(store, film)]


def two_shots_with_a_duplicate() -> list[np.ndarray]:
    """23 frames: a shot of 12 with frame 5 repeated, then a cut to a shot of 10 (inverted, other grain)."""
    first = moving_frames(12)
    first.insert(5, first[4].copy())
    return first + [255 - f for f in moving_frames(10, seed=3)]


@pytest.mark.parametrize("dtype,pattern", [(np.uint8, "reel_{:04d}.png"), (np.uint16, "scan.{:07d}.tif")])
def test_sequences_are_referenced_not_copied(store, tmp_path, dtype, pattern):
    paths = write_folder(tmp_path / "src", moving_frames(5, dtype=dtype, channels=3), pattern, start=1001)
    before = snapshot(tmp_path / "src")
    film = import_film(store, tmp_path / "src")
    assert (film.status, film.bit_depth, film.source_path) == ("ready", np.dtype(dtype).itemsize * 8,
                                                               str((tmp_path / "src").resolve()))
    assert store_files(store) == []  # no frame, no thumbnail, no lock left under data_dir
    frames = film_frames(store, film)
    assert [f.number for f in frames] == list(range(1001, 1006))
    for frame, path in zip(frames, paths):
        assert (frame.path, frame.source_path) == ("", str(path.resolve())) and frame.in_place
        assert (frame.source_size, frame.sha256) == (path.stat().st_size, sha256_file(path))
        image = frame_image(store, frame)
        assert image.dtype == dtype and np.array_equal(image, framelib.read_image(path))
    assert snapshot(tmp_path / "src") == before


def test_a_changed_frame_is_never_served(store, tmp_path):
    paths = write_folder(tmp_path / "src", moving_frames(4), "f_{}.png")
    film = import_film(store, tmp_path / "src", name="reel 1")
    frames = film_frames(store, film)
    data = bytearray(paths[2].read_bytes())
    data[-30] ^= 0x01  # one byte, size kept: only the checksum sees it
    paths[2].write_bytes(bytes(data))
    with pytest.raises(SourceFrameError) as info:
        frame_image(store, frames[2])
    message = str(info.value)
    assert "film 'reel 1', frame 3" in message and str(paths[2].resolve()) in message
    assert "checksum" in message and "restore the original file" in message
    paths[3].write_bytes(paths[3].read_bytes() + b"\0")  # grew
    with pytest.raises(SourceFrameError, match=r"frame 4: .* is changed: \d+ bytes, \d+ when imported"):
        frame_image(store, frames[3])
    assert np.array_equal(frame_image(store, frames[1]), moving_frames(4)[1])  # the others still read


def test_a_moved_folder_names_the_frame_and_relink_fixes_it(store, tmp_path, monkeypatch, capsys):
    write_folder(tmp_path / "src", moving_frames(4), "f_{}.png")
    film = import_film(store, tmp_path / "src", name="reel")
    shutil.move(tmp_path / "src", tmp_path / "moved")
    frames = film_frames(store, film)
    with pytest.raises(SourceFrameError) as info:
        frame_image(store, frames[0])
    assert f"film 'reel', frame 1: source file {(tmp_path / 'src' / 'f_1.png').resolve()} is missing" in str(info.value)
    assert "correlnet film relink reel NEW_FOLDER" in str(info.value)
    # A folder that does not hold the same frames changes nothing.
    shutil.copytree(tmp_path / "moved", tmp_path / "wrong")
    cv2.imwrite(str(tmp_path / "wrong" / "f_3.png"), moving_frames(1, seed=9)[0])
    with pytest.raises(RelinkError, match="frame 3") as info:
        relink_film(store, film, tmp_path / "wrong")
    assert "nothing was changed" in str(info.value)
    assert [f.source_path for f in film_frames(store, film)] == [f.source_path for f in frames]
    monkeypatch.setenv("CORRELNET_DATA_DIR", str(store.data_dir))
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    assert main(["film", "relink", "reel", str(tmp_path / "moved")]) == 0
    assert "4 frame(s) now read from" in capsys.readouterr().out
    for frame, image in zip(film_frames(store, film), moving_frames(4)):
        assert frame.source_path == str((tmp_path / "moved" / frame.source_name).resolve())
        assert np.array_equal(frame_image(store, frame), image)
    assert get_film(store, "reel").source_path == str((tmp_path / "moved").resolve())


def interrupt_after_batch(monkeypatch, k: int) -> None:
    """Make the import stop (as if killed) right after its k-th batch is committed."""
    real, calls = resumable_mod.commit_batch, []

    def commit(run):
        real(run)
        calls.append(1)
        if len(calls) == k:
            raise Interrupted(f"stopped after batch {k}")

    monkeypatch.setattr(resumable_mod, "commit_batch", commit)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_an_interrupted_import_resumes_to_the_rows_of_a_clean_one(tmp_path, monkeypatch, request, backend):
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    write_folder(tmp_path / "src", two_shots_with_a_duplicate(), "f_{:03d}.png")
    cfg = ImportConfig(batch_frames=5)
    with temporary_store(tmp_path / "clean") as clean:
        reference = film_rows(clean, import_film(clean, tmp_path / "src", cfg=cfg))
    frames = reference[1]
    assert [t for t, row in enumerate(frames) if row[FRAME_COLUMNS.index("is_duplicate")]] == [5]
    assert len({row[FRAME_COLUMNS.index("shot")] for row in frames}) == 2  # the neighbours are not trivial

    with temporary_store(tmp_path / "data", url) as store:
        interrupt_after_batch(monkeypatch, 2)
        with pytest.raises(Interrupted):
            import_film(store, tmp_path / "src", cfg=cfg)
        film = get_film(store, "src", importing=True)
        assert film.status == "importing" and len(film_frames(store, film)) == 10
        assert list_films(store) == [] and [f.name for f in list_films(store, importing=True)] == ["src"]
        with pytest.raises(FilmNotFound, match="still being imported"):
            get_film(store, "src")
        monkeypatch.undo()

        def stop_mid_batch(done: int, total: int) -> None:  # the second run stops inside batch 3 of 5
            if done == 13:
                raise Interrupted("stopped at frame 13")

        seen = []
        with pytest.raises(Interrupted):
            import_film(store, tmp_path / "src", cfg=cfg, job=progress(stop_mid_batch))
        assert len(film_frames(store, film)) == 10  # frames 11-13 were not committed: read again below
        (store.path(film.storage_dir) / resumable_mod.THUMBS_DIR / "thumbs-00000005.npy").unlink()  # recomputed
        resumed = import_film(store, tmp_path / "src", cfg=cfg, job=progress(lambda d, t: seen.append(d)))
        assert resumed.id == film.id and not resumed.already_imported and seen[0] == 11 and seen[-1] == 23
        assert film_rows(store, resumed) == reference
        assert store_files(store) == []  # thumbnails and lock removed once ready


def test_resuming_refuses_a_changed_folder_and_restart_discards(store, tmp_path, monkeypatch):
    paths = write_folder(tmp_path / "src", moving_frames(6), "f_{}.png")
    interrupt_after_batch(monkeypatch, 1)
    with pytest.raises(Interrupted):
        import_film(store, tmp_path / "src", cfg=ImportConfig(batch_frames=2))
    monkeypatch.undo()
    cv2.imwrite(str(paths[0]), np.zeros((40, 57), np.uint8))  # a committed frame replaced
    with pytest.raises(FilmImportError, match="changed since its interrupted import.*frame 1.*--restart"):
        import_film(store, tmp_path / "src", cfg=ImportConfig(batch_frames=2))
    cv2.imwrite(str(paths[0]), moving_frames(6)[0])
    before = snapshot(tmp_path / "src")
    film = import_film(store, tmp_path / "src", cfg=ImportConfig(batch_frames=2, resume=False))
    assert film.status == "ready" and [f.name for f in list_films(store, importing=True)] == ["src"]
    assert snapshot(tmp_path / "src") == before  # discarding the interrupted film left the sources alone
    assert len(list((store.data_dir / "films").iterdir())) == 1


def test_a_running_import_is_not_resumed_by_a_second_process(store, tmp_path, monkeypatch):
    write_folder(tmp_path / "src", moving_frames(4), "f_{}.png")
    interrupt_after_batch(monkeypatch, 1)
    with pytest.raises(Interrupted):
        import_film(store, tmp_path / "src", cfg=ImportConfig(batch_frames=2))
    monkeypatch.undo()
    film = get_film(store, "src", importing=True)
    live = staging.LiveLock(store.path(film.storage_dir))  # as if its process were still running
    try:
        with pytest.raises(FilmImportError, match="being imported right now by another process"):
            import_film(store, tmp_path / "src")
    finally:
        live.close()
    assert import_film(store, tmp_path / "src").status == "ready"


def test_reimport_and_restart_never_touch_the_sources(store, tmp_path):
    write_folder(tmp_path / "src", moving_frames(4), "f_{}.png")
    before = snapshot(tmp_path / "src")
    first = import_film(store, tmp_path / "src")
    again = import_film(store, tmp_path / "src")
    assert again.id == first.id and again.already_imported
    assert snapshot(tmp_path / "src") == before and store_files(store) == []


def test_a_folder_inside_the_store_is_copied(store, tmp_path):
    """Uploads land in data_dir/uploads and are deleted after the import: they cannot be referenced."""
    folder = store.data_dir / "uploads" / "upload-1" / "frames"
    write_folder(folder, moving_frames(3), "f_{}.png")
    film = import_film(store, folder)
    shutil.rmtree(store.data_dir / "uploads")
    assert all(not f.in_place and np.array_equal(frame_image(store, f), img)
               for f, img in zip(film_frames(store, film), moving_frames(3)))


def test_real_1906_duplicates_survive_an_interrupted_in_place_import(tmp_path, monkeypatch, real_film_dir):
    folder = real_film_dir / "a_trip_down_market_street_before_the_fire"
    with temporary_store(tmp_path / "data") as store:
        interrupt_after_batch(monkeypatch, 3)
        with pytest.raises(Interrupted):
            import_film(store, folder, cfg=ImportConfig(batch_frames=7))
        monkeypatch.undo()
        film = import_film(store, folder, cfg=ImportConfig(batch_frames=7))
        frames = film_frames(store, film)
        pairs = [(frames[f.index - 1].number, f.number) for f in frames if f.is_duplicate]
        assert pairs == MARKET_DUPLICATE_PAIRS  # the six pairs found by hand (tests/test_neighbours.py)
        copied = import_film(store, folder, name="copied", cfg=ImportConfig(in_place=False))
        assert copied.id == film.id and copied.already_imported  # same frames: the same film
    with temporary_store(tmp_path / "copy") as store:
        copy_frames = film_frames(store, import_film(store, folder, cfg=ImportConfig(in_place=False)))
    keys = ("number", "prev_index", "next_index", "neighbour_flag", "is_duplicate", "shot")
    assert [[getattr(f, k) for k in keys] for f in frames] == [[getattr(f, k) for k in keys] for f in copy_frames]


def _downgrade(store, revision: str) -> None:
    from alembic import command

    from db.store import alembic_config

    cfg = alembic_config()
    with store.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)


def test_migration_0003_downgrade_refuses_references_until_copied_into_the_store(store, tmp_path):
    from sqlalchemy import inspect

    from db.store import current_revision, head_revision, upgrade_to_head

    write_folder(tmp_path / "copied", moving_frames(3), "f_{}.png")
    copied = import_film(store, tmp_path / "copied", cfg=ImportConfig(in_place=False))
    write_folder(tmp_path / "src", moving_frames(3, seed=4), "f_{}.png")
    in_place = import_film(store, tmp_path / "src")
    with pytest.raises(RuntimeError, match="3 frame\\(s\\) are referenced in place") as info:
        _downgrade(store, "0002")
    assert "correlnet film import FOLDER --copy" in str(info.value) and "delete" not in str(info.value)
    assert current_revision(store.engine) == head_revision()  # rolled back whole
    before = snapshot(tmp_path / "src")
    assert import_film(store, tmp_path / "src", cfg=ImportConfig(in_place=False)).id == in_place.id  # what it says
    assert snapshot(tmp_path / "src") == before
    _downgrade(store, "0002")
    assert not {"source_path", "source_size"} & {c["name"] for c in inspect(store.engine).get_columns("frames")}
    upgrade_to_head(store.engine)
    for film, seed in ((copied, 0), (in_place, 4)):
        assert [np.array_equal(frame_image(store, f), img)
                for f, img in zip(film_frames(store, film), moving_frames(3, seed=seed))] == [True] * 3


def test_cli_keeps_committed_batches_of_a_bad_folder_and_resumes(tmp_path, monkeypatch, capsys):
    """A bad frame after the first batch: the error names it and says the batches are kept; once the frame
    is fixed, the same command resumes."""
    import functools

    import studio.films as films_mod

    monkeypatch.setenv("CORRELNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    monkeypatch.setattr(films_mod, "ImportConfig", functools.partial(ImportConfig, batch_frames=2))
    paths = write_folder(tmp_path / "src", moving_frames(5), "f_{}.png")
    good = paths[3].read_bytes()
    cv2.imwrite(str(paths[3]), np.zeros((40, 60), np.uint8))
    assert main(["film", "import", str(tmp_path / "src")]) == 2
    err = capsys.readouterr().err
    assert "f_4.png" in err and "share size" in err and "the first 2 frames are kept" in err
    paths[3].write_bytes(good)
    assert main(["film", "import", str(tmp_path / "src")]) == 0
    out = capsys.readouterr().out
    assert "5 frames" in out and "frames referenced in place" in out
    assert main(["film", "import", str(tmp_path / "src"), "--copy", "--name", "copied"]) == 0
    assert "film 1 'src': 5 frame(s) copied into the store" in capsys.readouterr().out  # the same film, not a second
