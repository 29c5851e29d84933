"""Frames referenced where they lie (imported in place): the reference, its check on read, relinking.

A Frame imported in place holds its source file's absolute resolved path, size and sha256
(db/models.py). Every read checks the size (a stat) and the sha256 of the bytes before decoding them
(`read_source`): ~10 ms for a 17 MB 2K 16-bit frame on one core (docs/benchmarks.md), against ~0.1 s to
decode it and far more to predict it, and the only check that catches a frame edited in place with its
size kept (a regrade, a touched-up dust spot, one changed byte). A missing or changed file raises
SourceFrameError naming the film, the frame and the file, and saying what to do; a changed frame is
never served. Moving a reel is `relink_film` (`correlnet film relink FILM NEW_FOLDER`): every file is
checked first, then every path is updated in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import func, select, update

from correlnet import frames as framelib
from correlnet.job_context import JobContext, job_or_null
from db.files import sha256_file
from db.models import Film, Frame
from db.store import Store


class SourceFrameError(ValueError):
    """A referenced source frame is missing, changed or unreadable; the message names the film, the frame
    number and the file, and what to do."""


@dataclass(frozen=True)
class SourceRef:
    """A source file as a Frame row references it."""

    path: Path  # absolute, symlinks resolved
    size: int  # bytes
    sha256: str


def reference_file(file: Path) -> SourceRef:
    """The reference of `file` now (resolved path, size, sha256 of its bytes)."""
    path = Path(file).resolve()
    return SourceRef(path, path.stat().st_size, sha256_file(path))


def source_problem(ref: SourceRef, checksum: bool = True) -> str | None:
    """Why the file at `ref.path` is not the referenced frame ("missing", "changed: ..."), or None.
    checksum=False checks the size only (a stat)."""
    try:
        size = ref.path.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if size != ref.size:
        return f"changed: {size} bytes, {ref.size} when imported"
    if checksum:
        try:
            if sha256_file(ref.path) != ref.sha256:
                return "changed: same size, different content (checksum mismatch)"
        except OSError as exc:
            return f"unreadable ({exc.strerror})"
    return None


def frame_ref(frame: Frame) -> SourceRef:
    if frame.source_path is None or frame.source_size is None:
        raise ValueError(f"frame {frame.number} (id {frame.id}) is stored in the store, not referenced in place")
    return SourceRef(Path(frame.source_path), frame.source_size, frame.sha256)


def read_source(store: Store, frame: Frame) -> np.ndarray:
    """The referenced source frame decoded as `correlnet.frames.read_image` gives it, after checking its
    size and checksum. Raises SourceFrameError (see the module docstring)."""
    ref = frame_ref(frame)
    before = _identity(ref.path)
    problem = source_problem(ref)
    if problem is None:
        try:
            image = framelib.read_image(ref.path)
        except framelib.FrameReadError as exc:
            problem = f"undecodable ({exc})"
        else:
            # The bytes were hashed, then decoded by a second open: a file replaced or rewritten between the
            # two changes its inode, size or modification time, and is refused rather than served unchecked.
            if before is not None and _identity(ref.path) == before:
                return image
            problem = "changed while it was being read"
    raise SourceFrameError(problem_message(_film_name(store, frame.film_id), frame.number, ref.path, problem))


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    """(device, inode, size, mtime in ns) of `path`, or None when it cannot be stat'ed."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def problem_message(film_name: str, number: int, path: Path, problem: str) -> str:
    """The one wording of a bad source frame (reads, `correlnet db check`)."""
    if problem == "missing":
        fix = (f"put the file back, or if the reel was moved run `correlnet film relink {film_name} NEW_FOLDER` "
               "(it checks every frame's checksum before changing anything)")
    else:
        fix = ("restore the original file (a changed scan is not the film that was reviewed: its predictions and "
               f"corrections belong to the old pixels), or import the new scan as a new film")
    return f"film {film_name!r}, frame {number}: source file {path} is {problem}; {fix}"


def _film_name(store: Store, film_id: int) -> str:
    with store.session() as s:
        return s.execute(select(Film.name).where(Film.id == film_id)).scalar_one_or_none() or f"#{film_id}"


@dataclass(frozen=True)
class RelinkResult:
    relinked: int  # frames whose path changed
    unchanged: int  # frames already at the new folder


class RelinkError(ValueError):
    """The new folder does not hold the film's frames; nothing was changed."""


def relink_film(store: Store, film: Film, folder: str | Path, job: JobContext | None = None) -> RelinkResult:
    """Point every in-place frame of `film` at the file of the same name in `folder`, after checking that
    each one exists with the same size and sha256 (job: report(done, total, unit="frame") while hashing).
    All paths change in one transaction, or none: RelinkError lists the first frames that do not match."""
    job = job_or_null(job)
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise RelinkError(f"{folder}: no such folder; give the folder the film's frames were moved to")
    if folder.is_relative_to(store.data_dir.resolve()):
        raise RelinkError(f"{folder} lies inside the store's data folder {store.data_dir.resolve()}, which the "
                          "store manages (its checks may clean up there); keep the reel outside it and relink to "
                          "that folder; nothing was changed")
    with store.session() as s:
        rows = s.execute(select(Frame.id, Frame.number, Frame.source_name, Frame.source_path, Frame.source_size,
                                Frame.sha256).where(Frame.film_id == film.id, Frame.source_path.is_not(None))
                         .order_by(Frame.index)).all()
    if not rows:
        raise RelinkError(f"film {film.name!r} has no frame referenced in place (its frames are in the store); "
                          "nothing to relink")
    moves, bad = [], []
    for k, row in enumerate(rows):
        target = (folder / row.source_name).resolve()
        problem = source_problem(SourceRef(target, row.source_size, row.sha256))
        if problem is not None:
            bad.append(f"frame {row.number}: {target} is {problem}")
        elif str(target) != row.source_path:
            moves.append({"id": row.id, "source_path": str(target)})
        job.report(done=k + 1, total=len(rows), unit="frame")
    if bad:
        raise RelinkError(f"{folder} does not hold film {film.name!r}'s frames ({len(bad)} of {len(rows)} do not "
                          f"match; first: {'; '.join(bad[:3])}); nothing was changed: give the folder that holds "
                          "the frames as imported")
    with store.write() as s:
        still = s.execute(select(func.count()).select_from(Frame).where(
            Frame.film_id == film.id, Frame.source_path.is_not(None))).scalar_one()
        if still != len(rows):  # `film import --copy` took frames into the store meanwhile
            raise RelinkError(f"film {film.name!r} is being copied into the store ({len(rows) - still} frame(s) "
                              "already are); nothing was changed: let the copy finish, it needs no relink")
        if moves:
            s.execute(update(Frame), moves)
        s.execute(update(Film).where(Film.id == film.id).values(source_path=str(folder)))
    return RelinkResult(relinked=len(moves), unchanged=len(rows) - len(moves))
