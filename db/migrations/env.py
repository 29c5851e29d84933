"""Alembic environment: runs migrations on the connection Store passes in
(config.attributes["connection"]), or, when Alembic is run by hand, on the store named by
CORRELNET_DB_URL / CORRELNET_DATA_DIR (the same rule as the app's settings, `db.engine.store_url`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from db.models import Base

target_metadata = Base.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    if connection.dialect.name == "postgresql":
        # Two processes opening a new PostgreSQL store at once: the second waits for the first.
        connection.execute(text("SELECT pg_advisory_xact_lock(72650427)"))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    import os
    from pathlib import Path

    from db.engine import make_engine, store_url

    data_dir = Path(os.environ.get("CORRELNET_DATA_DIR", "data")).expanduser()
    engine = make_engine(store_url(data_dir, os.environ.get("CORRELNET_DB_URL") or None))
    with engine.begin() as connection:
        _run(connection)


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `correlnet db upgrade`")
run_migrations_online()
