"""Films in the store: import, list, look up by name or id, read frames.

A folder of frames is imported in place by default: each frame is referenced where it lies (path,
size, sha256; verified on every read by `frame_image`). A video, a folder with `ImportConfig(in_place=
False)` (`--copy`) or a folder inside the store's data folder (an upload) is copied: each frame is
stored as a lossless PNG under data_dir. Either way the import runs in studio/resumable_import.py
(the sources in studio/import_sources.py): rows committed in batches, the film "importing" until its
neighbours are written, a killed import resumed by the same call. A video that decodes fewer frames
than its header announces is refused (correlnet.video.check_video_complete).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import distinct, func, select

from correlnet import frames as framelib
from correlnet.video import VIDEO_SUFFIXES
from correlnet.job_context import JobContext, job_or_null
from db.files import read_png
from db.models import Correction, Film, Frame, Prediction
from db.store import Store
from studio import frame_sources, resumable_import, store_copy
from studio.import_checks import (  # noqa: F401  (FilmImportError, ImportConfig, frame_number: public here)
    FilmImportError,
    ImportConfig,
    frame_number,
    frame_suffixes,
    normalise,
)
from studio.import_sources import FolderSource, Source, VideoSource
from studio.staging import FILMS_DIR, sweep_stale

MAX_NAME = 120  # characters; leaves room for a "-2" suffix and export file names
_BAD_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")  # control characters, path separators
FrameRange = tuple[int, int]  # first and last frame number (Frame.number), inclusive


class FilmNotFound(LookupError):
    """No film with that name or id (or, unless asked for, a film whose import has not finished)."""


@dataclass(frozen=True)
class FilmSummary:
    """A film with its review progress: frames, frames with a prediction, frames with a correction."""

    film: Film
    frames: int
    predicted: int
    corrected: int

    @property
    def id(self) -> int:
        return self.film.id

    @property
    def name(self) -> str:
        return self.film.name


def _list_sources(path: Path) -> list[Path]:
    """Frame files of a folder, naturally sorted; [] for a video file."""
    if not path.exists():
        raise FilmImportError(f"{path}: no such file or folder; check the path")
    if path.is_file():
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise FilmImportError(f"{path}: not a video ({', '.join(sorted(VIDEO_SUFFIXES))}) nor a folder; "
                                  "pass a video file or a folder of frames "
                                  f"({frame_suffixes()})")
        return []
    try:
        files = list(framelib.list_frame_files(path))
    except framelib.FrameReadError as exc:
        raise FilmImportError(str(exc)) from exc
    if not files:
        raise FilmImportError(f"{path}: the folder holds no frames ({frame_suffixes()}); "
                              "point to the folder that contains the image sequence")
    return files


def check_film_name(name: str) -> str:
    """`name` if it can name a film: 1 to MAX_NAME characters, no control characters, no path separators,
    no surrounding spaces, not "." or ".." (names become export file names and zip paths). Raises
    FilmImportError saying what to change."""
    if not isinstance(name, str) or not name.strip():
        raise FilmImportError("the film name is empty; give a name such as 'reel-1'")
    if len(name) > MAX_NAME:
        raise FilmImportError(f"the film name is {len(name)} characters long; use at most {MAX_NAME}")
    if _BAD_NAME_CHARS.search(name) or name in (".", "..") or name != name.strip():
        raise FilmImportError(f"the film name {name!r} holds a path separator, a control character (e.g. a "
                              "newline) or surrounding spaces; use letters, digits, spaces, '-', '_' or '.'")
    return name


def _default_name(path: Path) -> str:
    """The film name a source suggests (file stem or folder name), made valid."""
    name = _BAD_NAME_CHARS.sub("_", path.stem if path.is_file() else path.name).strip()[:MAX_NAME].strip()
    return name if name not in ("", ".", "..") else "film"


def _existing(store: Store, source_sha: str) -> Film | None:
    with store.session() as s:
        return s.execute(select(Film).where(Film.source_sha == source_sha, Film.status == "ready")
                         .order_by(Film.id)).scalars().first()


def _check_within(root: Path, path: Path, files: list[Path]) -> None:
    """Every source file (symlinks followed) must lie inside `root`: a symlinked frame must not pull a
    file from elsewhere into the store."""
    root = Path(root).expanduser().resolve()
    for item in [path, *files]:
        if not item.resolve().is_relative_to(root):
            raise FilmImportError(f"{item}: resolves to {item.resolve()}, outside the allowed import folder {root}; "
                                  "copy the frames there instead of linking them")


def import_film(store: Store, path: str | Path, name: str | None = None, job: JobContext | None = None,
                cfg: ImportConfig = ImportConfig(), root: str | Path | None = None) -> Film:
    """Import a video file or a folder of frames as a new film; returns the Film (status "ready").

    A folder is referenced in place (`cfg.in_place`, the default): nothing is copied. A video, a folder
    with `in_place=False`, or a folder inside the store's data folder (an upload) is decoded/copied into
    the store as PNG. Either way rows are committed every `cfg.batch_frames` frames and the same call
    after a kill resumes (studio/resumable_import.py; `cfg.resume=False` starts over).

    name: checked by `check_film_name`; default: the file stem or folder name (made valid; "-2", "-3"...
    appended when taken). root: when given, the path and every frame file must resolve inside it
    (the web app's CORRELNET_IMPORT_ROOT).
    Re-importing the same content (same file bytes, or same frame names and bytes) returns the film
    already stored, with `film.already_imported = True`, and copies nothing; except that a folder
    imported in place and imported again with `in_place=False` (`--copy`) has that film's frames copied
    into the store (studio/store_copy.py: same frame ids, predictions and corrections kept;
    `film.copied_frames`: how many this call copied; `name` is then ignored).
    job: gets report(done, total, unit="frame") after each frame read (`correlnet.job_context`).
    Raises FilmImportError naming the bad file and what to do; the store is then unchanged, except for
    the batches committed before (`exc.kept_frames`), which a re-run resumes after.
    """
    explicit = name is not None
    wanted = check_film_name(name) if explicit else None
    path = Path(path).expanduser().resolve()
    files = _list_sources(path)
    if root is not None:
        _check_within(Path(root), path, files)
    source: Source
    if files and cfg.in_place and not path.is_relative_to(store.data_dir.resolve()):
        source = FolderSource(path, files, cfg, copying=False)
        existing = resumable_import.same_folder_imported(store, path, files)
    else:
        source = FolderSource(path, files, cfg, copying=True) if files else VideoSource(path, cfg)
        existing = _existing(store, source.source_sha)
    if existing is not None:
        existing.already_imported = True
        if not cfg.in_place and files:  # asked for a copy of a folder: take the film off in-place storage
            existing.copied_frames = store_copy.copy_into_store(store, existing, cfg, job)
        return existing
    with store.session() as s:
        owned = {store.path(d) for d in s.execute(select(Film.storage_dir)).scalars()}
    sweep_stale(store.data_dir / FILMS_DIR, owned)
    return resumable_import.import_frames(store, source, wanted or _default_name(path), explicit, cfg,
                                          job_or_null(job))


def get_film(store: Store, name_or_id: str | int, importing: bool = False) -> Film:
    """The film with this name, or this id (a number that is not some film's name). Raises FilmNotFound,
    also for a film whose import has not finished unless `importing` (its frames have no neighbours yet)."""
    with store.session() as s:
        film = s.execute(select(Film).where(Film.name == str(name_or_id))).scalar_one_or_none()
        if film is None and str(name_or_id).strip().isdigit():
            film = s.get(Film, int(name_or_id))
        if film is None:
            names = ", ".join(s.execute(select(Film.name).order_by(Film.id)).scalars()) or "none yet"
            raise FilmNotFound(f"no film named or numbered {name_or_id!r} (films: {names}); see `correlnet film list`")
    if film.status == "importing" and not importing:
        done = resumable_import.committed_frames(store, film)
        raise FilmNotFound(f"film {film.name!r} is still being imported ({done} of {film.frame_count} frames); run "
                           f"`{resumable_import.resume_command(film)}` again to finish it if that import stopped")
    return film


def list_films(store: Store, importing: bool = False) -> list[FilmSummary]:
    """Every ready film (and, with `importing`, those whose import has not finished), oldest first, with
    counts of frames that have a prediction / a correction."""
    with store.session() as s:
        query = select(Film).order_by(Film.id)
        films = s.execute(query if importing else query.where(Film.status == "ready")).scalars().all()
        predicted = dict(s.execute(select(Frame.film_id, func.count(distinct(Prediction.frame_id)))
                                   .join(Prediction, Prediction.frame_id == Frame.id).group_by(Frame.film_id)).all())
        corrected = dict(s.execute(select(Frame.film_id, func.count(distinct(Correction.frame_id)))
                                   .join(Correction, Correction.frame_id == Frame.id).group_by(Frame.film_id)).all())
    return [FilmSummary(f, f.frame_count, predicted.get(f.id, 0), corrected.get(f.id, 0)) for f in films]


def film_frames(store: Store, film: Film) -> list[Frame]:
    """The film's frames in order (index 0..frame_count-1)."""
    with store.session() as s:
        return list(s.execute(select(Frame).where(Frame.film_id == film.id).order_by(Frame.index)).scalars())


def parse_frame_range(text: str) -> FrameRange:
    """"1001-1100" -> (1001, 1100); "1001" -> (1001, 1001). Raises ValueError saying the expected form."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(text))
    if match is None:
        raise ValueError(f"frame range {text!r}: give FIRST-LAST frame numbers, e.g. 1001-1100, or one number")
    first, last = int(match.group(1)), int(match.group(2) or match.group(1))
    if first > last:
        raise ValueError(f"frame range {text!r} is empty: the first number must not be above the last")
    return first, last


def select_frames(frames: list[Frame], frame_range: FrameRange | None) -> list[Frame]:
    """The frames numbered within `frame_range` (all of them when None), in film order."""
    if frame_range is None:
        return list(frames)
    return [f for f in frames if frame_range[0] <= f.number <= frame_range[1]]


def frame_image(store: Store, frame: Frame) -> np.ndarray:
    """The frame as imported: (H, W) or (H, W, 3) RGB, uint8 or uint16. Raises ValueError naming the file
    if it is missing or its checksum changed: for a frame referenced in place, SourceFrameError naming the
    film, frame and source file and what to do (size and sha256 checked on every read: frame_sources.py)."""
    if frame.in_place:
        return normalise(frame_sources.read_source(store, frame), Path(frame.source_path))
    return read_png(store.path(frame.path), frame.sha256)


def frame_gray(store: Store, frame: Frame) -> np.ndarray:
    """The stored frame as (H, W) float32 in [0, 1] (what the models take)."""
    return framelib.to_gray_float(frame_image(store, frame))


def ready_films(store: Store) -> list[Film]:
    """Every ready film, oldest first, without `list_films`' counts (they read every frame's predictions
    and corrections: 0.1-0.2 s at 130 000 frames, bench/store_scale.py): the film pickers' list."""
    with store.session() as s:
        return list(s.execute(select(Film).where(Film.status == "ready").order_by(Film.id)).scalars())
