"""One film's detection on several workers (issue 16): shot-aligned chunks cover every frame once;
two worker processes share one film on SQLite and PostgreSQL (every frame predicted once, both did
chunks, the detection finished once); a dead worker's chunk is taken over without redoing its frames;
cancel; fine-tuning never runs beside the film's detection; the jobs list shows the chunks' sum."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import func, select

from db.models import Frame, ModelVersion, Prediction, TrainingJob
from db.store import Store
from studio import chunks, jobs
from studio.chunks import ChunkConfig, plan_chunks
from studio.settings import Settings
from tests.test_jobs import make_film

ONE_FRAME_CHUNKS = ChunkConfig(target_chunks=64, min_frames=1, max_frames=1)


# --- planning -----------------------------------------------------------------------------------------------

def test_plan_cuts_at_shots_merges_short_ones_and_splits_long_ones_evenly() -> None:
    # shots of 3, 10, 2, 1 and 9 frames; at most 4 frames a chunk (worked out by hand)
    shots = [0] * 3 + [1] * 10 + [2] * 2 + [3] * 1 + [4] * 9
    todo = list(enumerate(shots))
    assert plan_chunks(todo, 4) == [(0, 2), (3, 6), (7, 9), (10, 12), (13, 15), (16, 18), (19, 21), (22, 24)]
    # frames 4 and 5 already predicted: shot 1 has 8 to do, two pieces of 4; the first range spans the done ones
    holes = [t for t in todo if t[0] not in (4, 5)]
    assert plan_chunks(holes, 4)[1:3] == [(3, 8), (9, 12)]
    assert plan_chunks([], 4) == []
    with pytest.raises(ValueError, match="increase"):
        plan_chunks([(3, 0), (2, 0)], 4)


@pytest.mark.parametrize("seed", range(20))
def test_plan_covers_every_frame_to_do_exactly_once(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    shots = np.cumsum(rng.random(n) < rng.choice([0.01, 0.1, 0.5]))
    todo = [(i, int(shots[i])) for i in range(n) if rng.random() < 0.8]
    size = ChunkConfig(target_chunks=int(rng.integers(1, 30))).frames_per_chunk(len(todo))
    ranges = plan_chunks(todo, size)
    owner = {}  # the naive reference: which range holds each frame to do
    for k, (a, b) in enumerate(ranges):
        assert a <= b and (k == 0 or ranges[k - 1][1] < a)  # ordered, disjoint
        held = [(i, s) for i, s in todo if a <= i <= b]
        assert held and held[0][0] == a and held[-1][0] == b and len(held) <= size
        for i, _ in held:
            owner.setdefault(i, []).append(k)
        shots_held = {s for _, s in held}
        whole = [(i, s) for i, s in todo if s in shots_held]
        if len(shots_held) > 1:  # several shots in one chunk: only whole shots
            assert held == whole
        elif held != whole:  # a cut inside a shot: only where the shot has more to do than one chunk holds
            assert len(whole) > size
    assert sorted(owner) == [i for i, _ in todo] and all(len(v) == 1 for v in owner.values())


def test_chunk_size_aims_at_several_chunks_a_worker() -> None:
    cfg = ChunkConfig()
    assert cfg.frames_per_chunk(40) == 4 and cfg.frames_per_chunk(6400) == 100
    assert cfg.frames_per_chunk(130_000) == 1000  # a feature: 130 chunks
    with pytest.raises(ValueError, match="min_frames"):
        ChunkConfig(min_frames=0)


# --- the queue, on rows only --------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path: Path):
    """None (SQLite in the data folder) or the URL of a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield None
        return
    from db.testing import postgres_schema

    with postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture
def store(tmp_path: Path, db_url) -> Store:
    st = Store.open(Settings(data_dir=tmp_path / "data", db_url=db_url))
    yield st
    st.close()


def _version(store: Store) -> int:
    with store.write() as s:
        v = ModelVersion(path="/models/x.pt", sha256="0" * 64, arch="tiny", encoder=None, config={}, metrics={})
        s.add(v)
        s.flush()
        return v.id


def _split(store: Store, film: int, ranges: list[tuple[int, int]]) -> tuple[TrainingJob, int]:
    """Queue and claim the film's detection, split it into `ranges`; returns (parent, version id)."""
    parent = jobs.queue_prediction(store, film)
    assert jobs.claim_next_job(store, "splitter").id == parent.id
    version = _version(store)
    total = sum(b - a + 1 for a, b in ranges)
    assert chunks.split_job(store, parent.id, version, ranges, total) == len(ranges)
    return parent, version


def _predict_rows(store: Store, film: int, version: int, indices) -> None:
    with store.write() as s:
        for frame in s.execute(select(Frame).where(Frame.film_id == film, Frame.index.in_(list(indices)))).scalars():
            s.add(Prediction(frame_id=frame.id, model_version_id=version, path="p.png", sha256="0" * 64,
                             defect_pixels=0, uncertainty=0.5))


def test_split_is_idempotent_under_two_racing_workers(store: Store) -> None:
    film = make_film(store, frames=8)
    parent = jobs.queue_prediction(store, film)
    jobs.claim_next_job(store, "w")
    version, ranges = _version(store), [(0, 3), (4, 7)]
    barrier, counts = threading.Barrier(2), []

    def split() -> None:
        barrier.wait()
        counts.append(chunks.split_job(store, parent.id, version, ranges, 8))

    threads = [threading.Thread(target=split) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert counts == [2, 2]
    rows = chunks.list_chunks(store, parent.id)
    assert [(c.first_index, c.last_index, c.status) for c in rows] == [(0, 3, "queued"), (4, 7, "queued")]
    assert jobs.get_job(store, parent.id).model_version_id == version


def test_chunks_of_a_running_detection_go_to_any_worker_and_fine_tuning_waits(store: Store) -> None:
    film = make_film(store, frames=8)
    parent, version = _split(store, film, [(0, 3), (4, 7)])
    finetune = jobs.queue_training(store, film)
    a, b = jobs.claim_next_job(store, "w1"), jobs.claim_next_job(store, "w2")
    assert (a.kind, b.kind) == ("predict_chunk", "predict_chunk") and {a.first_index, b.first_index} == {0, 4}
    assert jobs.claim_next_job(store, "w3") is None  # the film's detection runs: no fine-tuning beside it
    _predict_rows(store, film, version, range(8))
    assert chunks.finish_chunk(store, a.id, "w1", "succeeded", "ok") is None  # not the last
    assert jobs.claim_next_job(store, "w3") is None
    done = chunks.finish_chunk(store, b.id, "w2", "succeeded", "ok")
    assert done.id == parent.id and done.status == "succeeded" and "by 2 worker(s)" in done.message
    assert chunks.finish_chunk(store, b.id, "w2", "succeeded", "ok") is None  # the parent finishes once
    row = jobs.get_job(store, parent.id)
    assert (row.status, row.step, row.total_steps) == ("succeeded", 8, 8) and row.finished_at is not None
    assert jobs.claim_next_job(store, "w3").id == finetune.id


def test_a_running_fine_tuning_holds_back_the_films_detection(store: Store) -> None:
    film = make_film(store, frames=8)
    jobs.queue_training(store, film)
    jobs.claim_next_job(store, "w1")
    jobs.queue_prediction(store, film)
    assert jobs.claim_next_job(store, "w2") is None


def test_jobs_list_hides_chunks_and_sums_their_progress(store: Store) -> None:
    film = make_film(store, frames=8)
    _predict_rows(store, film, _version(store), [7])  # another version's prediction does not count
    parent, version = _split(store, film, [(0, 3), (4, 7)])
    jobs.claim_next_job(store, "w1")
    _predict_rows(store, film, version, [0, 1, 2])
    [row] = jobs.list_jobs(store, film)
    assert row.id == parent.id and (row.step, row.total_steps) == (3, 8)
    assert row.message == "0 of 2 chunk(s) done, 1 running on 1 worker(s)" and row.eta_seconds is not None
    assert jobs.get_job(store, parent.id).step == 0  # shown, not written


def test_cancel_on_the_parent_cancels_queued_chunks_and_stops_running_ones(store: Store) -> None:
    film = make_film(store, frames=9)
    parent, version = _split(store, film, [(0, 2), (3, 5), (6, 8)])
    running = jobs.claim_next_job(store, "w1")
    jobs.request_cancel(store, parent.id)
    assert jobs.get_job(store, parent.id).status == "running"  # until its running chunk stops
    states = {c.id: (c.status, c.cancel_requested) for c in chunks.list_chunks(store, parent.id)}
    assert states.pop(running.id) == ("running", True)
    assert set(states.values()) == {("cancelled", False)}
    assert jobs.claim_next_job(store, "w2") is None
    assert jobs.report_progress(store, running.id, "w1", step=1) is True  # the worker learns of it
    _predict_rows(store, film, version, [0])
    done = chunks.finish_chunk(store, running.id, "w1", "cancelled", "cancelled after 1 of 3 frames")
    assert done.status == "cancelled" and "1 of 9 frame(s) predicted and kept" in done.message


def test_a_stopped_worker_gives_its_chunk_back_unless_the_detection_was_cancelled(store: Store) -> None:
    film = make_film(store, frames=8)
    parent, _ = _split(store, film, [(0, 3), (4, 7)])
    first = jobs.claim_next_job(store, "w1")
    jobs.release_job(store, parent.id, "splitter", "worker splitter was stopped")  # split: the chunks' now
    assert jobs.get_job(store, parent.id).status == "running"
    jobs.release_job(store, first.id, "w1", "worker w1 was stopped")
    assert jobs.get_job(store, first.id).status == "queued"
    assert jobs.claim_next_job(store, "w2").id == first.id
    jobs.request_cancel(store, parent.id)
    jobs.release_job(store, first.id, "w2", "worker w2 was stopped")  # a re-queued chunk would never run
    assert jobs.get_job(store, first.id).status == "cancelled"
    assert jobs.get_job(store, parent.id).status == "cancelled"


def test_cancel_before_the_split_inserts_no_chunks(store: Store) -> None:
    film = make_film(store, frames=4)
    parent = jobs.queue_prediction(store, film)
    jobs.claim_next_job(store, "w")
    jobs.request_cancel(store, parent.id)
    assert chunks.split_job(store, parent.id, _version(store), [(0, 3)], 4) is None
    assert chunks.list_chunks(store, parent.id) == []


def test_a_chunk_whose_workers_die_twice_fails_the_detection(store: Store) -> None:
    film = make_film(store, frames=8)
    parent, version = _split(store, film, [(0, 3), (4, 7)])
    doomed = jobs.claim_next_job(store, "dead")
    jobs.recover_stale_jobs(store, timedelta(minutes=5), now=jobs.utcnow() + timedelta(minutes=10))
    assert jobs.get_job(store, parent.id).status == "running"  # no heartbeat of its own, yet not recovered
    assert jobs.claim_next_job(store, "dead-again").id == doomed.id
    other = jobs.claim_next_job(store, "alive")
    _predict_rows(store, film, version, range(4, 8))
    assert chunks.finish_chunk(store, other.id, "alive", "succeeded", "ok") is None
    jobs.recover_stale_jobs(store, timedelta(minutes=5), now=jobs.utcnow() + timedelta(minutes=20))
    row = jobs.get_job(store, parent.id)
    assert row.status == "failed" and "1 of 2 chunk(s) failed" in row.message and "twice" in row.message
    assert "4 of 8 frame(s) predicted and kept" in row.message


# --- real detection with a tiny model -----------------------------------------------------------------------

def _tiny_film(tmp_path: Path, db_url: str | None):
    from tests.worker_fixtures import make_tiny_film

    tf = make_tiny_film(tmp_path, corrected=(), db_url=db_url)
    return tf.store, tf.settings, tf.film


def _predictions_per_frame(store: Store, film_id: int) -> dict[int, int]:
    with store.session() as s:
        counts = dict(s.execute(select(Frame.index, func.count(Prediction.id)).outerjoin(
            Prediction, Prediction.frame_id == Frame.id).where(Frame.film_id == film_id).group_by(Frame.index)).all())
    return counts


def _worker_process(data_dir: str, db_url: str | None, model: str, worker_id: str, parent_id: int, log: str) -> None:
    """One worker process (spawned): runs chunks until the detection ends. Its first chunk waits until the
    other worker has claimed one too, so both do work however the OS schedules them (no timing)."""
    import studio.chunks
    import studio.detection
    import studio.worker
    from studio.worker import WorkerConfig, run_worker, stop_when_finished

    settings = Settings(data_dir=Path(data_dir), db_url=db_url, device="cpu", default_model=Path(model))
    store = Store.open(settings, upgrade=False)
    saved, finished = [], []
    save, run_chunk, finish = studio.detection._save_prediction, studio.worker.run_chunk, studio.chunks.finish_chunk

    def logged_save(store_, film, frame, *args, **kwargs):
        save(store_, film, frame, *args, **kwargs)
        saved.append(frame.index)

    def first_waits(store_, job_row, *args, **kwargs):
        end = time.monotonic() + 60
        while not saved and time.monotonic() < end and len({c.worker_id for c in chunks.list_chunks(store, parent_id)
                                                            if c.worker_id}) < 2:
            time.sleep(0.02)
        return run_chunk(store_, job_row, *args, **kwargs)

    def counted_finish(*args, **kwargs):
        parent = finish(*args, **kwargs)
        finished.append(parent is not None)
        return parent

    studio.detection._save_prediction, studio.worker.run_chunk = logged_save, first_waits
    studio.chunks.finish_chunk = counted_finish
    cfg = WorkerConfig(poll_seconds=0.05, heartbeat_seconds=0.5, chunks=ONE_FRAME_CHUNKS)
    run_worker(store, settings, device="cpu", worker_id=worker_id, config=cfg,
               stop=stop_when_finished(store, parent_id))
    Path(log).write_text(json.dumps({"saved": saved, "finished_parent": sum(finished)}))
    store.close()


def test_two_worker_processes_share_one_film(tmp_path: Path, db_url) -> None:
    store, settings, film = _tiny_film(tmp_path, db_url)
    parent = jobs.queue_prediction(store, film.id)
    ctx = multiprocessing.get_context("spawn")
    logs = [tmp_path / f"w{k}.json" for k in range(2)]
    procs = [ctx.Process(target=_worker_process, args=(str(settings.data_dir), db_url, str(settings.default_model),
                                                       f"w{k}", parent.id, str(logs[k]))) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    row = jobs.get_job(store, parent.id)
    assert row.status == "succeeded" and "by 2 worker(s)" in row.message, row.message
    assert (row.step, row.total_steps) == (film.frame_count, film.frame_count)
    rows = chunks.list_chunks(store, parent.id)
    assert len(rows) == film.frame_count and {c.status for c in rows} == {"succeeded"}
    assert {c.worker_id for c in rows} == {"w0", "w1"}  # both did chunks
    results = [json.loads(log.read_text()) for log in logs]
    saved = sorted(i for r in results for i in r["saved"])
    assert saved == list(range(film.frame_count))  # every frame computed once, by one of the two
    assert _predictions_per_frame(store, film.id) == dict.fromkeys(range(film.frame_count), 1)
    assert sum(r["finished_parent"] for r in results) == 1  # exactly one chunk ended the detection
    with store.session() as s:
        assert all(f.uncertainty is not None for f in s.execute(select(Frame)).scalars())
    store.close()


def test_a_dead_workers_chunk_is_taken_over_without_redoing_its_frames(tmp_path: Path, db_url, monkeypatch) -> None:
    import studio.detection as detection
    from studio.worker import WorkerConfig, run_job, run_worker

    store, settings, film = _tiny_film(tmp_path, db_url)
    parent = jobs.queue_prediction(store, film.id)
    cfg = WorkerConfig(poll_seconds=0.05, heartbeat_seconds=0.2, stale_after_seconds=0.5,
                       chunks=ChunkConfig(min_frames=4, max_frames=4))
    assert run_job(store, jobs.claim_next_job(store, "splitter"), torch.device("cpu"), "splitter", cfg) == "split"
    doomed = jobs.claim_next_job(store, "dead")  # claims frames 0-3, stores two of them, then dies
    assert (doomed.first_index, doomed.last_index) == (0, 3)
    with store.session() as s:
        version = s.get(ModelVersion, doomed.model_version_id)
    detection.detect_film(store, film, version, device="cpu", frame_indices=[0, 1])
    with store.session() as s:
        before = set(s.execute(select(Prediction.id)).scalars())
    with store.write() as s:  # neither the chunk nor the split parent has beaten for 10 minutes
        for job_id in (doomed.id, parent.id):
            s.get(TrainingJob, job_id).heartbeat_at = jobs.utcnow() - timedelta(minutes=10)
    saving, saved = detection._save_prediction, []

    def logged(store_, film_, frame, *args, **kwargs):
        saving(store_, film_, frame, *args, **kwargs)
        saved.append(frame.index)

    monkeypatch.setattr(detection, "_save_prediction", logged)
    run_worker(store, settings, once=True, device="cpu", worker_id="heir", config=cfg)
    assert sorted(saved) == [2, 3, 4, 5, 6, 7]  # the dead worker's two frames are not predicted again
    assert _predictions_per_frame(store, film.id) == dict.fromkeys(range(8), 1)
    with store.session() as s:
        assert before <= set(s.execute(select(Prediction.id)).scalars())  # its rows kept
    taken = jobs.get_job(store, doomed.id)
    assert taken.status == "succeeded" and taken.worker_id == "heir" and "(2 already done)" in taken.message
    row = jobs.get_job(store, parent.id)
    assert row.status == "succeeded" and row.step == 8 and "re-queued" not in row.message
    store.close()
