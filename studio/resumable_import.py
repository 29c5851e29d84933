"""Every import runs here: committed in batches, resumable, the film "importing" until the end.

The frames come from a source (studio/import_sources.py): a folder referenced in place (each frame
hashed, its row holding the resolved path, size and sha256: studio/frame_sources.py), or a folder or a
video copied into the store, each frame written as a lossless PNG `films/<key>/frames/<index:06d>.png`
(atomic: db/files.py) as it is read. Every `ImportConfig.batch_frames` frames the batch's thumbnails
are written to `films/<key>/import/` and, files first, rows second, its rows committed; the first
commit creates the Film with status "importing", which it keeps until the end. The run holds
`films/<key>/.import-alive` locked (studio/staging.LiveLock), so no second process resumes it while it
is alive. At the end the neighbours (duplicates, shot cuts: correlnet.neighbours.analyse_sequence over
every thumbnail) are written and the film turns "ready", in one transaction.

Re-running the same import after a kill resumes after the last committed batch: the source must still
be what the committed rows say (in place: the folder lists the committed frames first, with their
sizes; copied: the same file or folder digest, `Film.source_sha`, set when the film is created), and
the thumbnails of the committed batches are read back (or recomputed from the frames when lost), so
the rows end exactly as an uninterrupted import's. Files a kill left after the last commit (the
PNGs of a batch not committed) lie in the importing film's folder, which `correlnet db check` reports
as an interrupted import, never as junk; the resume rewrites them (same names, atomic replace). An
import that fails before its first commit leaves the store unchanged; later, the committed batches are
kept for the resume. While importing, `Film.source_sha` is "" for an in-place import and the source's
digest for a copying one, which is how a resume tells the two apart.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, insert, or_, select, update

from correlnet import frames as framelib
from correlnet.job_context import JobContext
from correlnet.neighbours import analyse_sequence, thumbnail
from correlnet.video import VIDEO_SUFFIXES
from db.files import atomic_write_bytes, sha256_file, write_png
from db.models import Film, Frame
from db.store import Store
from studio.import_checks import FilmImportError, FormatCheck, ImportConfig, film_format, folder_digest, pick_name
from studio.import_sources import Source, SourceFrame
from studio.staging import FILMS_DIR, LiveLock, LockHeld

THUMBS_DIR = "import"  # films/<key>/import/thumbs-<first index>.npy, removed when the film is ready
FRAMES_DIR = "frames"  # films/<key>/frames/<index:06d>.png: the frames a copying import stores


def import_frames(store: Store, source: Source, wanted: str, explicit: bool, cfg: ImportConfig,
                  job: JobContext) -> Film:
    """Import `source` as a film named `wanted` (taken: "-2"..., unless `explicit`), resuming an
    interrupted import of it; see the module docstring. Returns the ready Film (`already_imported` when
    the same frames were stored meanwhile)."""
    found = _Run.resume(store, source, wanted, explicit, cfg)
    if isinstance(found, Film):  # its interrupted import finished in another process meanwhile
        return found
    run = found or _Run.fresh(store, source, wanted, explicit, cfg)
    try:
        run.read(job)
        return run.finish()
    except BaseException as exc:
        run.stop()
        if isinstance(exc, FilmImportError):
            exc.kept_frames = run.done
        raise


def interrupted_films(store: Store, source: Source, name: str | None = None) -> list[Film]:
    """Films whose import of `source` has not finished (and named `name`, when given): for an in-place
    source those of its folder, for a copying one those of its path or of its digest (a moved file, a
    second upload of the same bytes), the digest's first."""
    query = select(Film).where(Film.status == "importing")
    if source.copying:
        query = query.where(Film.source_sha != "", or_(Film.source_path == str(source.path),
                                                       Film.source_sha == source.source_sha))
    else:
        query = query.where(Film.source_sha == "", Film.source_path == str(source.path))
    if name is not None:
        query = query.where(Film.name == name)
    with store.session() as s:
        films = list(s.execute(query.order_by(Film.id)).scalars())
    return sorted(films, key=lambda f: f.source_sha != source.source_sha)


def resume_command(film: Film) -> str:
    """The command that resumes `film`'s interrupted import."""
    copied_folder = film.source_sha != "" and Path(film.source_path).suffix.lower() not in VIDEO_SUFFIXES
    return f"correlnet film import {film.source_path}" + (" --copy" if copied_folder else "")


def same_folder_imported(store: Store, path: Path, files: list[Path]) -> Film | None:
    """A ready film imported in place from this very folder with the same frame names and bytes (hashing
    the folder once only when there is one: a first import hashes each frame while reading it)."""
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
    """One run of an import: the frames it still has to read, the batch being filled."""

    def __init__(self, store: Store, source: Source, cfg: ImportConfig, key: str, lock: LiveLock, wanted: str,
                 explicit: bool) -> None:
        self.store, self.source, self.cfg, self.key, self.lock = store, source, cfg, key, lock
        self.wanted, self.explicit = wanted, explicit
        self.folder = store.data_dir / FILMS_DIR / key
        self.film_id: int | None = None
        self.format = FormatCheck(cfg)
        self.done = 0  # frames committed
        self.thumbs: list[np.ndarray] = []  # of the committed frames
        self.rows: list[dict] = []  # the batch being filled
        self.batch_thumbs: list[np.ndarray] = []

    @classmethod
    def fresh(cls, store: Store, source: Source, wanted: str, explicit: bool, cfg: ImportConfig) -> _Run:
        if explicit:  # a taken --name fails now, before reading any frame
            with store.session() as s:
                pick_name(set(s.execute(select(Film.name)).scalars()), wanted, explicit)
        key = uuid.uuid4().hex
        folder = store.data_dir / FILMS_DIR / key
        (folder / FRAMES_DIR if source.copying else folder).mkdir(parents=True)
        return cls(store, source, cfg, key, LiveLock(folder), wanted, explicit)

    @classmethod
    def resume(cls, store: Store, source: Source, wanted: str, explicit: bool,
               cfg: ImportConfig) -> _Run | Film | None:
        """The run that continues an interrupted import of `source`, or None; the ready Film
        (`already_imported`) when that import finished in another process between the listing and the
        lock. FilmImportError when that import is still running in another process, or when the source
        changed since."""
        held = None
        for film in interrupted_films(store, source, wanted if explicit else None):
            folder = store.path(film.storage_dir)
            folder.mkdir(parents=True, exist_ok=True)
            try:
                lock = LiveLock(folder)
            except LockHeld:
                held = film
                continue
            # The list was read before the lock: the import may have finished (or been discarded) since.
            with store.session() as s:
                current = s.get(Film, film.id)
            if current is None or current.status != "importing":
                lock.release()
                if current is not None and current.status == "ready":
                    current.already_imported = True
                    return current
                continue
            if not cfg.resume:
                delete_interrupted(store, film)  # under the lock: no other process resumes it meanwhile
                lock.close()
                continue
            run = cls(store, source, cfg, Path(film.storage_dir).name, lock, film.name, True)
            try:
                run._take_over(film)
            except BaseException:
                lock.close()
                raise
            return run
        if held is not None:
            raise FilmImportError(f"{source.path} is being imported right now by another process as film "
                                  f"{held.name!r}; wait for it to finish (`correlnet db check` lists imports that "
                                  "stopped)")
        return None

    def _take_over(self, film: Film) -> None:
        with self.store.session() as s:
            rows = s.execute(select(Frame.index, Frame.path, Frame.source_path, Frame.source_size, Frame.sha256)
                             .where(Frame.film_id == film.id).order_by(Frame.index)).all()
        problem = self.source.changed(film, rows)
        if problem is not None:
            raise FilmImportError(f"{self.source.path} changed since its interrupted import as film {film.name!r}: "
                                  f"{problem}; put it back as it was, or start that import again from scratch "
                                  f"with `correlnet film import {self.source.path} --restart`")
        if film.source_path != str(self.source.path):  # the same bytes from elsewhere: a moved file, an upload
            with self.store.write() as s:
                s.execute(update(Film).where(Film.id == film.id).values(source_path=str(self.source.path)))
        if self.source.copying:
            (self.folder / FRAMES_DIR).mkdir(exist_ok=True)
        self.film_id, self.done = film.id, len(rows)
        self.format = FormatCheck(self.cfg, film_format(film.width, film.height, film.bit_depth, film.channels))
        self.thumbs = self._committed_thumbs(rows)

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
            image = self.source.committed_image(self.store, rows[len(thumbs)])
            thumbs.append(thumbnail(framelib.to_gray_float(image), self.cfg.neighbours))
        return thumbs

    def read(self, job: JobContext) -> None:
        """Read every frame not yet committed (a copying import stores it), committing every
        `batch_frames` of them."""
        for frame in self.source.frames(self.done):
            self.format.check(frame.image, frame.file)
            fields = self._store_frame(frame) if self.source.copying else frame.fields
            self.rows.append(dict(index=frame.index, **fields))
            self.batch_thumbs.append(thumbnail(framelib.to_gray_float(frame.image), self.cfg.neighbours))
            try:
                self.lock.touch()
            except FileNotFoundError as exc:
                raise FilmImportError(self._vanished(f"at frame {frame.index + 1}")) from exc
            if len(self.rows) >= self.cfg.batch_frames:
                commit_batch(self)
            job.report(done=frame.index + 1, total=max(self.source.expected, frame.index + 1), unit="frame")
        if self.rows:
            commit_batch(self)
        if self.done == 0:
            raise FilmImportError(f"{self.source.path}: no decodable frame; check it plays, or re-encode it")

    def _store_frame(self, frame: SourceFrame) -> dict:
        """Write a copied frame as the store's PNG (never recreating a vanished folder); its row's columns."""
        try:
            path, sha = write_frame_png(self.folder, f"{FILMS_DIR}/{self.key}", frame.index, frame.image)
        except FileNotFoundError as exc:
            raise FilmImportError(self._vanished(f"while frame {frame.index:06d}.png was written")) from exc
        return dict(frame.fields, path=path, sha256=sha)

    def _vanished(self, when: str) -> str:
        kept = "the committed batches are lost: " if self.film_id is not None else ""
        return (f"{self.folder}: the import's folder vanished {when} (removed by another process or a clean-up "
                f"of the data directory); {kept}import again" + (" with --restart" if kept else ""))

    def check_batch_files(self) -> None:
        """Every PNG of the batch is still there before its rows point to it (file first, row second)."""
        if not self.source.copying:
            return
        try:
            present = set(os.listdir(self.folder / FRAMES_DIR))
        except FileNotFoundError as exc:
            raise FilmImportError(self._vanished("before a batch was committed")) from exc
        missing = [r["path"] for r in self.rows if Path(r["path"]).name not in present]
        if missing:
            raise FilmImportError(f"{self.folder}: {len(missing)} stored frame(s) vanished before their rows were "
                                  f"committed (first: {missing[0]}), removed by another process or a clean-up; "
                                  "import again")

    def create_film(self, s) -> int:  # type: ignore[no-untyped-def]
        """Insert the Film row ("importing") inside the first batch's transaction; returns its id."""
        taken = set(s.execute(select(Film.name)).scalars())
        if self.explicit and self.wanted in taken:
            raise FilmImportError(f"a film named {self.wanted!r} was imported meanwhile; choose another --name")
        film = Film(name=pick_name(taken, self.wanted, self.explicit), source_path=str(self.source.path),
                    source_sha=self.source.source_sha or "", **self.format.film_fields(),
                    frame_count=self.source.expected, status="importing", storage_dir=f"{FILMS_DIR}/{self.key}")
        s.add(film)
        s.flush()
        return film.id

    def finish(self) -> Film:
        """Neighbours for every frame and status "ready", in one transaction; the same frames already
        stored as another film (imported meanwhile, or from a copy of the source) give that film."""
        analysis = analyse_sequence(np.stack(self.thumbs), self.cfg.neighbours)
        with self.store.session() as s:
            rows = s.execute(select(Frame.id, Frame.index, Frame.source_name, Frame.sha256)
                             .where(Frame.film_id == self.film_id).order_by(Frame.index)).all()
        assert [r.index for r in rows] == list(range(self.done)), "committed rows out of step with the source"
        source_sha = self.source.source_sha or folder_digest((r.source_name, r.sha256) for r in rows)
        with self.store.write() as s:
            same = s.execute(select(Film).where(Film.source_sha == source_sha, Film.status == "ready",
                                                Film.id != self.film_id).order_by(Film.id)).scalars().first()
            if same is None:
                s.execute(update(Frame), [
                    dict(id=r.id, prev_index=nb.prev, next_index=nb.next, neighbour_flag=nb.flagged,
                         is_duplicate=bool(analysis.is_duplicate[r.index]), shot=int(analysis.shot[r.index]))
                    for r, nb in zip(rows, analysis.neighbours)])
                s.execute(update(Film).where(Film.id == self.film_id)
                          .values(status="ready", source_sha=source_sha, frame_count=len(rows)))
            else:
                _delete_rows(s, self.film_id)
        shutil.rmtree(self.folder / THUMBS_DIR, ignore_errors=True)
        self.lock.release()
        if same is not None:
            shutil.rmtree(self.folder, ignore_errors=True)  # the store's own folder, never a source
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
    """Write the batch's thumbnails (files first: the batch's PNGs are written already), then its rows
    (row second); the first batch creates the film. A module function, so a test can interrupt an
    import after batch k."""
    run.check_batch_files()
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


def write_frame_png(folder: Path, storage_dir: str, index: int, image: np.ndarray) -> tuple[str, str]:
    """Write frame `index` as a film's stored PNG, the one layout of copied frames (`folder`: the film's
    folder in the store, `storage_dir` its path relative to the data folder; a vanished folder is never
    recreated: FileNotFoundError). Returns (path relative to the data folder, sha256)."""
    name = f"{index:06d}.png"
    sha = write_png(folder / FRAMES_DIR / name, image, create_dirs=False)
    return f"{storage_dir}/{FRAMES_DIR}/{name}", sha


def committed_frames(store: Store, film: Film) -> int:
    """Frames an (interrupted) import has committed so far."""
    with store.session() as s:
        return s.execute(select(func.count()).select_from(Frame).where(Frame.film_id == film.id)).scalar_one()


def delete_interrupted(store: Store, film: Film) -> bool:
    """Remove an interrupted import's rows and its folder in the store (never a source file); a film that
    is no longer "importing" (finished meanwhile) is left alone. Returns whether it was removed."""
    with store.write() as s:
        deleted = _delete_rows(s, film.id)
    if deleted:
        shutil.rmtree(store.path(film.storage_dir), ignore_errors=True)
    return deleted


def _delete_rows(s, film_id: int) -> bool:  # type: ignore[no-untyped-def]
    """Delete an importing film's frames and row inside the write transaction `s`; a ready film is never
    deleted here (FOR UPDATE on PostgreSQL, the write lock on SQLite: no import finishes it meanwhile)."""
    status = s.execute(select(Film.status).where(Film.id == film_id).with_for_update()).scalar_one_or_none()
    if status != "importing":
        return False
    s.execute(delete(Frame).where(Frame.film_id == film_id))
    s.execute(delete(Film).where(Film.id == film_id, Film.status == "importing"))
    return True

