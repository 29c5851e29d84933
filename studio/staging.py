"""Staging folders and the live lock of a running import.

A copying import (a video decoded into the store, or `--copy`) writes every frame into
`films/.staging-<key>/frames/`, renames the folder to `films/<key>/` (atomic on one file system) and
only then inserts the rows. A folder left by an import that was killed is removed by a later import's
sweep; a live one must never be. Liveness is judged from `.import-alive` inside the folder, which the
live import holds locked (`LiveLock`: flock, released by the kernel when the process dies) and touches
at every frame: the folder's own mtime does not change while files are written below it, so an import
that runs for more than a day (a 4K feature) would look dead. An in-place import
(studio/resumable_import.py) holds the same lock in its film folder `films/<key>/`, so a second
process never resumes an import that is still running.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import BinaryIO

import numpy as np

from db.files import write_png

try:
    import fcntl
except ImportError:  # Windows: liveness from the touched file's age only
    fcntl = None  # type: ignore[assignment]

FILMS_DIR = "films"  # under data_dir: one folder per film (`Film.storage_dir`), and the staging folders
PREFIX = ".staging-"
LIVE_FILE = ".import-alive"
MAX_AGE_S = 86_400.0  # a folder untouched for a day and not locked belongs to a dead import


class StagingError(ValueError):
    """The staging folder or a staged frame vanished under a running import; the message says what to do."""


class LockHeld(RuntimeError):
    """Another live process holds the folder's import lock."""


class LiveLock:
    """`<folder>/.import-alive`, locked (flock) while its import runs and touched at every frame.

    `LiveLock(folder)` takes the lock (the folder must exist) or raises LockHeld when a live process
    holds it; on a file system without locks liveness falls back to the touched file's age."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LIVE_FILE
        self._handle: BinaryIO | None = open(self.path, "ab")  # "ab": never truncates a live import's file
        if fcntl is not None:
            try:
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                self.close()
                raise LockHeld(f"{self.path} is locked by a running import") from exc
            except OSError:  # a file system without locks: liveness from the touched file's age only
                pass
        self.touch()

    def touch(self) -> None:
        """The heartbeat: raises FileNotFoundError when the folder vanished."""
        os.utime(self.path)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()  # releases the flock
            self._handle = None

    def release(self) -> None:
        """Drop the lock and remove its file (the import finished)."""
        self.close()
        self.path.unlink(missing_ok=True)


class StagingDir:
    """The staging folder of one import: `films/.staging-<key>/`, promoted to `films/<key>/`."""

    def __init__(self, films_dir: Path, key: str) -> None:
        self.path = films_dir / f"{PREFIX}{key}"
        self.final = films_dir / key
        (self.path / "frames").mkdir(parents=True)
        self._live: LiveLock | None = LiveLock(self.path)

    def write_frame(self, name: str, image: np.ndarray) -> str:
        """Write one frame as `frames/<name>` (never recreating a vanished folder); returns its sha256."""
        try:
            sha = write_png(self.path / "frames" / name, image, create_dirs=False)
            os.utime(self.path / LIVE_FILE)
        except FileNotFoundError as exc:
            raise StagingError(self._vanished(f"while frame {name} was written")) from exc
        return sha

    def promote(self, names: list[str]) -> None:
        """Check that every staged frame is still there, then rename the folder to its final name."""
        try:
            present = set(os.listdir(self.path / "frames"))
        except FileNotFoundError as exc:
            raise StagingError(self._vanished("before the film was stored")) from exc
        missing = [n for n in names if n not in present]
        if missing:
            raise StagingError(f"{self.path}: {len(missing)} staged frame(s) vanished (first: {missing[0]}), "
                               "removed by another process or a clean-up; nothing was imported: import again")
        try:
            self.path.rename(self.final)
        except FileNotFoundError as exc:
            raise StagingError(self._vanished("before the film was stored")) from exc

    def release(self) -> None:
        """After the rows are committed: drop the lock and its file (the folder is the film's now)."""
        self._close()
        (self.final / LIVE_FILE).unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove everything this import wrote, staged or promoted."""
        self._close()
        shutil.rmtree(self.path, ignore_errors=True)
        shutil.rmtree(self.final, ignore_errors=True)

    def _close(self) -> None:
        if self._live is not None:
            self._live.close()  # releases the flock
            self._live = None

    def _vanished(self, when: str) -> str:
        return (f"{self.path}: the import's staging folder vanished {when} (removed by another process or a "
                "clean-up of the data directory); nothing was imported: import again")


def is_alive(folder: Path, max_age_s: float = MAX_AGE_S) -> bool:
    """Whether a staging folder may belong to a running import: touched within `max_age_s`, or locked."""
    live = folder / LIVE_FILE
    try:
        newest = max(folder.stat().st_mtime, live.stat().st_mtime if live.exists() else 0.0)
    except OSError:
        return True  # vanished or unreadable meanwhile: not ours to judge
    if time.time() - newest <= max_age_s:
        return True
    return _locked(live)


def _locked(live: Path) -> bool:
    if fcntl is None or not live.exists():
        return False
    try:
        with open(live, "rb") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
    except OSError:
        return True
    return False


def stale_folders(films_dir: Path, max_age_s: float = MAX_AGE_S) -> list[Path]:
    """Staging folders under `films_dir` whose import is dead (see `is_alive`)."""
    return sorted(f for f in films_dir.glob(f"{PREFIX}*") if f.is_dir() and not is_alive(f, max_age_s))


def sweep_stale(films_dir: Path, max_age_s: float = MAX_AGE_S) -> list[Path]:
    """Remove the staging folders of dead imports; returns them."""
    stale = stale_folders(films_dir, max_age_s)
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    return stale
