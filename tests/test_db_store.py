"""The store on SQLite and on PostgreSQL: schema = models, transactions, constraints, timestamps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from db.models import Base, Film, Frame, ModelVersion, Prediction, TrainingJob
from db.store import Store, current_revision, head_revision
from db.testing import temporary_store
from studio.settings import Settings


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    with temporary_store(tmp_path, url) as s:
        yield s


def make_film(s, name="film", frames=2) -> Film:
    film = Film(name=name, source_path="/x", source_sha="0" * 64, width=8, height=4, bit_depth=8, channels=1,
                frame_count=frames, storage_dir=f"films/{name}")
    s.add(film)
    s.flush()
    for i in range(frames):
        s.add(Frame(film_id=film.id, index=i, number=i + 1, path=f"f{i}.png", sha256="1" * 64,
                    prev_index=max(i - 1, 0), next_index=min(i + 1, frames - 1)))
    s.flush()
    return film


def test_migrated_schema_equals_the_models(store):
    # Autogenerate finds nothing to change: the hand-written migration creates exactly db/models.py.
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    assert current_revision(store.engine) == head_revision()
    names = set(inspect(store.engine).get_table_names())
    assert {"films", "frames", "model_versions", "predictions", "corrections", "training_jobs"} <= names


def test_open_again_is_a_no_op_and_keeps_data(store, tmp_path):
    with store.write() as s:
        make_film(s)
    again = Store.open(Settings(data_dir=tmp_path, db_url=store.engine.url.render_as_string(hide_password=False)))
    with again.session() as s:
        assert s.execute(select(Film.name)).scalars().all() == ["film"]
    again.close()


def test_write_commits_and_rolls_back_on_error(store):
    with pytest.raises(RuntimeError):
        with store.write() as s:
            make_film(s, "lost")
            raise RuntimeError("boom")
    with store.write() as s:
        film = make_film(s, "kept")
    with store.session() as s:
        assert s.execute(select(Film.name)).scalars().all() == ["kept"]
    # expire_on_commit=False: the returned object is usable after its session closed.
    assert film.name == "kept" and film.id is not None


def test_constraints_hold(store):
    with store.write() as s:
        film = make_film(s)
    with pytest.raises(IntegrityError):  # film names are unique
        with store.write() as s:
            make_film(s, "film")
    with pytest.raises(IntegrityError):  # frame index unique per film
        with store.write() as s:
            s.add(Frame(film_id=film.id, index=0, number=9, path="x", sha256="2" * 64, prev_index=0, next_index=0))
    with pytest.raises(IntegrityError):  # foreign keys are enforced (SQLite needs PRAGMA foreign_keys)
        with store.write() as s:
            s.add(Frame(film_id=9999, index=0, number=1, path="x", sha256="2" * 64, prev_index=0, next_index=0))
    with store.write() as s:
        frame_id = s.execute(select(Frame.id).where(Frame.film_id == film.id, Frame.index == 0)).scalar_one()
        version = ModelVersion(path="/m.pt", sha256="3" * 64, arch="efficient-correlnet", encoder=None)
        s.add(version)
        s.flush()
        s.add(Prediction(frame_id=frame_id, model_version_id=version.id, path="p.png", sha256="4" * 64,
                         defect_pixels=0, uncertainty=0.0))
    with pytest.raises(IntegrityError):  # one prediction per (frame, model version)
        with store.write() as s:
            s.add(Prediction(frame_id=frame_id, model_version_id=version.id, path="q.png", sha256="5" * 64,
                             defect_pixels=0, uncertainty=0.0))


def test_timestamps_are_aware_utc_on_every_backend(store):
    before = datetime.now(timezone.utc)
    local = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with store.write() as s:
        film = make_film(s)
        job = TrainingJob(film_id=film.id, started_at=local)
        s.add(job)
    with store.session() as s:
        job = s.get(TrainingJob, job.id)
        assert job.created_at.tzinfo is not None and before - timedelta(seconds=5) <= job.created_at
        assert job.started_at == local and job.started_at.utcoffset() == timedelta(0)
        assert job.status == "queued" and job.step == 0 and job.cancel_requested is False


def test_json_columns_round_trip(store):
    config = {"arch": "efficient-correlnet", "max_displacement": 4, "nested": {"a": [1, 2.5, None]}}
    with store.write() as s:
        version = ModelVersion(path="/m.pt", sha256="3" * 64, arch="x", encoder="test_efficientnet",
                               config=config, metrics={"f1": 0.5})
        s.add(version)
    with store.session() as s:
        got = s.get(ModelVersion, version.id)
        assert got.config == config and got.metrics == {"f1": 0.5} and got.note == ""


def test_sqlite_pragmas(tmp_path):
    with temporary_store(tmp_path) as store, store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    assert (tmp_path / "studio.db").is_file()


def test_postgres_schema_is_dropped_afterwards(postgres_url, tmp_path):
    from sqlalchemy import create_engine

    with temporary_store(tmp_path, postgres_url) as store:
        with store.engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar()
        assert schema.startswith("correlnet_test_")
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM information_schema.schemata WHERE schema_name = :s"),
                            {"s": schema}).scalar()
    engine.dispose()
    assert left == 0


def test_downgrade_to_empty_and_upgrade_again(store):
    from alembic import command

    from db.store import alembic_config, upgrade_to_head

    cfg = alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert not {"films", "frames", "corrections"} & set(inspect(store.engine).get_table_names())
    assert upgrade_to_head(store.engine) == head_revision()
    with store.write() as s:
        make_film(s)
