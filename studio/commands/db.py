"""`correlnet db upgrade`: create the store or migrate it to the newest schema (Store.open does the
same on start-up; this command lets an administrator do it explicitly, e.g. before a deploy)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("db", help="create or upgrade the store's database",
                              description="Manage the store (CORRELNET_DATA_DIR, CORRELNET_DB_URL).")
    sub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = sub.add_parser("upgrade", help="create the database or migrate it to the newest schema")
    up.set_defaults(func=run_upgrade)


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
