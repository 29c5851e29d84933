"""The live lock of a running import, and the sweep of dead imports' folders.

Every import (studio/resumable_import.py) writes into its film folder `films/<key>/` and holds
`.import-alive` inside it locked (`LiveLock`: flock, released by the kernel when the process dies),
touching it at every frame: the folder's own mtime does not change while files are written below it,
so an import that runs for more than a day (a 4K feature) would look dead. A second process therefore
never resumes an import that is still running, and a later import's sweep removes only the folders
of dead imports that no Film row owns (killed before their first commit), and the `.staging-*`
folders older versions staged copies in.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Set
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # Windows: liveness from the touched file's age only
    fcntl = None  # type: ignore[assignment]

FILMS_DIR = "films"  # under data_dir: one folder per film (`Film.storage_dir`)
LIVE_FILE = ".import-alive"
MAX_AGE_S = 86_400.0  # a folder untouched for a day and not locked belongs to a dead import


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


def stale_folders(films_dir: Path, owned: Set[Path], max_age_s: float = MAX_AGE_S) -> list[Path]:
    """Folders under `films_dir` that no Film row owns (`owned`: the films' folders) and whose import is
    dead (see `is_alive`): killed before its first commit, or an older version's staging folder."""
    if not films_dir.is_dir():
        return []
    return sorted(f for f in films_dir.iterdir()
                  if f.is_dir() and not f.is_symlink() and f not in owned and not is_alive(f, max_age_s))


def sweep_stale(films_dir: Path, owned: Set[Path], max_age_s: float = MAX_AGE_S) -> list[Path]:
    """Remove the folders of dead imports that no Film row owns; returns them."""
    stale = stale_folders(films_dir, owned, max_age_s)
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    return stale
