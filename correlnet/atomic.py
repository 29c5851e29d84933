"""Atomic file writes: a reader (or a crash) never sees a half-written checkpoint, mask or state file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], *, create_dirs: bool = True) -> Path:
    """Call `write(handle)` on a temporary file beside `path`, fsync it, then rename it over `path`.

    Creates the parent directory, unless create_dirs=False: then a missing parent raises
    FileNotFoundError (a caller whose folder vanished must fail, not write into a new empty one).
    On any error the temporary file is removed and `path` keeps its previous content (or stays
    absent). Returns `path` as a Path.
    """
    path = Path(path)
    if create_dirs:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; give the file the permissions a plain open() would (umask applied),
        # so a team's worker and app running as different users can read models and masks.
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
