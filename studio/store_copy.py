"""Copying a film imported in place into the store: the way off in-place storage.

`correlnet film import FOLDER --copy` on a folder already imported in place (the same frame names and
bytes: `Film.source_sha`) does not make a second film: `copy_into_store` stores each frame still
referenced in place as the PNG a copying import would have written (`films/<key>/frames/<index:06d>.png`,
the same decoding and encoder: its sha256 is the fresh copy's), file first, then, every
`ImportConfig.batch_frames` frames, switches those rows to the store (path and sha256 of the PNG,
source_path/source_size cleared) in one transaction. The frame rows keep their ids, so every prediction,
correction and review field stays with its frame; the sources are only read (through
`studio.films.frame_image`: size, sha256 and identity checked), never written. Killed midway, the film
stays whole (each frame read from wherever its row points) and the same command goes on with the frames
still in place, rewriting the PNGs of the batch that was not committed (same names, atomic replace). The
film folder's `LiveLock` keeps a second process from copying the same film at the same time.
"""

from __future__ import annotations

from sqlalchemy import func, select, update

from correlnet.job_context import JobContext, job_or_null
from db.models import Film, Frame
from db.store import Store
from studio.frame_sources import SourceFrameError
from studio.import_checks import FilmImportError, ImportConfig
from studio.resumable_import import FRAMES_DIR, write_frame_png
from studio.staging import LiveLock, LockHeld


def copy_into_store(store: Store, film: Film, cfg: ImportConfig = ImportConfig(),
                    job: JobContext | None = None) -> int:
    """Copy every frame of `film` still referenced in place into the store (see the module docstring);
    returns how many this call copied (0: the film was in the store already). job: report(done, total,
    unit="frame") after each frame. Raises FilmImportError naming the frame and the file when a source is
    missing or changed (`kept_frames`: frames in the store by then; the same command goes on from there),
    or when another process is copying the film."""
    from studio.films import frame_image  # studio.films calls this module

    job = job_or_null(job)
    with store.session() as s:
        left = s.execute(select(func.count()).select_from(Frame)
                         .where(Frame.film_id == film.id, Frame.source_path.is_not(None))).scalar_one()
    if left == 0:
        return 0
    folder = store.path(film.storage_dir)
    (folder / FRAMES_DIR).mkdir(parents=True, exist_ok=True)
    try:
        lock = LiveLock(folder)
    except LockHeld as exc:
        raise FilmImportError(f"film {film.name!r} is being copied into the store right now by another process; "
                              "wait for it to finish") from exc
    stored, copied = film.frame_count - left, 0
    try:
        while True:
            with store.session() as s:
                batch = list(s.execute(select(Frame).where(Frame.film_id == film.id, Frame.source_path.is_not(None))
                                       .order_by(Frame.index).limit(cfg.batch_frames)).scalars())
            if not batch:
                break
            rows = []
            for frame in batch:
                try:
                    image = frame_image(store, frame)
                except SourceFrameError as exc:
                    error = FilmImportError(f"{exc} (while copying film {film.name!r} into the store; its predictions "
                                            "and corrections are kept either way)")
                    error.kept_frames = stored + copied
                    raise error from exc
                path, sha = write_frame_png(folder, film.storage_dir, frame.index, image)
                rows.append(dict(id=frame.id, path=path, sha256=sha, source_path=None, source_size=None))
                lock.touch()
                job.report(done=stored + copied + len(rows), total=film.frame_count, unit="frame")
            with store.write() as s:  # row second: every PNG of the batch is written
                s.execute(update(Frame), rows)
            copied += len(rows)
    except BaseException:
        lock.close()
        raise
    lock.release()
    return copied
