"""Importing a folder of frames in place: referenced where they lie, committed in batches, resumable.

Each frame is hashed (its Frame row holds the resolved path, size and sha256: studio/frame_sources.py),
decoded once for the format check and its neighbour thumbnail, and nothing is copied. Every
`ImportConfig.batch_frames` frames the batch's thumbnails are written to `films/<key>/import/` (file
first) and its rows committed (row second); the first commit creates the Film with status
"importing", which it keeps until the end. The run holds `films/<key>/.import-alive` locked
(studio/staging.LiveLock), so no second process resumes it while it is alive. At the end the
neighbours (duplicates, shot cuts: correlnet.neighbours.analyse_sequence over every thumbnail, as the
copying import does) are written and the film turns "ready", in one transaction.

Re-running the same import after a kill resumes after the last committed batch: the folder must still
list the committed frames first, with their sizes (their checksums are verified on every read), and the
thumbnails of the committed batches are read back (or recomputed from the frames when lost), so the
rows end exactly as an uninterrupted import's. An import that fails before its first commit leaves the
store unchanged; later, the committed batches are kept for the resume.
"""

from __future__ import annotations

import io
import shutil
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, insert, select, update

from correlnet import frames as framelib
from correlnet.job_context import JobContext
from correlnet.neighbours import analyse_sequence, thumbnail
from db.files import atomic_write_bytes, sha256_file
from db.models import Film, Frame
from db.store import Store
from studio.frame_sources import reference_file
from studio.import_checks import (
    FilmImportError,
    FormatCheck,
    ImportConfig,
    check_header,
    film_format,
    folder_digest,
    frame_number,
    pick_name,
    read_frame_file,
)
from studio.staging import FILMS_DIR, LiveLock, LockHeld

THUMBS_DIR = "import"  # films/<key>/import/thumbs-<first index>.npy, removed when the film is ready


def import_in_place(store: Store, path: Path, files: list[Path], wanted: str, explicit: bool, cfg: ImportConfig,
                    job: JobContext) -> Film:
    """Import the frame folder `path` (its frame files `files`, in order) in place; see the module
    docstring. Returns the ready Film (`already_imported` when the same frames were imported before)."""
    existing = _same_folder_imported(store, path, files)
    if existing is not None:
        return existing
    run = _Run.resume(store, path, files, wanted, explicit, cfg) or _Run.fresh(store, path, files, wanted,
                                                                               explicit, cfg)
    try:
        run.read(job)
        return run.finish()
    except BaseException as exc:
        run.stop()
        if isinstance(exc, FilmImportError):
            exc.kept_frames = run.done
        raise


def interrupted_films(store: Store, path: Path, name: str | None = None) -> list[Film]:
    """Films whose in-place import of `path` has not finished (and named `name`, when given)."""
    query = select(Film).where(Film.status == "importing", Film.source_path == str(path))
    if name is not None:
        query = query.where(Film.name == name)
    with store.session() as s:
        return list(s.execute(query.order_by(Film.id)).scalars())


def _same_folder_imported(store: Store, path: Path, files: list[Path]) -> Film | None:
    """A ready film imported from this very folder with the same frame names and bytes (hashing the
    folder once only when there is one: a first import hashes each frame while reading it)."""
    with store.session() as s:
        ready = list(s.execute(select(Film).where(Film.status == "ready", Film.source_path == str(path))
                               .order_by(Film.id)).scalars())
    if not ready:
        return None
    digest = folder_digest((f.name, sha256_file(f)) for f in files)
    film = next((f for f in ready if f.source_sha == digest), None)
    if film is not None:
        film.already_imported = True
    return film


class _Run:
    """One run of an in-place import: the frames it still has to read, the batch being filled."""

    def __init__(self, store: Store, path: Path, files: list[Path], cfg: ImportConfig, key: str,
                 lock: LiveLock, wanted: str, explicit: bool) -> None:
        self.store, self.path, self.files, self.cfg, self.key, self.lock = store, path, files, cfg, key, lock
        self.wanted, self.explicit = wanted, explicit
        self.folder = store.data_dir / FILMS_DIR / key
        self.film_id: int | None = None
        self.format = FormatCheck(cfg)
        self.done = 0  # frames committed
        self.thumbs: list[np.ndarray] = []  # of the committed frames
        self.rows: list[dict] = []  # the batch being filled
        self.batch_thumbs: list[np.ndarray] = []

    @classmethod
    def fresh(cls, store: Store, path: Path, files: list[Path], wanted: str, explicit: bool,
              cfg: ImportConfig) -> _Run:
        if explicit:  # a taken --name fails now, before reading any frame
            with store.session() as s:
                pick_name(set(s.execute(select(Film.name)).scalars()), wanted, explicit)
        key = uuid.uuid4().hex
        folder = store.data_dir / FILMS_DIR / key
        folder.mkdir(parents=True)
        return cls(store, path, files, cfg, key, LiveLock(folder), wanted, explicit)

    @classmethod
    def resume(cls, store: Store, path: Path, files: list[Path], wanted: str, explicit: bool,
               cfg: ImportConfig) -> _Run | None:
        """The run that continues an interrupted import of `path`, or None. FilmImportError when that
        import is still running in another process, or when the folder changed since."""
        held = None
        for film in interrupted_films(store, path, wanted if explicit else None):
            folder = store.path(film.storage_dir)
            folder.mkdir(parents=True, exist_ok=True)
            try:
                lock = LiveLock(folder)
            except LockHeld:
                held = film
                continue
            if not cfg.resume:
                lock.close()
                delete_interrupted(store, film)
                continue
            run = cls(store, path, files, cfg, Path(film.storage_dir).name, lock, film.name, True)
            try:
                run._take_over(film)
            except BaseException:
                lock.close()
                raise
            return run
        if held is not None:
            raise FilmImportError(f"{path} is being imported right now by another process as film {held.name!r}; "
                                  "wait for it to finish (`correlnet db check` lists imports that stopped)")
        return None

    def _take_over(self, film: Film) -> None:
        with self.store.session() as s:
            rows = s.execute(select(Frame.index, Frame.source_path, Frame.source_size, Frame.sha256)
                             .where(Frame.film_id == film.id).order_by(Frame.index)).all()
        if film.frame_count != len(self.files) or len(rows) > len(self.files):
            self._changed(film, f"it held {film.frame_count} frames, it now holds {len(self.files)}")
        for row, file in zip(rows, self.files):
            if row.source_path != str(file.resolve()) or file.stat().st_size != row.source_size:
                self._changed(film, f"frame {frame_number(file.name, row.index)} ({file}) is not the file imported")
        self.film_id, self.done = film.id, len(rows)
        self.format = FormatCheck(self.cfg, film_format(film.width, film.height, film.bit_depth, film.channels))
        self.thumbs = self._committed_thumbs(rows)

    def _changed(self, film: Film, what: str) -> None:
        raise FilmImportError(f"{self.path} changed since its interrupted import as film {film.name!r}: {what}; "
                              "put the folder back as it was, or start that import again from scratch with "
                              "`correlnet film import PATH --restart`")

    def _committed_thumbs(self, rows: list) -> list[np.ndarray]:
        """The committed frames' thumbnails: from their batch files, recomputed from the frames if lost."""
        saved = {}
        for file in sorted((self.folder / THUMBS_DIR).glob("thumbs-*.npy")):
            try:
                saved[int(file.stem.split("-")[1])] = np.load(file, allow_pickle=False)
            except (OSError, ValueError):
                continue  # damaged: recomputed below
        thumbs: list[np.ndarray] = []
        while len(thumbs) < len(rows):
            batch = saved.get(len(thumbs))
            if batch is not None and len(batch):
                thumbs.extend(batch[: len(rows) - len(thumbs)])
                continue
            row = rows[len(thumbs)]
            file = Path(row.source_path)
            if sha256_file(file) != row.sha256:
                raise FilmImportError(f"{file}: changed since it was imported; put the original back, or start the "
                                      "import again from scratch with `correlnet film import PATH --restart`")
            thumbs.append(thumbnail(framelib.to_gray_float(read_frame_file(file)), self.cfg.neighbours))
        return thumbs

    def read(self, job: JobContext) -> None:
        """Reference every frame not yet committed, committing every `batch_frames` of them."""
        total = len(self.files)
        for i in range(self.done, total):
            file = self.files[i]
            check_header(file, self.cfg)
            try:
                ref = reference_file(file)
            except OSError as exc:
                raise FilmImportError(f"{file}: cannot read it ({exc.strerror}); make it readable, or remove it, "
                                      "and import again") from exc
            image = read_frame_file(file)
            self.format.check(image, file)
            self.rows.append(dict(index=i, number=frame_number(file.name, i), path="", sha256=ref.sha256,
                                  source_name=file.name, source_path=str(ref.path), source_size=ref.size))
            self.batch_thumbs.append(thumbnail(framelib.to_gray_float(image), self.cfg.neighbours))
            self.lock.touch()
            if len(self.rows) >= self.cfg.batch_frames:
                commit_batch(self)
            job.report(done=i + 1, total=total, unit="frame")
        if self.rows:
            commit_batch(self)

    def create_film(self, s) -> int:  # type: ignore[no-untyped-def]
        """Insert the Film row ("importing") inside the first batch's transaction; returns its id."""
        taken = set(s.execute(select(Film.name)).scalars())
        if self.explicit and self.wanted in taken:
            raise FilmImportError(f"a film named {self.wanted!r} was imported meanwhile; choose another --name")
        film = Film(name=pick_name(taken, self.wanted, self.explicit), source_path=str(self.path), source_sha="",
                    **self.format.film_fields(), frame_count=len(self.files), status="importing",
                    storage_dir=f"{FILMS_DIR}/{self.key}")
        s.add(film)
        s.flush()
        return film.id

    def finish(self) -> Film:
        """Neighbours for every frame and status "ready", in one transaction; the same frames already
        stored as another film (imported meanwhile, or from a copy of the folder) give that film."""
        analysis = analyse_sequence(np.stack(self.thumbs), self.cfg.neighbours)
        with self.store.session() as s:
            rows = s.execute(select(Frame.id, Frame.index, Frame.source_name, Frame.sha256)
                             .where(Frame.film_id == self.film_id).order_by(Frame.index)).all()
        assert [r.index for r in rows] == list(range(len(self.files))), "committed rows out of step with the folder"
        source_sha = folder_digest((r.source_name, r.sha256) for r in rows)
        with self.store.write() as s:
            same = s.execute(select(Film).where(Film.source_sha == source_sha, Film.status == "ready")
                             .order_by(Film.id)).scalars().first()
            if same is None:
                s.execute(update(Frame), [
                    dict(id=r.id, prev_index=nb.prev, next_index=nb.next, neighbour_flag=nb.flagged,
                         is_duplicate=bool(analysis.is_duplicate[r.index]), shot=int(analysis.shot[r.index]))
                    for r, nb in zip(rows, analysis.neighbours)])
                s.execute(update(Film).where(Film.id == self.film_id).values(status="ready", source_sha=source_sha))
            else:
                _delete_rows(s, self.film_id)
        shutil.rmtree(self.folder / THUMBS_DIR, ignore_errors=True)
        self.lock.release()
        if same is not None:
            shutil.rmtree(self.folder, ignore_errors=True)  # the store's own folder: the lock and thumbnails only
            same.already_imported = True
            return same
        with self.store.session() as s:
            return s.get(Film, self.film_id)

    def stop(self) -> None:
        """After a failure: nothing committed -> remove this run's folder (the store is unchanged);
        else keep the committed batches for a resume and drop the lock."""
        self.lock.close()
        if self.film_id is None:
            shutil.rmtree(self.folder, ignore_errors=True)


def commit_batch(run: _Run) -> None:
    """Write the batch's thumbnails (file first), then its rows (row second); the first batch creates
    the film. A module function, so a test can interrupt an import after batch k."""
    buffer = io.BytesIO()
    np.save(buffer, np.stack(run.batch_thumbs), allow_pickle=False)
    atomic_write_bytes(run.folder / THUMBS_DIR / f"thumbs-{run.rows[0]['index']:08d}.npy", buffer.getvalue())
    with run.store.write() as s:
        if run.film_id is None:
            run.film_id = run.create_film(s)
        s.execute(insert(Frame), [dict(film_id=run.film_id, prev_index=r["index"], next_index=r["index"],
                                       neighbour_flag=False, is_duplicate=False, shot=0, is_validation=False, **r)
                                  for r in run.rows])
    run.done += len(run.rows)
    run.thumbs.extend(run.batch_thumbs)
    run.rows, run.batch_thumbs = [], []


def committed_frames(store: Store, film: Film) -> int:
    """Frames an (interrupted) import has committed so far."""
    with store.session() as s:
        return s.execute(select(func.count()).select_from(Frame).where(Frame.film_id == film.id)).scalar_one()


def delete_interrupted(store: Store, film: Film) -> None:
    """Remove an interrupted import's rows and its folder in the store (never a source file)."""
    with store.write() as s:
        _delete_rows(s, film.id)
    shutil.rmtree(store.path(film.storage_dir), ignore_errors=True)


def _delete_rows(s, film_id: int) -> None:  # type: ignore[no-untyped-def]
    s.execute(delete(Frame).where(Frame.film_id == film_id))
    s.execute(delete(Film).where(Film.id == film_id))
