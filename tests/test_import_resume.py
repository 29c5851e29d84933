"""Copying imports (videos, `--copy` folders) committed in batches and resumed (issue 16): a run stopped
after batch k, and one stopped inside a batch (PNGs on disk without rows), resume to exactly the rows
and stored PNGs of a clean import; the CLI resumes with the same command; a changed video blocks the
resume; `correlnet db check` calls the leftovers an interrupted import, not damage."""

from __future__ import annotations

import dataclasses
import functools
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

import studio.films as films_mod
import studio.resumable_import as resumable_mod
from correlnet.video import iter_video_frames
from db.testing import temporary_store
from studio.cli import main
from studio.films import FilmImportError, FilmNotFound, ImportConfig, film_frames, frame_image, get_film, import_film
from studio.store_check import check_store
from tests.test_import import moving_frames, progress, write_folder
from tests.test_import_in_place import FRAME_COLUMNS, Interrupted, film_rows, interrupt_after_batch
from tests.test_import_in_place import two_shots_with_a_duplicate
from tests.test_import_integrity import write_avi

BATCH = ImportConfig(in_place=False, batch_frames=5)


@pytest.fixture
def store(tmp_path):
    with temporary_store(tmp_path / "data") as s:
        yield s


def write_ffv1(path: Path, images: list[np.ndarray]) -> Path:
    """A lossless FFV1 video of gray frames: 8-bit (OpenCV decodes it) or 16-bit (PyAV's deep path)."""
    fmt = "gray16le" if images[0].dtype == np.uint16 else "gray"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = images[0].shape[1], images[0].shape[0], fmt
        for image in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format=fmt)))
        container.mux(stream.encode())
    return path


def shots(dtype=np.uint8) -> list[np.ndarray]:
    """23 frames: two shots, frame 5 a duplicate (the neighbours are not trivial)."""
    images = two_shots_with_a_duplicate()
    return [img.astype(np.uint16) * 257 for img in images] if dtype == np.uint16 else images


def stored_pngs(store, film) -> list[tuple[str, np.ndarray]]:
    return [(f.path, frame_image(store, f)) for f in film_frames(store, film)]


def clean_import(tmp_path, source: Path, cfg: ImportConfig):
    with temporary_store(tmp_path / "clean") as clean:
        film = import_film(clean, source, cfg=cfg)
        head, rows = film_rows(clean, film)
        return head, rows, [image for _, image in stored_pngs(clean, film)]


def without_paths(rows: list[tuple]) -> list[tuple]:
    """Frame rows without `path` (it holds the film folder's random key)."""
    k = FRAME_COLUMNS.index("path")
    return [row[:k] + row[k + 1:] for row in rows]


def interrupt_twice_then_resume(store, source: Path, cfg: ImportConfig):
    """Stop after batch 2 (10 frames committed), then inside batch 3 at frame 13 (PNGs 11-13 written, not
    committed), then resume; returns the film and the progress the resume reported."""
    with pytest.MonkeyPatch.context() as patch:
        interrupt_after_batch(patch, 2)
        with pytest.raises(Interrupted):
            import_film(store, source, cfg=cfg)
    film = get_film(store, source.stem if source.is_file() else source.name, importing=True)
    assert film.status == "importing" and len(film_frames(store, film)) == 10
    with pytest.raises(FilmNotFound, match="still being imported"):
        get_film(store, film.name)

    def stop_at_13(done: int, total: int) -> None:
        if done == 13:
            raise Interrupted("stopped at frame 13")

    with pytest.raises(Interrupted):
        import_film(store, source, cfg=cfg, job=progress(stop_at_13))
    folder = store.path(film.storage_dir) / resumable_mod.FRAMES_DIR
    assert len(film_frames(store, film)) == 10 and (folder / "000012.png").is_file()  # on disk, no row
    report = check_store(store, checksums=True, min_age_s=0)
    assert (report.junk, report.missing, report.damaged) == ([], [], []) and len(report.interrupted) == 1, report
    assert "after 10 of" in report.interrupted[0] and str(source) in report.interrupted[0]
    seen: list[int] = []
    resumed = import_film(store, source, cfg=cfg, job=progress(lambda d, t: seen.append(d)))
    assert resumed.id == film.id and not resumed.already_imported
    return resumed, seen


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_an_interrupted_video_import_resumes_to_a_clean_import(store, tmp_path, dtype):
    video = write_ffv1(tmp_path / "clip.mkv", shots(dtype))
    head, rows, images = clean_import(tmp_path, video, BATCH)
    assert [t for t, row in enumerate(rows) if row[FRAME_COLUMNS.index("is_duplicate")]] == [5]
    assert len({row[FRAME_COLUMNS.index("shot")] for row in rows}) == 2
    decoded = list(iter_video_frames(video))
    assert all(np.array_equal(a, b) for a, b in zip(images, decoded)) and len(images) == 23

    resumed, seen = interrupt_twice_then_resume(store, video, BATCH)
    assert seen[0] == 11 and seen[-1] == 23  # frames 1-10 skipped, 11-13 decoded and stored again
    resumed_head, resumed_rows = film_rows(store, resumed)
    assert resumed_head == head and without_paths(resumed_rows) == without_paths(rows)  # sha256 of each PNG too
    pngs = stored_pngs(store, resumed)
    assert all(np.array_equal(image, ref) for (_, image), ref in zip(pngs, images))
    folder = store.path(resumed.storage_dir)
    assert sorted(p.relative_to(store.data_dir).as_posix() for p in folder.rglob("*") if p.is_file()) == \
        sorted(path for path, _ in pngs)  # no thumbnail, no lock, no orphan left
    assert check_store(store, checksums=True, min_age_s=0).clean


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_an_interrupted_copy_of_a_folder_resumes_to_a_clean_import(tmp_path, request, backend):
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    write_folder(tmp_path / "reel", shots(np.uint16), "reel.{:05d}.png", start=1001)
    head, rows, images = clean_import(tmp_path, tmp_path / "reel", BATCH)
    with temporary_store(tmp_path / "data", url) as store:
        resumed, seen = interrupt_twice_then_resume(store, tmp_path / "reel", BATCH)
        resumed_head, resumed_rows = film_rows(store, resumed)
        assert resumed_head == head and without_paths(resumed_rows) == without_paths(rows)
        assert [f.number for f in film_frames(store, resumed)] == list(range(1001, 1024))
        pngs = stored_pngs(store, resumed)
        assert all(np.array_equal(image, ref) for (_, image), ref in zip(pngs, images))
        assert all(np.array_equal(image, ref) for (_, image), ref in zip(pngs, shots(np.uint16)))


def test_the_cli_resumes_a_video_with_the_same_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CORRELNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CORRELNET_DB_URL", raising=False)
    monkeypatch.setattr(films_mod, "ImportConfig", functools.partial(ImportConfig, batch_frames=4))
    video = write_ffv1(tmp_path / "scan.mkv", moving_frames(12))
    command = ["film", "import", str(video), "--name", "scan"]
    with monkeypatch.context() as patch:
        interrupt_after_batch(patch, 2)
        with pytest.raises(Interrupted):
            main(command)
    capsys.readouterr()
    assert main(["db", "check", "--min-age", "0"]) == 1
    out = capsys.readouterr().out
    assert "stopped after 8 of 12 frames" in out and f"correlnet film import {video}` again" in out
    assert main(command) == 0
    assert "imported film 1 'scan': 12 frames" in capsys.readouterr().out
    assert main(command) == 0 and "already imported" in capsys.readouterr().out


def test_a_changed_video_blocks_the_resume_and_restart_starts_over(store, tmp_path):
    video = write_ffv1(tmp_path / "clip.mkv", moving_frames(12))
    cfg = ImportConfig(batch_frames=4)
    with pytest.MonkeyPatch.context() as patch:
        interrupt_after_batch(patch, 1)
        with pytest.raises(Interrupted):
            import_film(store, video, cfg=cfg)
    write_ffv1(video, moving_frames(12, seed=5))  # another file at the same path
    with pytest.raises(FilmImportError, match="changed since its interrupted import") as info:
        import_film(store, video, cfg=cfg)
    assert str(video) in str(info.value) and "not the same file" in str(info.value) and "--restart" in str(info.value)
    assert len(film_frames(store, get_film(store, "clip", importing=True))) == 4  # kept, not overwritten
    film = import_film(store, video, cfg=ImportConfig(batch_frames=4, resume=False))
    assert film.name == "clip" and film.frame_count == 12
    for frame, image in zip(film_frames(store, film), moving_frames(12, seed=5)):
        assert np.array_equal(frame_image(store, frame)[..., 0], image)
    assert len(list((store.data_dir / "films").iterdir())) == 1  # the interrupted film's folder is gone


def test_the_same_video_elsewhere_resumes_the_interrupted_import(store, tmp_path):
    """A web upload lands in a new folder each time: a second upload of the same bytes resumes."""
    (tmp_path / "upload-1").mkdir()
    first = write_ffv1(tmp_path / "upload-1" / "clip.mkv", moving_frames(9))
    cfg = ImportConfig(batch_frames=4)
    with pytest.MonkeyPatch.context() as patch:
        interrupt_after_batch(patch, 1)
        with pytest.raises(Interrupted):
            import_film(store, first, cfg=cfg)
    killed = get_film(store, "clip", importing=True)
    second = tmp_path / "upload-2" / "clip.mkv"
    second.parent.mkdir()
    shutil.move(first, second)
    film = import_film(store, second, cfg=cfg)
    assert film.id == killed.id and film.frame_count == 9 and film.source_path == str(second.resolve())


def test_a_truncated_video_keeps_its_batches_and_names_the_frame(store, tmp_path):
    full = write_avi(tmp_path / "full.avi")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full[: int(len(full) * 0.6)])  # the header still says 12 frames
    with pytest.raises(FilmImportError) as info:
        import_film(store, cut, cfg=ImportConfig(batch_frames=2))
    message = str(info.value)
    assert "cut.avi" in message and "decoding failed at frame" in message and "of the 12" in message
    assert info.value.kept_frames >= 2 and get_film(store, "cut", importing=True).status == "importing"
    with pytest.raises(FilmNotFound):
        get_film(store, "cut")  # never a shorter film that looks complete


@pytest.mark.parametrize("restart", [False, True])
@pytest.mark.parametrize("copying", [False, True])
def test_an_import_that_finishes_between_the_listing_and_the_lock_is_kept(store, tmp_path, restart, copying):
    """Import A resumes and finishes (ready, lock released) after import B listed the film as interrupted
    and before B takes its lock: B returns A's film, with --restart too, and deletes nothing."""
    images = moving_frames(6)
    write_folder(tmp_path / "src", images, "f_{}.png")
    cfg = ImportConfig(in_place=not copying, batch_frames=2)
    with pytest.MonkeyPatch.context() as patch:
        interrupt_after_batch(patch, 1)
        with pytest.raises(Interrupted):
            import_film(store, tmp_path / "src", cfg=cfg)
    listing, finished = resumable_mod.interrupted_films, []

    def stale_listing(*args, **kwargs):
        films = listing(*args, **kwargs)
        assert [f.status for f in films] == ["importing"]
        patch.setattr(resumable_mod, "interrupted_films", listing)
        finished.append(import_film(store, tmp_path / "src", cfg=cfg))  # A, between B's listing and B's lock
        return films

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(resumable_mod, "interrupted_films", stale_listing)
        b = import_film(store, tmp_path / "src", cfg=dataclasses.replace(cfg, resume=not restart))
    a = finished[0]
    assert not a.already_imported and (b.id, b.already_imported) == (a.id, True)
    film = get_film(store, "src")
    assert film.id == a.id and [f.name for f in films_mod.list_films(store, importing=True)] == ["src"]
    frames = film_frames(store, film)
    assert len(frames) == 6 and all(np.array_equal(frame_image(store, f), img) for f, img in zip(frames, images))
    assert check_store(store, checksums=True, min_age_s=0).clean  # its files kept, no lock left behind
    assert not resumable_mod.delete_interrupted(store, film)  # a ready film is never deleted as interrupted
    assert len(film_frames(store, film)) == 6 and check_store(store, checksums=True, min_age_s=0).clean
