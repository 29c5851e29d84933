"""Films in the store: import (all or nothing), list, look up by name or id, read frames.

Import stages every frame as a lossless PNG in a hidden directory under data_dir, computes the
temporal neighbours (correlnet.neighbours), moves the directory into place and only then inserts
the Film (status "ready") and its Frame rows in one transaction. Any failure removes the staged
files, so the store is left exactly as it was: never a half film that looks complete.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import distinct, func, select

from correlnet import frames as framelib
from correlnet.neighbours import NeighbourConfig, analyse_sequence, thumbnail
from db.files import read_png, sha256_bytes, sha256_file, write_png
from db.models import Correction, Film, Frame, Prediction
from db.store import Store

FILMS_DIR = "films"
Progress = Callable[[int, int], None]  # (frames done, total frames)


class FilmImportError(ValueError):
    """An import that cannot proceed; the message names the file and what to do. The store is unchanged."""


class FilmNotFound(LookupError):
    """No film with that name or id."""


@dataclass(frozen=True)
class ImportConfig:
    """max_pixels / max_side: frames larger than this are refused from their header, before decoding
    (a corrupt or hostile header could otherwise ask for gigabytes). 8K DCI is 8192x4320 = 35 Mpx."""

    max_pixels: int = 40_000_000
    max_side: int = 16_384
    neighbours: NeighbourConfig = NeighbourConfig()


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


def frame_number(name: str, default: int) -> int:
    """The frame number in a file name: the last run of digits in its stem ("shot_0012.tif" -> 12)."""
    digits = re.findall(r"\d+", Path(name).stem)
    return int(digits[-1]) if digits else default


def _source_digest(path: Path, files: list[Path]) -> str:
    if path.is_file():
        return sha256_file(path)
    parts = [f"{f.name}:{sha256_file(f)}" for f in files]
    return sha256_bytes("\n".join(parts).encode())


def _list_sources(path: Path) -> list[Path]:
    """Frame files of a folder, naturally sorted; [] for a video file."""
    if not path.exists():
        raise FilmImportError(f"{path}: no such file or folder; check the path")
    if path.is_file():
        if path.suffix.lower() not in framelib.VIDEO_SUFFIXES:
            raise FilmImportError(f"{path}: not a video ({', '.join(sorted(framelib.VIDEO_SUFFIXES))}) nor a folder; "
                                  "pass a video file or a folder of png/tif/jpg frames")
        return []
    try:
        files = list(framelib.list_frame_files(path))
    except framelib.FrameReadError as exc:
        raise FilmImportError(str(exc)) from exc
    if not files:
        raise FilmImportError(f"{path}: the folder holds no frames (png, tif, tiff, jpg); "
                              "point to the folder that contains the image sequence")
    return files


def _check_header(file: Path, cfg: ImportConfig) -> None:
    try:
        width, height = framelib.image_header_size(file)
    except framelib.FrameReadError as exc:
        raise FilmImportError(f"{exc}; replace or remove this frame and import again") from exc
    _check_size(file, width, height, cfg)


def _check_size(file: Path, width: int, height: int, cfg: ImportConfig) -> None:
    if width * height > cfg.max_pixels or max(width, height) > cfg.max_side:
        raise FilmImportError(
            f"{file}: frame is {width}x{height}, above the import limit ({cfg.max_pixels} pixels, "
            f"{cfg.max_side} per side); downscale the scans or raise ImportConfig.max_pixels")


def _normalise(image: np.ndarray, file: Path) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8/uint16; alpha dropped."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype not in (np.uint8, np.uint16) or image.ndim not in (2, 3):
        raise FilmImportError(f"{file}: unsupported pixels {image.dtype} {image.shape}; "
                              "export the frames as 8- or 16-bit gray or RGB")
    return image


class _Stager:
    """Writes frames into a staging directory and checks they all share one format."""

    def __init__(self, store: Store, source: Path, cfg: ImportConfig) -> None:
        self.store, self.source, self.cfg = store, source, cfg
        self.key = uuid.uuid4().hex
        self.staging = store.data_dir / FILMS_DIR / f".staging-{self.key}"
        (self.staging / "frames").mkdir(parents=True)
        self.fmt: tuple[tuple[int, ...], np.dtype] | None = None
        self.rows: list[dict] = []
        self.thumbs: list[np.ndarray] = []

    def add(self, image: np.ndarray, file: Path, number: int) -> None:
        image = _normalise(image, file)
        fmt = (image.shape, image.dtype)
        if self.fmt is None:
            _check_size(file, image.shape[1], image.shape[0], self.cfg)
            self.fmt = fmt
        elif fmt != self.fmt:
            raise FilmImportError(
                f"{file}: frame is {_describe(*fmt)} but the film's first frame is {_describe(*self.fmt)}; "
                "every frame of a film must share size, bit depth and channels: convert or remove it")
        index = len(self.rows)
        relative = f"{FILMS_DIR}/{self.key}/frames/{index:06d}.png"
        sha = write_png(self.staging / "frames" / f"{index:06d}.png", image)
        self.rows.append(dict(index=index, number=number, path=relative, sha256=sha, source_name=file.name))
        self.thumbs.append(thumbnail(framelib.to_gray_float(image), self.cfg.neighbours))

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        shutil.rmtree(self.store.data_dir / FILMS_DIR / self.key, ignore_errors=True)


def _describe(shape: tuple[int, ...], dtype: np.dtype) -> str:
    channels = shape[2] if len(shape) == 3 else 1
    return f"{shape[1]}x{shape[0]} {np.dtype(dtype).itemsize * 8}-bit {channels}-channel"


def _read_all(stager: _Stager, path: Path, files: list[Path], on_progress: Progress | None) -> None:
    if files:
        for i, file in enumerate(files):
            _check_header(file, stager.cfg)
            try:
                image = framelib.read_image(file)
            except framelib.FrameReadError as exc:
                raise FilmImportError(f"{exc}; replace or remove this frame and import again") from exc
            stager.add(image, file, frame_number(file.name, i))
            if on_progress:
                on_progress(i + 1, len(files))
        return
    try:
        total = framelib.video_frame_count(path)
        for i, image in enumerate(framelib.iter_video_frames(path)):
            stager.add(image, path, i + 1)  # video frames are numbered from 1, in decoding order
            if on_progress:
                on_progress(i + 1, max(total, i + 1))
    except framelib.FrameReadError as exc:
        raise FilmImportError(f"{exc}; re-encode the video (e.g. ffmpeg -i in.mov -c:v ffv1 out.mkv) and import again") from exc
    if not stager.rows:
        raise FilmImportError(f"{path}: the video has no decodable frame; check it plays, or re-encode it")


def _sweep_stale_staging(store: Store, max_age_s: float = 86_400.0) -> None:
    """Remove staging folders left by imports that were killed (power cut, SIGKILL) over a day ago;
    younger ones may belong to an import still running in another process."""
    for stale in (store.data_dir / FILMS_DIR).glob(".staging-*"):
        try:
            if time.time() - stale.stat().st_mtime > max_age_s:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            continue


def _existing(store: Store, source_sha: str) -> Film | None:
    with store.session() as s:
        return s.execute(select(Film).where(Film.source_sha == source_sha, Film.status == "ready")
                         .order_by(Film.id)).scalars().first()


def _free_name(store: Store, wanted: str, explicit: bool) -> str:
    with store.session() as s:
        taken = set(s.execute(select(Film.name)).scalars())
    if wanted not in taken:
        return wanted
    if explicit:
        raise FilmImportError(f"a film named {wanted!r} already exists; choose another --name")
    suffix = 2
    while f"{wanted}-{suffix}" in taken:
        suffix += 1
    return f"{wanted}-{suffix}"


def import_film(store: Store, path: str | Path, name: str | None = None, on_progress: Progress | None = None,
                cfg: ImportConfig = ImportConfig()) -> Film:
    """Import a video file or a folder of frames as a new film; returns the Film (status "ready").

    Re-importing the same content (same file bytes, or same frame names and bytes) returns the film
    already stored, with `film.already_imported = True`, and copies nothing.
    Raises FilmImportError naming the bad file and what to do; the store is then unchanged.
    """
    path = Path(path).expanduser().resolve()
    files = _list_sources(path)
    source_sha = _source_digest(path, files)
    existing = _existing(store, source_sha)
    if existing is not None:
        existing.already_imported = True
        return existing
    film_name = _free_name(store, name or (path.stem if path.is_file() else path.name), explicit=name is not None)
    _sweep_stale_staging(store)
    stager = _Stager(store, path, cfg)
    try:
        _read_all(stager, path, files, on_progress)
        film = _commit(store, stager, path, film_name, source_sha)
    except BaseException:
        stager.discard()
        raise
    if film.already_imported:
        stager.discard()
    return film


def _commit(store: Store, stager: _Stager, path: Path, film_name: str, source_sha: str) -> Film:
    analysis = analyse_sequence(np.stack(stager.thumbs), stager.cfg.neighbours)
    shape, dtype = stager.fmt  # type: ignore[misc]
    stager.staging.rename(store.data_dir / FILMS_DIR / stager.key)  # atomic: same file system
    with store.write() as s:
        raced = s.execute(select(Film).where(Film.source_sha == source_sha, Film.status == "ready")).scalars().first()
        if raced is not None:  # another process imported the same source meanwhile
            raced.already_imported = True
            return raced
        if s.execute(select(Film.id).where(Film.name == film_name)).first() is not None:
            raise FilmImportError(f"a film named {film_name!r} was imported meanwhile; choose another --name")
        film = Film(name=film_name, source_path=str(path), source_sha=source_sha, width=shape[1], height=shape[0],
                    bit_depth=np.dtype(dtype).itemsize * 8, channels=shape[2] if len(shape) == 3 else 1,
                    frame_count=len(stager.rows), status="ready", storage_dir=f"{FILMS_DIR}/{stager.key}")
        s.add(film)
        s.flush()
        for row, nb in zip(stager.rows, analysis.neighbours):
            t = row["index"]
            s.add(Frame(film_id=film.id, prev_index=nb.prev, next_index=nb.next, neighbour_flag=nb.flagged,
                        is_duplicate=bool(analysis.is_duplicate[t]), shot=int(analysis.shot[t]),
                        is_validation=False, **row))
    return film


def get_film(store: Store, name_or_id: str | int) -> Film:
    """The film with this name, or this id (a number that is not some film's name). Raises FilmNotFound."""
    with store.session() as s:
        film = s.execute(select(Film).where(Film.name == str(name_or_id))).scalar_one_or_none()
        if film is None and str(name_or_id).strip().isdigit():
            film = s.get(Film, int(name_or_id))
        if film is None:
            names = ", ".join(s.execute(select(Film.name).order_by(Film.id)).scalars()) or "none yet"
            raise FilmNotFound(f"no film named or numbered {name_or_id!r} (films: {names}); see `correlnet film list`")
        return film


def list_films(store: Store) -> list[FilmSummary]:
    """Every film, oldest first, with counts of frames that have a prediction / a correction."""
    with store.session() as s:
        films = s.execute(select(Film).order_by(Film.id)).scalars().all()
        predicted = dict(s.execute(select(Frame.film_id, func.count(distinct(Prediction.frame_id)))
                                   .join(Prediction, Prediction.frame_id == Frame.id).group_by(Frame.film_id)).all())
        corrected = dict(s.execute(select(Frame.film_id, func.count(distinct(Correction.frame_id)))
                                   .join(Correction, Correction.frame_id == Frame.id).group_by(Frame.film_id)).all())
    return [FilmSummary(f, f.frame_count, predicted.get(f.id, 0), corrected.get(f.id, 0)) for f in films]


def film_frames(store: Store, film: Film) -> list[Frame]:
    """The film's frames in order (index 0..frame_count-1)."""
    with store.session() as s:
        return list(s.execute(select(Frame).where(Frame.film_id == film.id).order_by(Frame.index)).scalars())


def frame_image(store: Store, frame: Frame) -> np.ndarray:
    """The stored frame as imported: (H, W) or (H, W, 3) RGB, uint8 or uint16. Raises ValueError naming the
    file if it is missing or its checksum changed."""
    return read_png(store.path(frame.path), frame.sha256)


def frame_gray(store: Store, frame: Frame) -> np.ndarray:
    """The stored frame as (H, W) float32 in [0, 1] (what the models take)."""
    return framelib.to_gray_float(frame_image(store, frame))
