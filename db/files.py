"""Files the store points to: written atomically, named by the caller, checked by sha256.

A row must never point to a half-written file, so every write goes to a temporary file in the
destination directory, is fsync'ed and then renamed over the final name with `os.replace`
(atomic on POSIX and Windows). Callers write the file first and insert the row second.
Images are PNG (lossless; 8- or 16-bit; 1 or 3 channels, RGB order in numpy), encoded by `correlnet.png`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from correlnet.atomic import atomic_write
from correlnet.png import decode_png, encode_png  # the one PNG codec

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes, *, create_dirs: bool = True) -> str:
    """Write `data` to `path` atomically (temp file in the same dir, fsync, os.replace).

    Returns the sha256 of `data`. Creates the parent directory unless create_dirs=False (then a
    missing one raises FileNotFoundError). On any error the temporary file is removed and `path`
    keeps its previous content (or stays absent).
    """
    path = atomic_write(path, lambda handle: handle.write(data), create_dirs=create_dirs)
    _fsync_dir(path.parent)
    return sha256_bytes(data)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not supported on every platform (e.g. Windows).
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_png(path: Path, image: np.ndarray, *, create_dirs: bool = True) -> str:
    """Atomically write `image` as PNG to `path`; returns its sha256. create_dirs: as atomic_write_bytes."""
    return atomic_write_bytes(Path(path), encode_png(image), create_dirs=create_dirs)


def read_png(path: Path, sha256: str | None = None) -> np.ndarray:
    """Read a PNG written by write_png. With `sha256`, raise ValueError naming the file if its content
    changed since it was stored (a damaged or replaced file)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read stored image ({exc.strerror}); is the data directory complete?") from exc
    if sha256 is not None and sha256_bytes(data) != sha256:
        raise ValueError(f"{path}: checksum mismatch: the stored file was modified or damaged; restore it from a backup")
    try:
        return decode_png(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
