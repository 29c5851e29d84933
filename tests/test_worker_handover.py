"""A worker that lost its job (recovered as stale, re-claimed by another) neither finishes nor publishes
it; a failing review-order refresh after a detection leaves the job succeeded and the worker running."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import select

import studio.detection as detection
import studio.worker as worker
from correlnet.job_context import JobContext
from db.models import Film, ModelVersion
from studio import jobs
from studio.chunks import list_chunks
from studio.finetune import FinetuneConfig, run_finetune
from studio.worker import run_job, run_worker
from tests.worker_fixtures import fast_config, make_tiny_film


def _take_over(store: Any, job_id: int) -> None:
    """What another worker does to a job whose worker stopped beating: recover it, claim it as "heir"."""
    jobs.recover_stale_jobs(store, timedelta(minutes=5), now=jobs.utcnow() + timedelta(minutes=10))
    assert jobs.claim_next_job(store, "heir").id == job_id


class _TakenOverBeforePublishing(JobContext):
    """A job context under which the job is taken over after training, once its last report is written
    (at the cancel check just before publishing)."""

    def __init__(self, store: Any, job_id: int):
        self._store, self._job_id = store, job_id

    def raise_if_cancelled(self, message: str) -> None:
        if "after training" in message:
            _take_over(self._store, self._job_id)


def test_a_fine_tuning_that_lost_its_job_publishes_nothing(tmp_path: Path) -> None:
    tf = make_tiny_film(tmp_path)
    job = jobs.queue_training(tf.store, tf.film.id, force=True)  # would publish whatever the gate says
    claimed = jobs.claim_next_job(tf.store, "slow")
    with pytest.raises(jobs.JobError, match="no longer run by worker slow"):
        run_finetune(tf.store, claimed, torch.device("cpu"), FinetuneConfig.cpu(steps=2, batch_size=2, crop=32),
                     _TakenOverBeforePublishing(tf.store, job.id), tf.model_path)
    with tf.store.session() as s:
        assert s.execute(select(ModelVersion).where(ModelVersion.film_id == tf.film.id)).scalars().all() == []
        assert s.get(Film, tf.film.id).active_model_version_id is None
    assert list((tf.store.data_dir / "models").rglob("*.pt")) == []  # the checkpoint no row points to is gone
    row = jobs.get_job(tf.store, job.id)
    assert (row.status, row.worker_id) == ("running", "heir")


def test_a_worker_that_lost_its_job_leaves_it_to_the_new_owner(tmp_path: Path, monkeypatch) -> None:
    tf = make_tiny_film(tmp_path)
    job = jobs.queue_training(tf.store, tf.film.id)
    claimed = jobs.claim_next_job(tf.store, "slow")

    def slow_run(store, job_row, *args):  # the job ends on the slow worker after the heir took it
        _take_over(store, job_row.id)
        return "succeeded", "the slow worker's verdict", None

    monkeypatch.setattr(worker, "_execute", slow_run)
    assert run_job(tf.store, claimed, torch.device("cpu"), "slow", fast_config()) == "lost"
    row = jobs.get_job(tf.store, job.id)
    assert (row.status, row.worker_id, row.finished_at) == ("running", "heir", None)
    assert "slow worker's verdict" not in (row.message or "")


def test_a_failing_review_order_refresh_leaves_the_detection_succeeded_and_the_worker_running(
        tmp_path: Path, monkeypatch) -> None:
    tf = make_tiny_film(tmp_path, corrected=())
    first = jobs.queue_prediction(tf.store, tf.film.id)
    refresh, queued = detection.refresh_review_order, []

    def refresh_fails_once(store, film_id, version_id):
        if not queued:  # the first refresh, after the detection succeeded: queue more work, then fail
            queued.append(jobs.queue_prediction(store, film_id))
            raise RuntimeError("database is locked")
        return refresh(store, film_id, version_id)

    monkeypatch.setattr(detection, "refresh_review_order", refresh_fails_once)
    ran = run_worker(tf.store, tf.settings, once=True, device="cpu", worker_id="w", config=fast_config())
    row = jobs.get_job(tf.store, first.id)
    assert row.status == "succeeded" and "by 1 worker(s)" in row.message, row.message
    assert "review order was not refreshed" in row.message and "database is locked" in row.message
    assert "queue detection again" in row.message
    again = jobs.get_job(tf.store, queued[0].id)  # the worker went on with the next job
    assert again.status == "succeeded" and again.message.startswith("predicted 0 frame(s)"), again.message
    assert ran == 1 + len(list_chunks(tf.store, first.id)) + 1  # the split, its chunks, the next job
