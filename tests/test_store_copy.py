"""`correlnet film import FOLDER --copy` on a folder imported in place (studio/store_copy.py): the film is
copied into the store instead of duplicated, its frame ids, predictions and corrections kept, its rows
those of a fresh copying import, its sources only read; a changed source stops the copy at that frame
(the batches before stay copied, the rest in place) and the same command goes on."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
from sqlalchemy import select, update

from db.files import atomic_write_bytes, write_png
from db.models import Correction, Film, Frame, ModelVersion, Prediction
from db.testing import temporary_store
from studio.cli import main
from studio.corrections import current_mask, save_correction
from studio.films import FilmImportError, ImportConfig, film_frames, frame_image, import_film
from studio.store_check import check_store
from tests.test_import import moving_frames, progress, write_folder
from tests.test_import_in_place import FILM_COLUMNS, FRAME_COLUMNS, film_rows, snapshot

COPY = ImportConfig(in_place=False, batch_frames=3)
MASK = np.zeros((40, 56), bool)
MASK[3:9, 5:20] = True
REVIEW_COLUMNS = ("path", "uncertainty", "last_served_at", "reviewed_at")  # set by review, or the folder key


def review_work(store, film) -> tuple[list, list]:
    """Predictions on frames 0-2 (real files), corrections on frames 1 and 5, frame 1 reviewed and
    uncertain; returns the prediction and correction rows."""
    frames = film_frames(store, film)
    with store.write() as s:
        weights = atomic_write_bytes(store.path("models/x.pt"), b"not a model: only its file is checked here")
        version = ModelVersion(path="models/x.pt", sha256=weights, arch="tiny", encoder=None, config={}, metrics={})
        s.add(version)
        s.flush()
        for frame in frames[:3]:
            relative = f"{film.storage_dir}/predictions/{frame.index:06d}.png"
            sha = write_png(store.path(relative), np.full((film.height, film.width), 40 * frame.index, np.uint8))
            s.add(Prediction(frame_id=frame.id, model_version_id=version.id, path=relative, sha256=sha,
                             defect_pixels=0, uncertainty=0.1 * frame.index))
        s.execute(update(Frame).where(Frame.id == frames[1].id).values(reviewed_at=datetime(2024, 5, 1, tzinfo=timezone.utc),
                                                                          uncertainty=0.25))
    for frame in (frames[1], frames[5]):
        save_correction(store, frame.id, MASK, author="ana")
    return reviewed(store)


def reviewed(store) -> tuple[list, list]:
    with store.session() as s:
        return (s.execute(select(Prediction.id, Prediction.frame_id, Prediction.path).order_by(Prediction.id)).all(),
                s.execute(select(Correction.id, Correction.frame_id, Correction.path).order_by(Correction.id)).all())


def without(rows: list[tuple], names=REVIEW_COLUMNS) -> list[tuple]:
    keep = [k for k, c in enumerate(FRAME_COLUMNS) if c not in names]
    return [tuple(row[k] for k in keep) for row in rows]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_copy_takes_an_in_place_film_into_the_store_keeping_its_review(tmp_path, request, backend):
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    images = moving_frames(7, dtype=np.uint16, channels=3)
    paths = write_folder(tmp_path / "src", images, "scan.{:07d}.tif", start=1001)  # TIFF in, PNG stored
    with temporary_store(tmp_path / "clean") as clean:  # what a fresh copying import stores
        clean_head, clean_rows = film_rows(clean, import_film(clean, tmp_path / "src", cfg=COPY))
    sources = snapshot(tmp_path / "src")
    with temporary_store(tmp_path / "data", url) as store:
        film = import_film(store, tmp_path / "src")
        ids = [f.id for f in film_frames(store, film)]
        work = review_work(store, film)
        good = paths[4].read_bytes()

        def edit_1005(done: int, total: int) -> None:  # after the folder's digest matched the film
            if done == 4:
                paths[4].write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])  # size kept

        with pytest.raises(FilmImportError) as info:
            import_film(store, tmp_path / "src", name="ignored", cfg=COPY, job=progress(edit_1005))
        assert "frame 1005" in str(info.value) and str(paths[4].resolve()) in str(info.value)
        assert info.value.kept_frames == 3  # batch 1 switched; frame 1004's PNG written, its row not
        assert [f.in_place for f in film_frames(store, film)] == [False] * 3 + [True] * 4
        paths[4].write_bytes(good)
        assert all(np.array_equal(frame_image(store, f), img) for f, img in zip(film_frames(store, film), images))

        seen: list[int] = []
        again = import_film(store, tmp_path / "src", name="ignored", cfg=COPY, job=progress(lambda d, t: seen.append(d)))
        assert (again.id, again.name, again.already_imported, again.copied_frames) == (film.id, "src", True, 4)
        assert seen == [4, 5, 6, 7]
        frames = film_frames(store, film)
        assert [f.id for f in frames] == ids and reviewed(store) == work
        assert all(np.array_equal(frame_image(store, f), img) for f, img in zip(frames, images))
        head, rows = film_rows(store, film)
        assert head == clean_head and without(rows) == without(clean_rows)  # sha256 of each PNG included
        assert [f.path for f in frames] == [f"{film.storage_dir}/frames/{i:06d}.png" for i in range(7)]
        assert np.array_equal(current_mask(store, frames[5].id), MASK)
        assert (frames[1].reviewed_at, frames[1].uncertainty) == (datetime(2024, 5, 1, tzinfo=timezone.utc), 0.25)
        assert snapshot(tmp_path / "src") == sources  # only read
        assert check_store(store, checksums=True, min_age_s=0).clean  # no orphan PNG, no lock left
        with store.session() as s:
            assert len(s.execute(select(Film)).all()) == 1  # no second film
        assert import_film(store, tmp_path / "src", cfg=COPY).copied_frames == 0


def test_the_cli_copies_an_in_place_film_with_import_copy(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CORRELNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    write_folder(tmp_path / "src", moving_frames(4), "f_{}.png")
    assert main(["film", "import", str(tmp_path / "src")]) == 0
    assert "frames referenced in place" in capsys.readouterr().out
    assert main(["film", "import", str(tmp_path / "src")]) == 0  # again, in place: its frames stay where they are
    out = capsys.readouterr().out
    assert "already imported as film 1 'src': nothing copied" in out and "in the store" not in out
    assert main(["film", "import", str(tmp_path / "src"), "--copy"]) == 0
    assert "film 1 'src': 4 frame(s) copied into the store" in capsys.readouterr().out
    assert main(["film", "import", str(tmp_path / "src"), "--copy"]) == 0
    assert "already imported as film 1 'src': nothing copied (its frames are in the store)" in capsys.readouterr().out
    assert main(["film", "list"]) == 0 and capsys.readouterr().out.count("src") == 1
