"""Where an import's frames come from: a folder referenced in place, a folder copied, a video decoded.

studio/resumable_import.py runs every import the same way (batches, thumbnails, the live lock, resume);
a source says what that run cannot know by itself:
- `frames(start)`: the frames from index `start` on, each with the Frame columns the source gives
  (number, source_name; in place also path "", sha256, source_path, source_size);
- `copying`: whether the run stores each frame as a PNG of the store (`films/<key>/frames/`);
- `source_sha`: the digest that identifies it (`Film.source_sha`): known before reading for a copying
  source (the video file's sha256, the folder's `folder_digest`), None in place (the digest comes from
  the rows at the end, the folder being hashed frame by frame as it is read);
- `changed(film, rows)`: why an interrupted import's committed rows no longer match this source (None
  when they do), and `committed_image(store, row)`: a committed frame read back (its thumbnail lost).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from correlnet import frames as framelib
from correlnet import video
from db.files import read_png, sha256_file
from db.models import Film
from db.store import Store
from studio.frame_sources import SourceRef, reference_file, source_problem
from studio.import_checks import (
    FilmImportError,
    ImportConfig,
    check_header,
    folder_digest,
    frame_number,
    normalise,
    read_frame_file,
)


@dataclass(frozen=True)
class SourceFrame:
    """One frame read: its index in the film, its pixels (normalised), its row's columns, its file."""

    index: int
    image: np.ndarray
    fields: dict
    file: Path


class FolderSource:
    """A folder of frame files (`files`, in film order): in place, or copied when `copying`."""

    def __init__(self, path: Path, files: list[Path], cfg: ImportConfig, copying: bool) -> None:
        self.path, self.files, self.cfg, self.copying = path, files, cfg, copying
        self.expected = len(files)
        # A copy's identity up front (re-import detection, resume); in place it comes from the rows.
        self.source_sha = folder_digest((f.name, sha256_file(f)) for f in files) if copying else None

    def frames(self, start: int) -> Iterator[SourceFrame]:
        for i in range(start, len(self.files)):
            file = self.files[i]
            check_header(file, self.cfg)
            fields = dict(number=frame_number(file.name, i), source_name=file.name)
            if not self.copying:
                try:
                    ref = reference_file(file)
                except OSError as exc:
                    raise FilmImportError(f"{file}: cannot read it ({exc.strerror}); make it readable, or remove "
                                          "it, and import again") from exc
                fields.update(path="", sha256=ref.sha256, source_path=str(ref.path), source_size=ref.size)
            yield SourceFrame(i, read_frame_file(file), fields, file)

    def changed(self, film: Film, rows: list) -> str | None:
        if self.copying:
            return None if film.source_sha == self.source_sha else "its frames' names or bytes differ"
        if film.frame_count != len(self.files) or len(rows) > len(self.files):
            return f"it held {film.frame_count} frames, it now holds {len(self.files)}"
        for row, file in zip(rows, self.files):
            if row.source_path != str(file.resolve()) or file.stat().st_size != row.source_size:
                return f"frame {frame_number(file.name, row.index)} ({file}) is not the file imported"
        return None

    def committed_image(self, store: Store, row) -> np.ndarray:  # type: ignore[no-untyped-def]
        if self.copying:
            return stored_image(store, row)
        file = Path(row.source_path)
        if source_problem(SourceRef(file, row.source_size, row.sha256)) is not None:
            raise FilmImportError(f"{file}: changed since it was imported; put the original back, or start the "
                                  "import again from scratch with `correlnet film import PATH --restart`")
        return read_frame_file(file)


class VideoSource:
    """A video file, decoded into the store. Its frames are numbered from 1 in decoding order. A resumed
    import decodes from the start and converts only the frames from `start` on (skipping is decoding
    without the conversion and the PNG encoding, the expensive part); the whole file's sha256 must be the
    interrupted import's. A video that ends short of its header's count is refused at its end
    (correlnet.video.check_video_complete), naming the file and the frame."""

    copying = True

    def __init__(self, path: Path, cfg: ImportConfig) -> None:
        self.path, self.cfg = path, cfg
        self.source_sha = sha256_file(path)
        try:
            self.expected = video.video_frame_count(path)  # the header's count: progress, Film.frame_count
        except framelib.FrameReadError as exc:
            raise FilmImportError(f"{exc}; check it plays, or re-encode it") from exc

    def frames(self, start: int) -> Iterator[SourceFrame]:
        try:
            for i, image in enumerate(video.iter_video_frames(self.path, start=start), start):
                yield SourceFrame(i, normalise(image, self.path), dict(number=i + 1, source_name=self.path.name),
                                  self.path)
        except framelib.FrameReadError as exc:
            raise FilmImportError(f"{exc}; if the file plays to its end, re-encode it (e.g. ffmpeg -i in.mov -c:v "
                                  "ffv1 out.mkv) and import again") from exc

    def changed(self, film: Film, rows: list) -> str | None:
        return None if film.source_sha == self.source_sha else "it is not the same file (its sha256 differs)"

    def committed_image(self, store: Store, row) -> np.ndarray:  # type: ignore[no-untyped-def]
        return stored_image(store, row)


Source = FolderSource | VideoSource


def stored_image(store: Store, row) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A committed frame's PNG in the store (sha256 checked); FilmImportError saying to restart when lost."""
    try:
        return read_png(store.path(row.path), row.sha256)
    except ValueError as exc:
        raise FilmImportError(f"{exc}; the interrupted import cannot resume: start it again from scratch with "
                              "`correlnet film import PATH --restart`") from exc
