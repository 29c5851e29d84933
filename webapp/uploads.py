"""Turning what a browser uploaded, or a typed path, into something studio.films.import_film takes,
without letting either escape where it belongs.

- An upload is staged in a fresh directory under the store (a video file, a zip of frames, or
  several frame files) and removed after the import, whatever happened; the import itself is all or
  nothing, so a bad upload leaves the store unchanged.
- Nothing staged is ever overwritten: every upload gets its own directory (tempfile.mkdtemp), names
  are reduced to one path component, and two frames of the same name (two files, or the same name in
  two folders of a zip, which is flattened) refuse the upload instead of one silently replacing the
  other.
- A typed path must resolve (symlinks included) inside the allowed import root.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from correlnet.frames import IMAGE_SUFFIXES
from correlnet.video import VIDEO_SUFFIXES as _VIDEO

# What film import reads (correlnet.frames, the one home of formats): scanner DPX, Cineon and EXR
# frames upload like PNGs, ProRes/DNxHR .mov and .mxf like MP4.
VIDEO_SUFFIXES = tuple(sorted(_VIDEO))
FRAME_SUFFIXES = tuple(sorted(IMAGE_SUFFIXES))
ACCEPTED = tuple(s.lstrip(".") for s in VIDEO_SUFFIXES + FRAME_SUFFIXES + (".zip",))


class UploadError(ValueError):
    """An upload or path the app refuses; the message says why and what to do."""


@dataclass(frozen=True)
class UploadLimits:
    """max_bytes: total size of the uploaded files; max_unzipped_bytes / max_zip_entries guard against
    zip bombs (a small archive that inflates to fill the disk)."""

    max_bytes: int = 2_000 * 1024**2
    max_unzipped_bytes: int = 20 * 1024**3
    max_zip_entries: int = 200_000


def resolve_under_root(path_text: str, root: Path) -> Path:
    """The typed path, resolved, if it lies inside root; else UploadError."""
    if not path_text.strip():
        raise UploadError("type the path of a video or a folder of frames")
    root = Path(root).expanduser().resolve()
    path = Path(path_text.strip()).expanduser()
    path = (path if path.is_absolute() else root / path).resolve()
    if not path.is_relative_to(root):
        raise UploadError(f"{path} is outside the allowed import folder {root}; copy the film there "
                          "or start the app with CORRELNET_IMPORT_ROOT set to a folder that contains it")
    if not path.exists():
        raise UploadError(f"{path} does not exist; check the path (relative paths start at {root})")
    return path


def _safe_member(name: str) -> PurePosixPath | None:
    """Zip member path if it is a plain relative file path, else None (skipped). Backslashes count
    as separators (zips written on Windows)."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or name.endswith(("/", "\\")) or p.name.startswith("."):
        return None
    if p.parts and p.parts[0] == "__MACOSX":
        return None
    return p


def _file_name(name: str, default: str) -> str:
    """The last path component of an uploaded or zipped name ("a/b\\c.png" -> "c.png"), `default` when
    nothing usable is left ("", ".", ".."): a name can never point outside the staging directory."""
    last = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return default if last in ("", ".", "..") else last


def _check_unique(names: list[tuple[str, str]], what: str) -> None:
    """names: (file name written, name as uploaded); UploadError when two are written to one name."""
    seen: dict[str, str] = {}
    for written, given in names:
        if written in seen:
            raise UploadError(f"{what} holds two frames named {written} ({seen[written]} and {given}); one would "
                              "replace the other. Upload each reel on its own, or rename the frames so that "
                              "every name is unique")
        seen[written] = given


def _write_new(path: Path, data) -> None:
    """Write a file that must not exist yet (never overwrite); data: bytes or a readable binary file."""
    with open(path, "xb") as out:
        if isinstance(data, bytes):
            out.write(data)
        else:
            shutil.copyfileobj(data, out)


def _extract_frames(archive: Path, dest: Path, limits: UploadLimits) -> Path:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in zf.infolist() if _safe_member(i.filename)
                     and PurePosixPath(i.filename).suffix.lower() in FRAME_SUFFIXES]
            if not infos:
                raise UploadError(f"{archive.name}: the zip holds no frames ({', '.join(FRAME_SUFFIXES)})")
            if len(infos) > limits.max_zip_entries or sum(i.file_size for i in infos) > limits.max_unzipped_bytes:
                raise UploadError(f"{archive.name}: the zip inflates to more than the app accepts "
                                  f"({limits.max_unzipped_bytes // 1024**3} GB); import the folder by path instead")
            # Flatten: frames are sorted by the number in their name, folders do not matter, as long
            # as no two folders hold a frame of the same name.
            names = [(_safe_member(i.filename).name, i.filename) for i in infos]
            _check_unique(names, f"{archive.name}: the zip")
            folder = dest / _file_name(archive.stem, "frames")  # the film's default name
            folder.mkdir()
            for info, (name, _) in zip(infos, names):
                with zf.open(info) as src:
                    _write_new(folder / name, src)
    except zipfile.BadZipFile as exc:
        raise UploadError(f"{archive.name}: not a readable zip archive ({exc}); zip the frames again") from exc
    return folder


def stage_upload(files: list[tuple[str, bytes]], staging_root: Path,
                 limits: UploadLimits = UploadLimits()) -> tuple[Path, Path]:
    """Write uploaded (name, bytes) files to a new directory under staging_root.

    One video -> that file; one zip -> the folder of frames inside it; frame files -> their folder.
    Returns (path to import, staging directory to delete afterwards). Raises UploadError (and
    removes the staging directory) for anything else.
    """
    if not files:
        raise UploadError("choose a video, a zip of frames, or frame files to upload")
    if sum(len(data) for _, data in files) > limits.max_bytes:
        raise UploadError(f"the upload is larger than {limits.max_bytes // 1024**2} MB; "
                          "import it by path from the allowed import folder instead")
    named = [(_file_name(name, "upload"), name, data) for name, data in files]
    suffixes = {Path(name).suffix.lower() for name, _, _ in named}
    Path(staging_root).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="upload-", dir=staging_root))  # new and unique, or it raises
    try:
        if len(named) == 1 and suffixes <= set(VIDEO_SUFFIXES) | {".zip"}:
            name, _, data = named[0]
            target = staging / name
            _write_new(target, data)
            return (_extract_frames(target, staging, limits) if target.suffix.lower() == ".zip" else target), staging
        if not suffixes <= set(FRAME_SUFFIXES):
            raise UploadError(f"unsupported upload ({', '.join(sorted(suffixes))}): upload one video "
                              f"({', '.join(VIDEO_SUFFIXES)}), one zip of frames, or frame files")
        _check_unique([(name, given) for name, given, _ in named], "the upload")
        folder = staging / "frames"
        folder.mkdir()
        for name, _, data in named:
            _write_new(folder / name, data)
        return folder, staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
