"""The Store: one database (SQLite file or PostgreSQL) plus a data directory of PNG files.

    store = Store.open(Settings.from_env())   # creates data_dir, migrates to head
    with store.session() as s: ...            # reads
    with store.write() as s: ...              # one write transaction (BEGIN IMMEDIATE on SQLite)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.engine import BEGIN_IMMEDIATE, is_sqlite, make_engine

if TYPE_CHECKING:
    from studio.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def upgrade_to_head(engine: Engine) -> str:
    """Create or upgrade the schema behind `engine` to the newest migration; returns that revision.

    On SQLite the migration runs inside BEGIN IMMEDIATE, so two processes opening a new store at
    once do not both create the tables (the second waits and then finds the schema at head)."""
    head = head_revision()
    if current_revision(engine) == head:
        return head  # the common case: no write lock taken
    cfg = alembic_config()
    if is_sqlite(str(engine.url)):
        engine = engine.execution_options(**{BEGIN_IMMEDIATE: True})
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
    return head


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "db/migrations/versions holds no migration"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@dataclass
class Store:
    """Database engine + session factories + the directory that holds frame and mask files."""

    engine: Engine
    data_dir: Path
    _read: sessionmaker[Session] = field(init=False, repr=False)
    _write: sessionmaker[Session] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        write_engine = self.engine
        if is_sqlite(str(self.engine.url)):
            write_engine = self.engine.execution_options(**{BEGIN_IMMEDIATE: True})
        self._read = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._write = sessionmaker(bind=write_engine, expire_on_commit=False)

    @classmethod
    def open(cls, settings: "Settings", *, upgrade: bool = True) -> "Store":
        """Open the store described by `settings` (data_dir, resolved_db_url): creates data_dir and, unless
        upgrade=False, migrates the database to the newest schema."""
        return cls.connect(settings.data_dir, settings.resolved_db_url, upgrade=upgrade)

    @classmethod
    def connect(cls, data_dir: str | Path, db_url: str, *, upgrade: bool = True) -> "Store":
        """Open the store at `db_url` with its files under `data_dir` (created), migrated to the newest
        schema unless upgrade=False."""
        data_dir = Path(data_dir).expanduser()
        data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(db_url)
        if upgrade:
            upgrade_to_head(engine)
        return cls(engine=engine, data_dir=data_dir.resolve())

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reading (objects stay usable after it closes). Whatever it wrote is rolled back:
        use write() to change anything."""
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: commits on exit, rolls back on error. On SQLite it starts with
        BEGIN IMMEDIATE, so a read-modify-write inside cannot lose another process's update."""
        with self._write() as session, session.begin():
            yield session

    def path(self, relative: str | Path) -> Path:
        """Absolute path of a file stored under data_dir (absolute paths are returned unchanged)."""
        relative = Path(relative)
        return relative if relative.is_absolute() else self.data_dir / relative

    def close(self) -> None:
        self.engine.dispose()
