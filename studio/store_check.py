"""Checking a store's files against its rows, and removing what no row references.

Every write puts the file first and the row second, so a process killed in between (power cut,
SIGKILL, OOM killer) leaves files no row points to, never a row without its file. `check_store`
finds them, together with what a kill leaves elsewhere:
- film folders no Film row owns (an import killed before its first commit; an older version's
  `films/.staging-*`);
- files under `films/<film>/` or `models/` that no Frame, Prediction, Correction or ModelVersion row
  references (a kill after a file was written, before its row), and atomic-write temporaries
  (`.<name>.*.tmp`: a kill during the write);
- upload folders of a crashed web app (`uploads/upload-*`).
It also reports rows whose file is missing and, with checksums=True, files whose sha256 changed: those
need a backup, `repair_store` cannot fix them. Frames imported in place are checked where they lie: a
source file missing or of another size (and, with checksums=True, of other content) is reported with
what to do (put it back, `correlnet film relink`); the user's files are never touched. An import that
was interrupted (in place or copying) is reported with how to resume it; its folder is kept with what
a kill left after the last commit (a copy's PNGs without rows, which the resume rewrites). Anything that may
belong to a live process (younger than `min_age_s`, or a folder whose import holds its lock) is listed
as busy and kept.
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
from studio.frame_sources import SourceRef, problem_message, source_problem
from studio.resumable_import import committed_frames, resume_command

MIN_AGE_S = 3_600.0  # a write and its row take seconds; an unreferenced file older than this is junk
UPLOAD_MIN_AGE_S = staging.MAX_AGE_S  # an upload folder lives as long as its import, which can take a day
FILE_TABLES = ((Prediction, "prediction"), (Correction, "correction"), (ModelVersion, "model version"))


@dataclass
class StoreReport:
    """missing / damaged: one line per row whose file is absent / changed (restore from a backup; for a
    source frame referenced in place, put it back or relink). interrupted: one line per in-place import
    that stopped before the end (run it again to resume). junk: unreferenced files and folders
    `repair_store` removes; busy: unreferenced but maybe in use."""

    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    junk: list[Path] = field(default_factory=list)
    busy: list[Path] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.damaged or self.junk or self.interrupted)


def check_store(store: Store, checksums: bool = False, min_age_s: float = MIN_AGE_S,
                upload_min_age_s: float = UPLOAD_MIN_AGE_S) -> StoreReport:
    """Compare the store's files with its rows (see the module docstring); changes nothing."""
    report = StoreReport()
    referenced, sources = _check_rows(store, report, checksums)
    with store.session() as s:
        films = s.execute(select(Film)).scalars().all()
    film_dirs = {store.path(f.storage_dir) for f in films}
    importing = {store.path(f.storage_dir): f for f in films if f.status == "importing"}
    now = time.time()
    films_dir = store.data_dir / staging.FILMS_DIR
    for child in sorted(films_dir.iterdir()) if films_dir.is_dir() else []:
        if child in importing:
            _interrupted_import(store, importing[child], child, report)
        elif child in film_dirs:
            _unreferenced_files(child, referenced, report, now, min_age_s)
        elif child.is_dir():  # an import killed before its first commit (or an old staging folder)
            (report.busy if staging.is_alive(child, min_age_s) else report.junk).append(child)
        else:
            _sort_by_age(child, report, now, min_age_s)
    if (store.data_dir / "models").is_dir():
        _unreferenced_files(store.data_dir / "models", referenced, report, now, min_age_s)
    uploads = store.data_dir / "uploads"
    for child in sorted(uploads.glob("upload-*")) if uploads.is_dir() else []:
        _sort_by_age(child, report, now, upload_min_age_s, newest_inside=True)
    report.junk = _without_sources(report.junk, sources)
    return report


def _without_sources(junk: list[Path], sources: set[Path]) -> list[Path]:
    """`junk` less every path that is, or holds, a source file referenced in place (stored resolved; a reel
    relinked or copied into the data folder by hand is the user's, not ours to remove)."""
    if not junk or not sources:
        return junk
    roots = [(j, j.resolve()) for j in junk]
    return [j for j, root in roots if not any(src.is_relative_to(root) for src in sources)]


def repair_store(store: Store, report: StoreReport) -> list[Path]:
    """Remove `report.junk` (files and folders no row references); returns what was removed. Rows, and
    the files they reference, are never touched."""
    removed = []
    data_dir = store.data_dir.resolve()
    for path in report.junk:
        if not path.resolve().is_relative_to(data_dir):
            continue  # never outside the store (a user's source frames lie there)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        if not path.exists():
            removed.append(path)
    return removed


def _check_rows(store: Store, report: StoreReport, checksums: bool) -> tuple[set[Path], set[Path]]:
    """(store files the rows reference, source files referenced in place); reports what is missing or
    damaged."""
    referenced: set[Path] = set()
    sources: set[Path] = set()
    with store.session() as s:
        names = dict(s.execute(select(Film.id, Film.name)).all())
        for row in s.execute(select(Frame.id, Frame.film_id, Frame.number, Frame.path, Frame.sha256,
                                    Frame.source_path, Frame.source_size)):
            if row.source_path is None:
                _check_file(store.path(row.path), row.sha256, f"frame {row.id}", report, checksums, referenced)
                continue
            sources.add(Path(row.source_path))  # a user's file: never junk, wherever it lies
            problem = source_problem(SourceRef(Path(row.source_path), row.source_size, row.sha256), checksums)
            if problem is not None:
                (report.missing if problem == "missing" else report.damaged).append(
                    problem_message(names.get(row.film_id, f"#{row.film_id}"), row.number, Path(row.source_path),
                                    problem))
        for table, what in FILE_TABLES:
            for row_id, relative, sha in s.execute(select(table.id, table.path, table.sha256)):
                _check_file(store.path(relative), sha, f"{what} {row_id}", report, checksums, referenced)
    return referenced, sources


def _check_file(path: Path, sha: str, what: str, report: StoreReport, checksums: bool, referenced: set[Path]) -> None:
    referenced.add(path)
    if not path.is_file():
        report.missing.append(f"{path}: missing (the file of {what}); restore it from a backup")
    elif checksums and sha256_file(path) != sha:
        report.damaged.append(f"{path}: checksum mismatch (the file of {what} changed); restore it from a backup")


def _interrupted_import(store: Store, film: Film, folder: Path, report: StoreReport) -> None:
    """An importing film's folder is kept: busy while its import holds the lock, else reported."""
    if staging.is_alive(folder, max_age_s=0.0):  # locked by the live import (age alone proves nothing here)
        report.busy.append(folder)
        return
    done = committed_frames(store, film)
    report.interrupted.append(
        f"film {film.name!r}: its import from {film.source_path} stopped after {done} of {film.frame_count} frames; "
        f"run `{resume_command(film)}` again to resume it (or add --restart to start over)")


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
