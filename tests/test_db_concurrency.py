"""Two writers never lose an update: store.write() starts SQLite transactions with BEGIN IMMEDIATE.

The first tests show why it is needed, with two connections interleaved by hand:
- pysqlite's default transaction handling reads outside any transaction, so both writers read the
  same value and one increment is lost;
- a plain deferred BEGIN makes the second writer fail with "database is locked";
- BEGIN IMMEDIATE makes the second writer wait and then read the first one's committed value.
The last tests run two real processes doing read-modify-write increments on one row.
"""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from db.engine import make_engine
from db.models import Film, TrainingJob
from tests.process_pair import run_pair
from db.store import Store
from db.testing import temporary_store



def _seed_job(store: Store) -> int:
    with store.write() as s:
        film = Film(name="f", source_path="/x", source_sha="0" * 64, width=1, height=1, bit_depth=8, channels=1,
                    frame_count=0, storage_dir="films/f")
        s.add(film)
        s.flush()
        job = TrainingJob(film_id=film.id)
        s.add(job)
        s.flush()
        return job.id


def _step(session: Session, job_id: int) -> int:
    return session.execute(select(TrainingJob.step).where(TrainingJob.id == job_id)).scalar_one()


def _set_step(session: Session, job_id: int, value: int) -> None:
    session.execute(update(TrainingJob).where(TrainingJob.id == job_id).values(step=value))


def test_without_our_begin_pysqlite_loses_an_update(tmp_path):
    with temporary_store(tmp_path) as store:
        job_id = _seed_job(store)
        plain = create_engine(store.engine.url)  # SQLAlchemy's default pysqlite transaction handling
        with Session(plain) as a, Session(plain) as b:
            seen_a, seen_b = _step(a, job_id), _step(b, job_id)
            _set_step(a, job_id, seen_a + 1)
            a.commit()
            _set_step(b, job_id, seen_b + 1)
            b.commit()
        with store.session() as s:
            assert _step(s, job_id) == 1  # two increments, one survived: the lost update
        plain.dispose()


def test_deferred_begin_fails_the_second_writer(tmp_path):
    with temporary_store(tmp_path) as store:
        job_id = _seed_job(store)
        with store.session() as a, store.session() as b:  # store.session(): plain deferred BEGIN
            seen_a, seen_b = _step(a, job_id), _step(b, job_id)
            _set_step(a, job_id, seen_a + 1)
            a.commit()
            with pytest.raises(OperationalError, match="locked"):
                _set_step(b, job_id, seen_b + 1)


def test_begin_immediate_makes_the_second_writer_wait_and_read_fresh(tmp_path):
    with temporary_store(tmp_path) as store:
        job_id = _seed_job(store)
        seen: list[int] = []
        holding = threading.Event()

        def second_writer() -> None:
            holding.wait()
            with store.write() as s:  # blocks in BEGIN IMMEDIATE until the first writer commits
                seen.append(_step(s, job_id))
                _set_step(s, job_id, seen[-1] + 1)

        thread = threading.Thread(target=second_writer)
        thread.start()
        with store.write() as s:
            value = _step(s, job_id)
            holding.set()
            time.sleep(0.3)
            _set_step(s, job_id, value + 1)
        thread.join(timeout=30)
        with store.session() as s:
            assert seen == [1] and _step(s, job_id) == 2
        # With a short busy timeout the waiting writer gives up instead of reading a stale value.
        quick = Store(make_engine(str(store.engine.url), busy_timeout_s=0.1), tmp_path)
        with store.write() as holder:
            _step(holder, job_id)  # the session begins (BEGIN IMMEDIATE) at its first statement
            with pytest.raises(OperationalError, match="locked"):
                with quick.write() as s:
                    _step(s, job_id)
        quick.close()


WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sqlalchemy import select
    from db.models import TrainingJob
    from db.store import Store
    from studio.settings import Settings
    url, data_dir, job_id, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    store = Store.open(Settings(data_dir=Path(data_dir), db_url=url), upgrade=False)
    Path(sys.argv[6]).touch()
    while not go.exists():
        time.sleep(0.005)
    start = time.time()
    for _ in range(n):
        with store.write() as s:
            # FOR UPDATE is what PostgreSQL needs (READ COMMITTED); SQLite ignores it (BEGIN IMMEDIATE).
            job = s.execute(select(TrainingJob).where(TrainingJob.id == job_id).with_for_update()).scalar_one()
            value = job.step
            time.sleep(0.001)  # widen the read-modify-write window
            job.step = value + 1
    print(start, time.time())
""")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_two_processes_never_lose_an_increment(backend, tmp_path, request):
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    n = 25
    with temporary_store(tmp_path, url) as store:
        job_id = _seed_job(store)
        db_url = store.engine.url.render_as_string(hide_password=False)
        run_pair(WORKER, [[db_url, str(tmp_path), str(job_id), str(n)]] * 2, tmp_path)
        with store.session() as s:
            assert _step(s, job_id) == 2 * n
