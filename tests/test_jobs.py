"""The job queue: no duplicates, atomic claims (two processes, SQLite and PostgreSQL), one running
job per film, cancel, stale-heartbeat recovery, and the automatic retrain trigger."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from db.models import Correction, Film, Frame, TrainingJob
from db.store import Store
from studio import jobs
from studio.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def make_film(store: Store, name: str = "film", frames: int = 4, shots: tuple[int, ...] | None = None) -> int:
    """A film row with `frames` frame rows (no files: the queue never reads them)."""
    with store.write() as s:
        film = Film(name=name, source_path="/nowhere", source_sha=uuid.uuid4().hex, width=64, height=48,
                    bit_depth=8, channels=1, frame_count=frames, status="ready", storage_dir=f"films/{name}")
        s.add(film)
        s.flush()
        for i in range(frames):
            s.add(Frame(film_id=film.id, index=i, number=i + 1, path=f"films/{name}/{i}.png", sha256="0" * 64,
                        prev_index=max(i - 1, 0), next_index=min(i + 1, frames - 1),
                        shot=shots[i] if shots else 0))
        return film.id


def add_correction(store: Store, film_id: int, index: int, dice: float | None = None) -> None:
    """A correction row; dice = its Dice against the proposal (1.0: accepted as is, None: no proposal)."""
    with store.write() as s:
        frame = s.query(Frame).filter_by(film_id=film_id, index=index).one()
        s.add(Correction(frame_id=frame.id, path="x.png", sha256="0" * 64, author="test", dice_vs_prediction=dice))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    st = Store.open(Settings(data_dir=tmp_path / "data"))
    yield st
    st.close()


def test_queue_has_no_duplicates_and_force_upgrades(store: Store) -> None:
    film = make_film(store)
    a = jobs.queue_training(store, film)
    b = jobs.queue_training(store, film, force=True)
    assert a.id == b.id and b.force_publish
    p = jobs.queue_prediction(store, film)
    assert p.id != a.id and p.kind == "predict"
    assert [j.id for j in jobs.list_jobs(store, film)] == [p.id, a.id]
    with pytest.raises(jobs.JobError, match="film list"):
        jobs.queue_training(store, 999)
    with pytest.raises(jobs.JobError, match="kind"):
        jobs.queue_job(store, film, "dance")


def test_claim_order_and_one_running_job_per_film(store: Store) -> None:
    f1, f2 = make_film(store, "a"), make_film(store, "b")
    j1 = jobs.queue_training(store, f1)
    j2 = jobs.queue_prediction(store, f1)
    j3 = jobs.queue_training(store, f2)
    first = jobs.claim_next_job(store, "w1")
    second = jobs.claim_next_job(store, "w2")
    assert (first.id, second.id) == (j1.id, j3.id)  # j2 waits: film a already has a running job
    assert first.status == "running" and first.worker_id == "w1" and first.heartbeat_at is not None
    assert jobs.claim_next_job(store, "w3") is None
    jobs.finish_job(store, j1.id, "w1", "succeeded", "ok")
    assert jobs.claim_next_job(store, "w3").id == j2.id


def test_progress_heartbeat_and_cancel(store: Store) -> None:
    film = make_film(store)
    queued = jobs.queue_prediction(store, film)
    assert jobs.request_cancel(store, queued.id).status == "cancelled"  # queued: cancelled at once
    job = jobs.queue_training(store, film)
    claimed = jobs.claim_next_job(store, "w")
    assert claimed.id == job.id
    assert jobs.report_progress(store, job.id, "w", step=3, total_steps=10, loss=0.5, eta_seconds=7.0) is False
    jobs.request_cancel(store, job.id)
    assert jobs.report_progress(store, job.id, "w", step=4) is True
    row = jobs.get_job(store, job.id)
    assert (row.step, row.total_steps, row.loss, row.status) == (4, 10, 0.5, "running")
    assert row.heartbeat_at > claimed.heartbeat_at
    with pytest.raises(jobs.JobError, match="no longer"):
        jobs.report_progress(store, job.id, "another-worker", step=5)


def test_stale_job_is_requeued_once_then_failed(store: Store) -> None:
    film = make_film(store)
    job = jobs.queue_training(store, film)
    jobs.claim_next_job(store, "dead")
    later = jobs.utcnow() + timedelta(minutes=10)
    assert jobs.recover_stale_jobs(store, timedelta(minutes=5)) == []  # fresh heartbeat: left alone
    [recovered] = jobs.recover_stale_jobs(store, timedelta(minutes=5), now=later)
    row = jobs.get_job(store, job.id)
    assert row.status == "queued" and row.worker_id is None and "dead" in row.message
    assert jobs.claim_next_job(store, "second").id == job.id
    jobs.recover_stale_jobs(store, timedelta(minutes=5), now=jobs.utcnow() + timedelta(minutes=20))
    row = jobs.get_job(store, job.id)
    assert row.status == "failed" and "twice" in row.message and row.finished_at is not None


def test_only_the_owning_worker_finishes_a_running_job(store: Store) -> None:
    film = make_film(store)
    job = jobs.queue_training(store, film)
    with pytest.raises(jobs.JobError, match="no longer run by worker w1"):
        jobs.finish_job(store, job.id, "w1", "succeeded", "too early")  # queued: nobody's yet
    jobs.claim_next_job(store, "slow")
    jobs.recover_stale_jobs(store, timedelta(minutes=5), now=jobs.utcnow() + timedelta(minutes=10))
    assert jobs.claim_next_job(store, "heir").id == job.id  # the slow worker's job is the heir's now
    with pytest.raises(jobs.JobError, match="no longer run by worker slow"):
        jobs.finish_job(store, job.id, "slow", "succeeded", "published by the slow one", result_model_version_id=7)
    row = jobs.get_job(store, job.id)
    assert (row.status, row.worker_id, row.result_model_version_id, row.finished_at) == ("running", "heir", None, None)
    assert "slow one" not in (row.message or "")
    done = jobs.finish_job(store, job.id, "heir", "failed", "the heir's end")
    assert (done.status, done.message) == ("failed", "the heir's end")
    with pytest.raises(jobs.JobError, match="no longer run"):  # finished: not even its owner finishes it twice
        jobs.finish_job(store, job.id, "heir", "succeeded", "again")
    assert jobs.get_job(store, job.id).status == "failed"


def test_retrain_trigger_after_n_corrections(store: Store) -> None:
    film = make_film(store, frames=8)
    settings = Settings(retrain_after=3)
    for i in range(2):
        add_correction(store, film, i)
        assert jobs.maybe_queue_after_correction(store, film, settings) is None
    add_correction(store, film, 2)
    job = jobs.maybe_queue_after_correction(store, film, settings)
    assert job is not None and job.kind == "finetune"
    assert jobs.claim_next_job(store, "w").id == job.id
    jobs.finish_job(store, job.id, "w", "succeeded")
    add_correction(store, film, 3)  # counting restarts after the last fine-tuning job
    assert jobs.corrections_since_last_finetune(store, film) == 1
    assert jobs.maybe_queue_after_correction(store, film, settings) is None
    assert jobs.maybe_queue_after_correction(store, film, Settings(retrain_after=0)) is None


def test_accepted_as_is_corrections_do_not_trigger_a_retrain(store: Store) -> None:
    film = make_film(store, frames=8)
    settings = Settings(retrain_after=2)
    for i in range(4):
        add_correction(store, film, i, dice=1.0)  # accepted as is: the model's own proposal
    assert jobs.corrections_since_last_finetune(store, film) == 0
    assert jobs.maybe_queue_after_correction(store, film, settings) is None
    add_correction(store, film, 4, dice=0.8)  # edited
    assert jobs.maybe_queue_after_correction(store, film, settings) is None
    add_correction(store, film, 5, dice=0.95)
    assert jobs.corrections_since_last_finetune(store, film) == 2
    assert jobs.maybe_queue_after_correction(store, film, settings) is not None


CLAIM_SCRIPT = """
import json, sys
from db.store import Store
from studio.settings import Settings
from studio import jobs
from pathlib import Path
store = Store.open(Settings(data_dir=Path(sys.argv[1]), db_url=sys.argv[2] or None), upgrade=False)
print("ready", flush=True)
sys.stdin.readline()  # start both claimers together
got = []
while (job := jobs.claim_next_job(store, sys.argv[3])) is not None:
    got.append(job.id)
print(json.dumps(got))
"""


def _claim_in_two_processes(data_dir: Path, db_url: str) -> list[list[int]]:
    procs = [subprocess.Popen([sys.executable, "-c", CLAIM_SCRIPT, str(data_dir), db_url, f"w{i}"], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs


def _check_claims(store: Store, claims: list[list[int]], expected: set[int]) -> None:
    a, b = claims
    assert not set(a) & set(b), f"both workers claimed {set(a) & set(b)}"
    assert set(a) | set(b) == expected
    with store.session() as s:
        rows = s.query(TrainingJob).all()
        running = [j for j in rows if j.status == "running"]
        assert len({j.film_id for j in running}) == len(running)  # one running job per film
        assert {j.worker_id for j in running} <= {"w0", "w1"}


def _queue_many(store: Store) -> set[int]:
    """8 films x (finetune, predict): only one job per film may run, so 8 claims in total."""
    first = set()
    for k in range(8):
        film = make_film(store, f"f{k}")
        first.add(jobs.queue_training(store, film).id)
        jobs.queue_prediction(store, film)
    return first


def test_two_processes_never_claim_the_same_job_sqlite(store: Store, tmp_path: Path) -> None:
    expected = _queue_many(store)
    claims = _claim_in_two_processes(store.data_dir, "")
    _check_claims(store, claims, expected)


@pytest.mark.postgres
def test_two_processes_never_claim_the_same_job_postgres(postgres_url: str, tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    schema = f"test_jobs_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in postgres_url else "?"
    url = f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
    try:
        st = Store.open(Settings(data_dir=tmp_path / "data", db_url=url))
        expected = _queue_many(st)
        claims = _claim_in_two_processes(st.data_dir, url)
        _check_claims(st, claims, expected)
        st.close()
    finally:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_release_gives_the_job_back_only_to_its_owner(store: Store) -> None:
    film = make_film(store)
    job = jobs.queue_training(store, film)
    jobs.claim_next_job(store, "w1")
    jobs.release_job(store, job.id, "someone-else", "stopped")
    assert jobs.get_job(store, job.id).status == "running"
    jobs.release_job(store, job.id, "w1", "worker w1 was stopped")
    row = jobs.get_job(store, job.id)
    assert row.status == "queued" and row.worker_id is None and "w1 was stopped" in row.message
