"""Training-job queue: queue, claim, progress, heartbeat, cancel, recover.

A running job's progress and cancel reach its code through one job context
(`correlnet.job_context`; the worker's is `studio.worker.WorkerJob`, which writes here).

The web app only inserts rows here (the retrain button, "start detection"); a worker process
(studio/worker.py) claims them. Claiming is atomic in both back ends:
- SQLite: the whole claim runs inside `store.write()`, which starts with BEGIN IMMEDIATE, so a
  second worker waits for the first to commit and then sees the job as running.
- PostgreSQL: `SELECT ... FOR UPDATE SKIP LOCKED` on the film row and on the job row, so two
  workers never take the same job nor two jobs of one film, and never block each other.
A film's detection runs as chunks that any number of workers claim at once (`studio.chunks`): its
"predict" job is split by the worker that claims it and stays running until its last chunk ends, so
one running job per film still holds for everything else (fine-tuning never runs beside detection).
We keep this table rather than a PostgreSQL queue library (procrastinate, pgqueuer): those need
PostgreSQL, while the embedded SQLite store must keep working, and none knows our rules (one job per
film, chunks of one parent, cancel through the row, progress on the row the pages poll).
No torch here: the web app imports this module.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import aliased

from correlnet.job_context import JobCancelled  # noqa: F401  (its home; `except jobs.JobCancelled` keeps working)
from db.models import Correction, Film, Frame, TrainingJob

KINDS = ("finetune", "predict")
ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
# A job re-queued once after its worker died, and orphaned again, is failed rather than re-queued
# forever (it may be the job itself that kills the worker, e.g. the OOM killer).
REQUEUE_NOTE = "re-queued: its worker stopped sending heartbeats"


class JobError(ValueError):
    """A job request that cannot be honoured; the message says why and what to do."""


def utcnow() -> datetime:
    """Aware UTC, as the store's UTCDateTime columns return."""
    return datetime.now(timezone.utc)


def _is_postgres(session: Any) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def queue_job(store: Any, film_id: int, kind: str, force: bool = False) -> TrainingJob:
    """Queue a `kind` job for the film, or return the one already queued or running (no duplicates).

    force: publish the fine-tuned model even when validation F1 drops (finetune only); asking again
    with force=True upgrades a queued job. Raises JobError for an unknown kind or film.
    """
    if kind not in KINDS:
        raise JobError(f"unknown job kind {kind!r}: use one of {', '.join(KINDS)}")
    with store.write() as s:
        film = s.execute(for_update(select(Film).where(Film.id == film_id), s)).scalar_one_or_none()
        if film is None:
            raise JobError(f"no film with id {film_id}: `correlnet film list` shows the films")
        existing = s.execute(
            select(TrainingJob)
            .where(TrainingJob.film_id == film_id, TrainingJob.kind == kind, TrainingJob.status.in_(ACTIVE))
            .order_by(TrainingJob.id)
        ).scalars().first()
        if existing is not None:
            if force and existing.status == "queued" and not existing.force_publish:
                existing.force_publish = True
            return existing
        job = TrainingJob(film_id=film_id, kind=kind, status="queued", force_publish=force,
                          cancel_requested=False, step=0, created_at=utcnow())
        s.add(job)
        s.flush()
        return job


def queue_training(store: Any, film_id: int, force: bool = False) -> TrainingJob:
    """The one-click "learn this film" button: queue fine-tuning unless one is queued or running."""
    return queue_job(store, film_id, "finetune", force=force)


def queue_prediction(store: Any, film_id: int) -> TrainingJob:
    """"Start detection": queue predicting the film with its active model."""
    return queue_job(store, film_id, "predict")


def for_update(stmt: Any, session: Any, skip_locked: bool = False) -> Any:
    """`stmt` locking its rows on PostgreSQL (and refreshing rows this session already holds). SQLite has
    no row locks; its BEGIN IMMEDIATE transaction already serialises writers."""
    if not _is_postgres(session):
        return stmt
    return stmt.with_for_update(skip_locked=skip_locked).execution_options(populate_existing=True)


def locked_job(session: Any, job_id: int) -> TrainingJob | None:
    """The job row, locked until the transaction ends (PostgreSQL; see `for_update`)."""
    return session.execute(for_update(select(TrainingJob).where(TrainingJob.id == job_id), session)).scalar_one_or_none()


def locked_with_parent(session: Any, job_id: int, *where: Any) -> tuple[TrainingJob | None, TrainingJob] | None:
    """(parent or None, job) of job `job_id`, both locked in the one order every writer keeps: the parent
    before the chunk (so two transactions can never wait on each other). None when no job matches `where`."""
    row = session.execute(select(TrainingJob.parent_id).where(TrainingJob.id == job_id, *where)).first()
    if row is None:
        return None
    parent = locked_job(session, row.parent_id) if row.parent_id is not None else None
    return parent, locked_job(session, job_id)


def has_chunks() -> Any:
    """SQL condition: the TrainingJob row is a split detection (it has chunk rows)."""
    chunk = aliased(TrainingJob)
    return exists().where(chunk.parent_id == TrainingJob.id)


def _parent_takes_chunks(session: Any, parent_id: int, seen: dict[int, bool]) -> bool:
    if parent_id not in seen:
        row = session.execute(select(TrainingJob.status, TrainingJob.cancel_requested)
                              .where(TrainingJob.id == parent_id)).first()
        seen[parent_id] = row is not None and row.status == "running" and not row.cancel_requested
    return seen[parent_id]


def claim_next_job(store: Any, worker_id: str) -> TrainingJob | None:
    """Atomically take the oldest queued job whose film has no running job, or a queued chunk of a
    running detection (any number of workers share those); None when there is none.

    The claimed row is returned detached, with status "running", worker_id, started_at and
    heartbeat_at set.
    """
    with store.write() as s:
        candidates = s.execute(
            select(TrainingJob.id, TrainingJob.film_id, TrainingJob.parent_id)
            .where(TrainingJob.status == "queued")
            .order_by(TrainingJob.created_at, TrainingJob.id)
        ).all()
        busy: set[int] = set()
        parents: dict[int, bool] = {}
        for job_id, film_id, parent_id in candidates:
            if parent_id is not None:  # a chunk: its film's running parent is what lets it run
                if not _parent_takes_chunks(s, parent_id, parents):
                    continue
            elif film_id in busy:
                continue
            # Lock the film so no other worker can start a job of this film until we commit.
            elif s.execute(for_update(select(Film.id).where(Film.id == film_id), s, skip_locked=True)).first() is None:
                busy.add(film_id)
                continue
            elif s.execute(select(func.count()).select_from(TrainingJob).where(
                    TrainingJob.film_id == film_id, TrainingJob.status == "running")).scalar_one():
                busy.add(film_id)
                continue
            job = s.execute(for_update(select(TrainingJob).where(
                TrainingJob.id == job_id, TrainingJob.status == "queued"), s, skip_locked=True)).scalar_one_or_none()
            if job is None:
                continue
            now = utcnow()
            job.status, job.worker_id, job.started_at, job.heartbeat_at = "running", worker_id, now, now
            job.step = 0
            s.flush()
            return job
    return None


def report_progress(store: Any, job_id: int, worker_id: str, *, step: int | None = None,
                    total_steps: int | None = None, loss: float | None = None, val_f1: float | None = None,
                    eta_seconds: float | None = None, message: str | None = None) -> bool:
    """Write progress and the heartbeat; returns True when the app asked to cancel the job.

    Raises JobError when the job is no longer this worker's (it was recovered as stale meanwhile),
    so a worker that was only slow stops instead of racing the new owner.
    """
    with store.write() as s:
        job = owned_job(s, job_id, worker_id)
        job.heartbeat_at = utcnow()
        for name, value in (("step", step), ("total_steps", total_steps), ("loss", loss), ("val_f1", val_f1),
                            ("eta_seconds", eta_seconds), ("message", message)):
            if value is not None:
                setattr(job, name, value)
        return bool(job.cancel_requested)


def owned_job(session: Any, job_id: int, worker_id: str) -> TrainingJob:
    """The job row, locked until the transaction ends (`locked_job`), while it is running on `worker_id`.
    Raises JobError when it is not (recovered as stale meanwhile, perhaps claimed by another worker), so
    a worker that was only slow stops instead of racing the new owner."""
    job = locked_job(session, job_id)
    if job is None or job.worker_id != worker_id or job.status != "running":
        raise JobError(f"job {job_id} is no longer run by worker {worker_id}: stopping")
    return job


def finish_job(store: Any, job_id: int, worker_id: str, status: str, message: str | None = None,
               result_model_version_id: int | None = None) -> TrainingJob:
    """Mark a job running on `worker_id` succeeded, failed or cancelled with a readable message. Raises
    JobError when the job is no longer this worker's (`owned_job`): the new owner's state stays."""
    if status not in FINISHED:
        raise JobError(f"a job finishes as one of {', '.join(FINISHED)}, not {status!r}")
    with store.write() as s:
        job = owned_job(s, job_id, worker_id)
        job.status, job.finished_at, job.heartbeat_at = status, utcnow(), utcnow()
        if message is not None:
            job.message = message
        if result_model_version_id is not None:
            job.result_model_version_id = result_model_version_id
        return job


def add_note(store: Any, job_id: int, note: str) -> None:
    """Append `note` to a job's message (e.g. what went wrong after it finished)."""
    with store.write() as s:
        job = locked_job(s, job_id)
        if job is None:
            raise JobError(f"no job with id {job_id}")
        job.message = f"{job.message}; {note}" if job.message else note


def request_cancel(store: Any, job_id: int) -> TrainingJob:
    """Cancel a job: a queued job is cancelled at once, a running one at its worker's next step. For a
    split detection, its queued chunks are cancelled at once and its running ones stop at their next
    report; the parent ends "cancelled" when none is left running."""
    from studio import chunks

    with store.write() as s:
        locked = locked_with_parent(s, job_id)
        if locked is None:
            raise JobError(f"no job with id {job_id}")
        parent, job = locked
        if job.status == "queued":
            job.status, job.finished_at, job.message = "cancelled", utcnow(), "cancelled before it started"
        elif job.status == "running":
            job.cancel_requested = True
            if parent is None:
                chunks.cancel_chunks(s, job)
        chunks.settle(s, parent if parent is not None else job)
        return job


def recover_stale_jobs(store: Any, stale_after: timedelta, now: datetime | None = None) -> list[TrainingJob]:
    """Running jobs whose heartbeat is older than `stale_after` lost their worker: re-queue them once,
    fail them the second time. Returns the recovered jobs. A split detection has no heartbeat of its
    own (its chunks have), and ends with its last chunk (`studio.chunks.settle_orphans` here)."""
    from studio import chunks

    cutoff = (now or utcnow()) - stale_after
    with store.write() as s:
        stale = s.execute(for_update(select(TrainingJob).where(
            TrainingJob.status == "running", TrainingJob.heartbeat_at < cutoff, ~has_chunks()),
            s, skip_locked=True)).scalars().all()
        for job in stale:
            note = f"worker {job.worker_id} stopped sending heartbeats (last {job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)"
            if job.cancel_requested:
                job.status, job.finished_at, job.message = "cancelled", utcnow(), f"cancelled; {note}"
            elif (job.message or "").startswith(REQUEUE_NOTE):
                job.status, job.finished_at = "failed", utcnow()
                job.message = f"failed: {note} twice; see the worker's log and retry with the Training page"
            else:
                job.status, job.worker_id, job.started_at, job.step = "queued", None, None, 0
                job.message = f"{REQUEUE_NOTE} ({note})"
    return list(stale) + chunks.settle_orphans(store)


def release_job(store: Any, job_id: int, worker_id: str, note: str) -> None:
    """Give a running job back to the queue (its worker is shutting down), unless another took it or
    it was split into chunks meanwhile (those are the workers' now). A job asked to cancel ends
    cancelled instead (and a chunk's detection with it, when it was the last)."""
    from studio import chunks

    with store.write() as s:
        locked = locked_with_parent(s, job_id, ~has_chunks())
        if locked is None:
            return
        parent, job = locked
        if job.status != "running" or job.worker_id != worker_id:
            return
        if job.cancel_requested:
            job.status, job.finished_at, job.message = "cancelled", utcnow(), f"cancelled; {note}"
            if parent is not None:
                chunks.settle(s, parent)
        else:
            job.status, job.worker_id, job.started_at, job.step = "queued", None, None, 0
            job.message = f"re-queued: {note}"


def list_jobs(store: Any, film_id: int | None = None, limit: int = 50) -> list[TrainingJob]:
    """The jobs the pages show, newest first; all films when film_id is None. Chunks are not listed: a
    running split detection shows their sum (step = frames predicted so far, eta_seconds, a message
    counting chunks; set on the returned rows only, never written)."""
    from studio import chunks

    stmt = select(TrainingJob).where(TrainingJob.parent_id.is_(None)).order_by(TrainingJob.id.desc()).limit(limit)
    if film_id is not None:
        stmt = stmt.where(TrainingJob.film_id == film_id)
    with store.session() as s:
        rows = list(s.execute(stmt).scalars().all())
        live = chunks.live_progress(s, rows)
    for job in rows:  # detached now: these values go to the page, not to the database
        for name, value in live.get(job.id, {}).items():
            setattr(job, name, value)
    return rows


def get_job(store: Any, job_id: int) -> TrainingJob:
    with store.session() as s:
        job = s.get(TrainingJob, job_id)
        if job is None:
            raise JobError(f"no job with id {job_id}")
        return job


def corrections_since_last_finetune(store: Any, film_id: int) -> int:
    """Edited corrections (`studio.evidence`: the mask differs from the model's proposal) saved for
    the film's frames after the last fine-tuning job was queued. Accepted-as-is rows do not count:
    they teach the job nothing it may train on as a target, so a job queued on them ends "not
    trained" (issue 13)."""
    from studio.evidence import edited_clause

    with store.session() as s:
        last = s.execute(select(func.max(TrainingJob.created_at)).where(
            TrainingJob.film_id == film_id, TrainingJob.kind == "finetune")).scalar_one()
        stmt = select(func.count()).select_from(Correction).join(Frame, Frame.id == Correction.frame_id).where(
            Frame.film_id == film_id, edited_clause())
        if last is not None:
            stmt = stmt.where(Correction.created_at > last)
        return int(s.execute(stmt).scalar_one())


def maybe_queue_after_correction(store: Any, film_id: int, settings: Any) -> TrainingJob | None:
    """Called after each saved correction: queue fine-tuning once `settings.retrain_after` new edited
    corrections have arrived since the last fine-tuning job (0 turns it off). Returns the job or None."""
    every = int(getattr(settings, "retrain_after", 0) or 0)
    if every <= 0 or corrections_since_last_finetune(store, film_id) < every:
        return None
    return queue_training(store, film_id)
