"""Engines for the store: SQLite (embedded default) and PostgreSQL (by URL).

SQLite is configured for several processes (web app, worker, CLI) sharing one file:
- WAL journal: readers never block the writer and vice versa.
- busy_timeout: a writer waits for the other writer instead of failing at once.
- foreign keys on (SQLite leaves them off per connection by default).
- Write transactions start with `BEGIN IMMEDIATE`. pysqlite would otherwise run a SELECT outside any
  transaction and only send `BEGIN` before the first UPDATE, so two processes doing a
  read-modify-write would both read the old value and one update would be lost; a plain deferred
  `BEGIN` instead fails the second writer with "database is locked" when it upgrades its read
  snapshot. `BEGIN IMMEDIATE` takes the write lock before the first read, so the second writer waits
  (busy_timeout) and then reads the committed value. tests/test_db_concurrency.py shows all three.
  This is the SQLAlchemy-documented pysqlite recipe: pysqlite's own BEGIN is disabled
  (isolation_level=None) and the "begin" event emits ours.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

BUSY_TIMEOUT_S = 30.0
# Execution option read by the "begin" event: the write engine sets it.
BEGIN_IMMEDIATE = "correlnet_begin_immediate"


def store_url(data_dir: Path, db_url: str | None = None) -> str:
    """The store's URL: `db_url` when given, else the SQLite file studio.db in `data_dir`."""
    return db_url or f"sqlite:///{(Path(data_dir) / 'studio.db').resolve()}"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, busy_timeout_s: float = BUSY_TIMEOUT_S, echo: bool = False) -> Engine:
    """SQLAlchemy engine for `url` (sqlite:///path or postgresql+psycopg://user@host/db).

    On SQLite, `engine.execution_options(**{BEGIN_IMMEDIATE: True})` gives an engine whose
    transactions start with BEGIN IMMEDIATE (Store.write uses it).
    """
    if not is_sqlite(url):
        return create_engine(url, echo=echo, pool_pre_ping=True)
    engine = create_engine(url, echo=echo, connect_args={"timeout": busy_timeout_s})
    _configure_sqlite(engine, busy_timeout_s)
    return engine


def _configure_sqlite(engine: Engine, busy_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see module docstring)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        immediate = connection.get_execution_options().get(BEGIN_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
