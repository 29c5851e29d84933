"""`correlnet db upgrade`: create the store or migrate it to the newest schema (Store.open does the
same on start-up; this command lets an administrator do it explicitly, e.g. before a deploy).
`correlnet db check [--repair] [--checksums]`: compare the store's files with its rows
(studio/store_check.py) and, with --repair, remove what no row references."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("db", help="create or upgrade the store's database",
                              description="Manage the store (CORRELNET_DATA_DIR, CORRELNET_DB_URL).")
    sub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = sub.add_parser("upgrade", help="create the database or migrate it to the newest schema")
    up.set_defaults(func=run_upgrade)
    check = sub.add_parser(
        "check", help="report missing files and leftovers of killed imports, detections and uploads",
        description="Compare the store's files with its rows: rows whose file is missing (or, with --checksums, "
        "changed), and files no row references (a staging folder of a killed import, a film folder never "
        "committed, prediction and model files written just before a kill, .tmp files, old upload folders). "
        "Exit status 0 when the store is clean, 1 when something is left to fix.")
    check.add_argument("--repair", action="store_true",
                       help="remove the files and folders no row references (never a referenced file)")
    check.add_argument("--checksums", action="store_true", help="also re-hash every stored file (slow)")
    check.add_argument("--min-age", type=float, default=None, metavar="SECONDS",
                       help="leave unreferenced files and folders younger than this alone: a live process may be "
                       "writing them (default 3600, and a day for upload folders)")
    check.set_defaults(func=run_check)


def run_upgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from db.store import Store, current_revision, upgrade_to_head
    from studio.cli import CliError
    from studio.settings import Settings

    settings = Settings.from_env()
    try:
        store = Store.open(settings, upgrade=False)
        before = current_revision(store.engine)
        after = upgrade_to_head(store.engine)
        store.close()
    except (SQLAlchemyError, OSError, ValueError) as exc:
        raise CliError(f"cannot upgrade the store at {settings.resolved_db_url}: {exc}") from exc
    url = store.engine.url.render_as_string(hide_password=True)
    if before == after:
        print(f"store {url} is up to date (schema revision {after})")
    else:
        print(f"store {url} upgraded from schema revision {before or 'none (new store)'} to {after}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from db.store import Store
    from studio.cli import CliError
    from studio.settings import Settings
    from studio.store_check import check_store, repair_store

    if args.min_age is not None and args.min_age < 0:
        raise CliError(f"--min-age must be 0 or more seconds, got {args.min_age}")
    ages = {} if args.min_age is None else {"min_age_s": args.min_age, "upload_min_age_s": args.min_age}
    settings = Settings.from_env()
    try:
        store = Store.open(settings)
        report = check_store(store, checksums=args.checksums, **ages)
    except (SQLAlchemyError, OSError) as exc:
        raise CliError(f"cannot check the store at {settings.resolved_db_url} ({settings.data_dir}): {exc}") from exc
    for line in report.missing + report.damaged + report.interrupted:
        print(line)
    removed = repair_store(store, report) if args.repair else []
    for path in report.junk:
        print(f"{path}: {'removed' if path in removed else 'no row references it (--repair removes it)'}")
    for path in report.busy:
        print(f"{path}: no row references it yet, but it may be in use (younger than --min-age, or locked): kept")
    left = len(report.missing) + len(report.damaged) + len(report.interrupted) + len(report.junk) - len(removed)
    print(f"store {settings.data_dir}: {len(report.missing)} missing, {len(report.damaged)} damaged, "
          f"{len(report.junk)} unreferenced ({len(removed)} removed), {len(report.busy)} in use"
          + (f", {len(report.interrupted)} interrupted import(s)" if report.interrupted else ""))
    store.close()
    return 1 if left else 0
