"""Throw-away stores for tests: SQLite in a temporary folder, or a fresh PostgreSQL schema that is
dropped afterwards (so tests never leave tables behind in a shared database)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from db.store import Store


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """Create a uniquely named schema in the database at `url`; yield a URL whose connections use it
    (search_path), and drop the schema with everything in it on exit."""
    schema = f"correlnet_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def temporary_store(data_dir: Path, postgres_url: str | None = None) -> Iterator["Store"]:
    """A migrated Store with its files under `data_dir`: SQLite there, or PostgreSQL in a fresh schema."""
    from db.store import Store

    if postgres_url is None:
        store = Store.connect(data_dir, f"sqlite:///{(Path(data_dir) / 'studio.db').resolve()}")
        try:
            yield store
        finally:
            store.close()
        return
    with postgres_schema(postgres_url) as url:
        store = Store.connect(data_dir, url)
        try:
            yield store
        finally:
            store.close()
