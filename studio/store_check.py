"""Checking a store's files against its rows, and removing what no row references.

Every write puts the file first and the row second, so a process killed in between (power cut,
SIGKILL, OOM killer) leaves files no row points to, never a row without its file. `check_store`
finds them, together with what a kill leaves elsewhere:
- staging folders of dead imports (`films/.staging-*`) and film folders no Film row owns (a kill
  between the staging rename and the commit);
- files under `films/<film>/` or `models/` that no Frame, Prediction, Correction or ModelVersion row
  references (a kill after a file was written, before its row), and atomic-write temporaries
  (`.<name>.*.tmp`: a kill during the write);
- upload folders of a crashed web app (`uploads/upload-*`).
It also reports rows whose file is missing and, with checksums=True, files whose sha256 changed: those
need a backup, `repair_store` cannot fix them. Anything that may belong to a live process (younger than
`min_age_s`, or a staging folder whose import holds its lock) is listed as busy and kept.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from db.files import sha256_file
from db.models import Correction, Film, Frame, ModelVersion, Prediction
from db.store import Store
from studio import staging

MIN_AGE_S = 3_600.0  # a write and its row take seconds; an unreferenced file older than this is junk
UPLOAD_MIN_AGE_S = staging.MAX_AGE_S  # an upload folder lives as long as its import, which can take a day
FILE_TABLES = ((Frame, "frame"), (Prediction, "prediction"), (Correction, "correction"), (ModelVersion, "model version"))


@dataclass
class StoreReport:
    """missing / damaged: one line per row whose file is absent / changed (restore from a backup).
    junk: unreferenced files and folders `repair_store` removes; busy: unreferenced but maybe in use."""

    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    junk: list[Path] = field(default_factory=list)
    busy: list[Path] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.damaged or self.junk)


def check_store(store: Store, checksums: bool = False, min_age_s: float = MIN_AGE_S,
                upload_min_age_s: float = UPLOAD_MIN_AGE_S) -> StoreReport:
    """Compare the store's files with its rows (see the module docstring); changes nothing."""
    report = StoreReport()
    referenced = _check_rows(store, report, checksums)
    with store.session() as s:
        film_dirs = {store.path(d) for d in s.execute(select(Film.storage_dir)).scalars()}
    now = time.time()
    films_dir = store.data_dir / "films"
    for child in sorted(films_dir.iterdir()) if films_dir.is_dir() else []:
        if child in film_dirs:
            _unreferenced_files(child, referenced, report, now, min_age_s)
        elif child.is_dir():  # a dead import's staging folder, or one promoted but never committed
            (report.busy if staging.is_alive(child, min_age_s) else report.junk).append(child)
        else:
            _sort_by_age(child, report, now, min_age_s)
    if (store.data_dir / "models").is_dir():
        _unreferenced_files(store.data_dir / "models", referenced, report, now, min_age_s)
    uploads = store.data_dir / "uploads"
    for child in sorted(uploads.glob("upload-*")) if uploads.is_dir() else []:
        _sort_by_age(child, report, now, upload_min_age_s, newest_inside=True)
    return report


def repair_store(store: Store, report: StoreReport) -> list[Path]:
    """Remove `report.junk` (files and folders no row references); returns what was removed. Rows, and
    the files they reference, are never touched."""
    removed = []
    for path in report.junk:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        if not path.exists():
            removed.append(path)
    return removed


def _check_rows(store: Store, report: StoreReport, checksums: bool) -> set[Path]:
    referenced: set[Path] = set()
    with store.session() as s:
        for table, what in FILE_TABLES:
            for row_id, relative, sha in s.execute(select(table.id, table.path, table.sha256)):
                path = store.path(relative)
                referenced.add(path)
                if not path.is_file():
                    report.missing.append(f"{path}: missing (the file of {what} {row_id}); restore it from a backup")
                elif checksums and sha256_file(path) != sha:
                    report.damaged.append(f"{path}: checksum mismatch (the file of {what} {row_id} changed); "
                                          "restore it from a backup")
    return referenced


def _unreferenced_files(folder: Path, referenced: set[Path], report: StoreReport, now: float, min_age_s: float) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path not in referenced:
            _sort_by_age(path, report, now, min_age_s)


def _sort_by_age(path: Path, report: StoreReport, now: float, min_age_s: float, newest_inside: bool = False) -> None:
    try:
        mtimes = [path.stat().st_mtime]
        if newest_inside and path.is_dir():
            mtimes += [p.stat().st_mtime for p in path.rglob("*")]
    except OSError:
        return  # removed meanwhile
    (report.busy if now - max(mtimes) < min_age_s else report.junk).append(path)
