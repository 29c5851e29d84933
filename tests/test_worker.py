"""The worker end to end on CPU with a tiny model: a fine-tuning job publishes a version and
re-predicts; failures leave the active model alone with a readable message; cancel; recovery of a
job whose worker died; the CLI parser does not import torch."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from sqlalchemy import select

from correlnet.checkpoint import load_model, save_checkpoint
from db.files import sha256_file
from db.models import Correction, Film, Frame, ModelVersion, Prediction, TrainingJob
from studio import chunks, jobs
from studio.worker import run_job, run_worker
from tests.worker_fixtures import fast_config, make_tiny_film

ROOT = Path(__file__).resolve().parents[1]


def film_row(tf) -> Film:
    with tf.store.session() as s:
        return s.get(Film, tf.film.id)


def versions(tf) -> list[ModelVersion]:
    with tf.store.session() as s:
        return list(s.execute(select(ModelVersion).order_by(ModelVersion.id)).scalars())


def test_finetune_job_end_to_end(tmp_path: Path) -> None:
    tf = make_tiny_film(tmp_path)
    job = jobs.queue_training(tf.store, tf.film.id, force=True)
    assert jobs.get_job(tf.store, job.id).status == "queued"
    assert run_worker(tf.store, tf.settings, once=True, device="cpu", config=fast_config()) == 1
    done = jobs.get_job(tf.store, job.id)
    assert done.status == "succeeded", done.message
    with tf.store.session() as s:
        corrected = set(s.execute(select(Correction.frame_id)).scalars())
        uncorrected = set(s.execute(select(Frame.id).where(Frame.film_id == tf.film.id)).scalars()) - corrected
    assert len(corrected) == 5 and len(uncorrected) == tf.film.frame_count - 5
    # last phase: re-predict the frames without a correction (the restorer's mask is final elsewhere)
    assert (done.step, done.total_steps) == (len(uncorrected), len(uncorrected))
    assert done.started_at <= done.heartbeat_at and done.finished_at >= done.started_at
    assert "published model version" in done.message and done.val_f1 is not None
    start, new = versions(tf)
    assert start.film_id is None and new.film_id == tf.film.id and new.parent_id == start.id
    assert done.result_model_version_id == new.id == film_row(tf).active_model_version_id
    path = tf.store.path(new.path)
    assert sha256_file(path) == new.sha256  # written before the row, complete
    assert new.metrics["train_frames"] + new.metrics["val_frames"] == 5 and new.metrics["steps"] == 2
    # the weights moved away from the start model's
    a, b = load_model(tf.model_path).state_dict(), load_model(path).state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    with tf.store.session() as s:
        predicted = s.execute(select(Prediction.frame_id).where(Prediction.model_version_id == new.id)).scalars().all()
    assert set(predicted) == uncorrected  # exactly the uncorrected frames re-predicted by the new version


def test_predict_job_stores_predictions_and_uncertainty(tmp_path: Path) -> None:
    tf = make_tiny_film(tmp_path, corrected=())
    job = jobs.queue_prediction(tf.store, tf.film.id)
    run_worker(tf.store, tf.settings, once=True, device="cpu", config=fast_config())
    assert jobs.get_job(tf.store, job.id).status == "succeeded"
    with tf.store.session() as s:
        rows = s.execute(select(Prediction)).scalars().all()
        assert len(rows) == tf.film.frame_count
        from db.models import Frame

        frames = s.execute(select(Frame)).scalars().all()
        assert all(f.uncertainty is not None and 0 <= f.uncertainty <= 1 for f in frames)


def test_unreadable_mask_fails_readably_and_keeps_active_model(tmp_path: Path) -> None:
    tf = make_tiny_film(tmp_path)
    from studio.corrections import current_correction

    bad = current_correction(tf.store, tf.frames[2].id)
    tf.store.path(bad.path).write_bytes(b"not a png")
    job = jobs.queue_training(tf.store, tf.film.id, force=True)
    run_worker(tf.store, tf.settings, once=True, device="cpu", config=fast_config())
    row = jobs.get_job(tf.store, job.id)
    assert row.status == "failed"
    assert bad.path.split("/")[-1] in row.message and "checksum" in row.message
    assert film_row(tf).active_model_version_id is None
    assert all(v.film_id is None for v in versions(tf))


def test_nan_loss_fails_readably_and_keeps_active_model(tmp_path: Path) -> None:
    tf = make_tiny_film(tmp_path)
    model = load_model(tf.model_path)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    nan_path = save_checkpoint(tmp_path / "nan.pt", model)
    from studio.versions import register_model_version
    from studio.versions import activate_model_version

    nan_version = register_model_version(tf.store, nan_path, film_id=tf.film.id)
    activate_model_version(tf.store, tf.film.id, nan_version.id)
    job = jobs.queue_training(tf.store, tf.film.id, force=True)
    run_worker(tf.store, tf.settings, once=True, device="cpu", config=fast_config())
    row = jobs.get_job(tf.store, job.id)
    assert row.status == "failed" and "diverged" in row.message and "learning rate" in row.message
    assert film_row(tf).active_model_version_id == nan_version.id
    assert len(versions(tf)) == 1


def test_cancel_stops_a_running_job(tmp_path: Path) -> None:
    tf = make_tiny_film(tmp_path)
    job = jobs.queue_training(tf.store, tf.film.id, force=True)
    claimed = jobs.claim_next_job(tf.store, "w")
    jobs.request_cancel(tf.store, job.id)
    assert run_job(tf.store, claimed, torch.device("cpu"), "w", fast_config(default_model=tf.model_path)) == "cancelled"
    row = jobs.get_job(tf.store, job.id)
    assert row.status == "cancelled" and "cancelled" in row.message and row.result_model_version_id is None
    assert film_row(tf).active_model_version_id is None


def test_cancel_stops_a_running_predict_job_and_keeps_its_frames(tmp_path: Path, monkeypatch) -> None:
    import studio.detection as detection

    tf = make_tiny_film(tmp_path, corrected=())
    job = jobs.queue_prediction(tf.store, tf.film.id)
    claimed = jobs.claim_next_job(tf.store, "w")
    saving, saved = detection._save_prediction, []

    def save_then_cancel_at_the_third(*args, **kwargs):  # the restorer presses cancel while frame 3 is stored
        saving(*args, **kwargs)
        saved.append(1)
        if len(saved) == 3:
            jobs.request_cancel(tf.store, job.id)

    monkeypatch.setattr(detection, "_save_prediction", save_then_cancel_at_the_third)
    cfg = fast_config(default_model=tf.model_path)
    assert run_job(tf.store, claimed, torch.device("cpu"), "w", cfg) == "split"  # 2 chunks of 4 frames
    assert jobs.get_job(tf.store, job.id).status == "running"
    run_worker(tf.store, tf.settings, once=True, device="cpu", worker_id="w", config=cfg)
    row = jobs.get_job(tf.store, job.id)
    assert row.status == "cancelled" and "3 of 8 frame(s) predicted and kept" in row.message
    assert (row.step, row.total_steps) == (3, 8)
    first, second = chunks.list_chunks(tf.store, job.id)
    assert first.status == "cancelled" and "after 3 of 4 frames; those frames are kept" in first.message
    assert second.status == "cancelled" and second.message == "cancelled before it started"
    with tf.store.session() as s:
        assert len(s.execute(select(Prediction)).scalars().all()) == 3 == len(saved)


def test_job_of_a_dead_worker_is_recovered_at_start(tmp_path: Path) -> None:
    tf = make_tiny_film(tmp_path)
    job = jobs.queue_training(tf.store, tf.film.id, force=True)
    jobs.claim_next_job(tf.store, "dead-worker")
    with tf.store.write() as s:  # its last heartbeat was 10 minutes ago
        s.get(TrainingJob, job.id).heartbeat_at = jobs.utcnow() - timedelta(minutes=10)
    run_worker(tf.store, tf.settings, once=True, device="cpu", worker_id="new", config=fast_config())
    row = jobs.get_job(tf.store, job.id)
    assert row.status == "succeeded" and row.worker_id == "new"
    assert "dead-worker" in row.message or "published" in row.message


def test_killed_worker_process_is_recovered(tmp_path: Path) -> None:
    """A real worker process killed mid-job: the next worker re-queues and finishes the job."""
    tf = make_tiny_film(tmp_path)
    job = jobs.queue_training(tf.store, tf.film.id, force=True)
    script = (  # a worker that heartbeats like studio.worker.WorkerJob; no torch import, so it starts fast
        "import sys, time\n"
        "from pathlib import Path\n"
        "from db.store import Store\nfrom studio.settings import Settings\nfrom studio import jobs\n"
        "store = Store.open(Settings(data_dir=Path(sys.argv[1])), upgrade=False)\n"
        "job = jobs.claim_next_job(store, 'doomed')\n"
        "print('running', flush=True)\n"
        "while True:\n"
        "    jobs.report_progress(store, job.id, 'doomed')\n"
        "    time.sleep(0.1)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tf.settings.data_dir)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "running"
    proc.kill()
    proc.wait()
    assert jobs.get_job(tf.store, job.id).status == "running"
    cfg = fast_config(stale_after_seconds=0.5)
    import time

    time.sleep(0.6)
    run_worker(tf.store, tf.settings, once=True, device="cpu", worker_id="heir", config=cfg)
    row = jobs.get_job(tf.store, job.id)
    assert row.status == "succeeded" and row.worker_id == "heir"


def test_cli_registers_without_torch() -> None:
    code = ("import sys, argparse\nfrom studio.commands import worker\n"
            "p = argparse.ArgumentParser(); worker.register(p.add_subparsers())\n"
            "a = p.parse_args(['worker', '--once', '--poll', '0.5', '--device', 'cpu'])\n"
            "assert a.once and a.poll == 0.5 and a.device == 'cpu'\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_stopping_the_worker_requeues_its_job(tmp_path: Path, monkeypatch) -> None:
    tf = make_tiny_film(tmp_path)
    job = jobs.queue_training(tf.store, tf.film.id)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # what SIGTERM / Ctrl-C raise in `correlnet worker`

    monkeypatch.setattr("studio.worker.run_job", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_worker(tf.store, tf.settings, once=True, device="cpu", worker_id="w", config=fast_config())
    row = jobs.get_job(tf.store, job.id)
    assert row.status == "queued" and "stopped" in row.message


def _wait_until(condition, timeout: float = 10.0) -> bool:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_polling_worker_recovers_a_job_whose_worker_died_after_it_started(tmp_path: Path) -> None:
    import threading

    tf = make_tiny_film(tmp_path)
    job = jobs.queue_prediction(tf.store, tf.film.id)
    jobs.claim_next_job(tf.store, "dead-worker")  # fresh heartbeat: alive when the other worker starts
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, args=(tf.store, tf.settings), kwargs=dict(
        device="cpu", worker_id="alive", config=fast_config(stale_after_seconds=0.6), stop=stop))
    thread.start()
    try:
        # dead-worker never beats again; the polling worker must notice and take the job over
        assert _wait_until(lambda: jobs.get_job(tf.store, job.id).status == "succeeded"), jobs.get_job(tf.store, job.id)
    finally:
        stop.set()
        thread.join(30)
    row = jobs.get_job(tf.store, job.id)
    assert row.worker_id == "alive"


def test_a_busy_worker_recovers_other_workers_stale_jobs(tmp_path: Path) -> None:
    from studio.worker import WorkerConfig, WorkerJob
    from tests.test_jobs import make_film

    tf = make_tiny_film(tmp_path)
    other = make_film(tf.store, "other")
    dead = jobs.queue_prediction(tf.store, other)
    jobs.claim_next_job(tf.store, "dead-worker")
    mine = jobs.queue_prediction(tf.store, tf.film.id)
    jobs.claim_next_job(tf.store, "busy")
    cfg = WorkerConfig(heartbeat_seconds=0.05, stale_after_seconds=0.3)
    with WorkerJob(tf.store, mine.id, "busy", cfg):  # a long job is running
        assert _wait_until(lambda: jobs.get_job(tf.store, dead.id).status == "queued", timeout=5)
        assert jobs.get_job(tf.store, mine.id).status == "running"  # its own job keeps beating


def test_stale_after_shorter_than_two_heartbeats_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    from studio.cli import main
    from studio.worker import WorkerConfig

    with pytest.raises(ValueError, match="2 heartbeat periods"):
        WorkerConfig(heartbeat_seconds=10.0, stale_after_seconds=15.0)
    monkeypatch.setenv("CORRELNET_DATA_DIR", str(tmp_path / "data"))
    assert main(["worker", "--once", "--stale-after", "5"]) == 2
    err = capsys.readouterr().err
    assert "--stale-after" in err and "at least 20" in err and "Traceback" not in err


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path: Path):
    """None (SQLite in the data folder) or the URL of a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield None
        return
    import uuid

    from sqlalchemy import create_engine, text

    base = request.getfixturevalue("postgres_url")
    schema = f"test_worker_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.mark.parametrize("seen_by", ["heartbeat", "report"])
def test_the_worker_job_context_sees_a_cancel_from_another_session(tmp_path: Path, db_url, seen_by: str) -> None:
    """The app cancels through its own store (another engine, as another process would); the running
    job's context turns cancelled from its next heartbeat, or its next report, and writes progress."""
    from db.store import Store
    from studio.settings import Settings
    from studio.worker import WorkerConfig, WorkerJob
    from tests.test_jobs import make_film

    settings = Settings(data_dir=tmp_path / "data", db_url=db_url)
    worker_store, app_store = Store.open(settings), Store.open(settings)
    job = jobs.queue_prediction(worker_store, make_film(worker_store))
    jobs.claim_next_job(worker_store, "w")
    beat = 0.05 if seen_by == "heartbeat" else 3600.0  # "report": the heartbeat never runs in the test
    cfg = WorkerConfig(heartbeat_seconds=beat, stale_after_seconds=max(60.0, 2 * beat), progress_every_seconds=3600.0)
    try:
        with WorkerJob(worker_store, job.id, "w", cfg) as context:
            context.report(done=0, total=4, unit="frame")
            assert not context.cancelled
            jobs.request_cancel(app_store, job.id)
            if seen_by == "heartbeat":
                assert _wait_until(lambda: context.cancelled, timeout=10)
            else:
                assert not context.cancelled  # nothing has looked at the row yet
                context.report(done=1, total=4, unit="frame")  # throttled: not written, so not seen
                assert not context.cancelled
                context.report(done=4, total=4, unit="frame", loss=0.25)  # the last one is always written
                assert context.cancelled
        row = jobs.get_job(app_store, job.id)
        assert row.status == "running" and row.cancel_requested
        assert (row.step, row.total_steps) == ((0, 4) if seen_by == "heartbeat" else (4, 4))
        with pytest.raises(ValueError, match="unknown progress field.*step"):
            context.report(step=3)
    finally:
        worker_store.close()
        app_store.close()
