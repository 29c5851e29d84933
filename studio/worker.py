"""The background worker: claims queued jobs and runs them (fine-tune, predict).

    run_worker(store, settings)             # forever, polling every 2 s
    run_worker(store, settings, once=True)  # until the queue is empty

The device is resolved once here and passed down (GPU with mixed precision when present, the CPU
otherwise; the same code path). While a job runs, a heartbeat thread stamps its row, so a worker
that dies (killed, machine lost) leaves a stale heartbeat. Every running worker recovers stale jobs:
at start, between jobs (at most once per heartbeat period) and from its heartbeat thread while busy,
so a dead worker's job never blocks its film for long while another worker is up.
Every failure ends the job as `failed` with a readable message; the film's active model only
changes in the last write of a successful fine-tuning job.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import torch

from correlnet.device import resolve_device
from studio import jobs

log = logging.getLogger("correlnet.worker")
STALE_MIN_HEARTBEATS = 2  # a job is declared dead only after it missed at least one whole heartbeat


@dataclass(frozen=True)
class WorkerConfig:
    """poll_seconds: wait between looks at an empty queue.
    heartbeat_seconds: how often a running job's heartbeat_at is stamped; also how often an idle worker
        looks for jobs of dead workers.
    stale_after_seconds: a running job whose heartbeat is older lost its worker; at least
        STALE_MIN_HEARTBEATS heartbeats, so a live job that misses one is not taken from its worker.
    progress_every_seconds: at most one progress write per this interval (the first and last always).
    finetune: the FinetuneConfig; None = FinetuneConfig.for_device(device).
    default_model: checkpoint for films with no model of their own (None: the shipped default);
        run_worker fills it from settings.default_model.
    """

    poll_seconds: float = 2.0
    heartbeat_seconds: float = 10.0
    stale_after_seconds: float = 120.0
    progress_every_seconds: float = 1.0
    finetune: Any = None
    default_model: Any = None

    def __post_init__(self) -> None:
        if not self.heartbeat_seconds > 0:
            raise ValueError(f"the heartbeat period must be positive, got {self.heartbeat_seconds} s")
        if self.stale_after_seconds < STALE_MIN_HEARTBEATS * self.heartbeat_seconds:
            raise ValueError(
                f"stale after {self.stale_after_seconds:g} s (--stale-after) is shorter than {STALE_MIN_HEARTBEATS} heartbeat periods "
                f"({STALE_MIN_HEARTBEATS * self.heartbeat_seconds:g} s): live jobs would be taken from their workers; "
                f"use at least {STALE_MIN_HEARTBEATS * self.heartbeat_seconds:g}")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Heartbeat:
    """Stamps the job's heartbeat_at every `every` seconds from a daemon thread, and recovers other
    workers' stale jobs meanwhile (a busy worker must not leave a dead one's job blocking its film)."""

    def __init__(self, store: Any, job_id: int, worker_id: str, every: float, stale_after: float | None = None):
        self._store, self._job_id, self._worker_id, self._every = store, job_id, worker_id, every
        self._stale_after = stale_after
        self._stop = threading.Event()
        self.cancel_requested = False
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-job{job_id}", daemon=True)

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.cancel_requested |= jobs.report_progress(self._store, self._job_id, self._worker_id)
            except Exception as exc:  # a lost heartbeat is logged; the job's own writes will fail loudly
                log.warning("heartbeat of job %s failed: %s", self._job_id, exc)
            if self._stale_after is not None:
                try:
                    _recover(self._store, self._stale_after)
                except Exception as exc:
                    log.warning("looking for stale jobs failed: %s", exc)


class _Reporter:
    """progress(**fields) -> cancel requested?; writes at most every `every` seconds (step 0 and the
    last step always), so a fast CPU loop does not hammer the database."""

    def __init__(self, store: Any, job_id: int, worker_id: str, every: float, heartbeat: _Heartbeat):
        self._store, self._job_id, self._worker_id, self._every = store, job_id, worker_id, every
        self._heartbeat, self._last, self._cancel = heartbeat, -math.inf, False

    def __call__(self, **fields: Any) -> bool:
        step, total = fields.get("step"), fields.get("total_steps")
        now = time.monotonic()
        if now - self._last >= self._every or step in (0, None) or (total is not None and step == total):
            self._last = now
            self._cancel = jobs.report_progress(self._store, self._job_id, self._worker_id, **fields)
        return self._cancel or self._heartbeat.cancel_requested


def failure_message(exc: BaseException) -> str:
    """A message a restorer can act on, for the job row."""
    from correlnet.train import TrainingDiverged

    if isinstance(exc, torch.cuda.OutOfMemoryError) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc)):
        return ("out of GPU memory: lower FinetuneConfig.batch_size or crop, or run the worker with "
                f"--device cpu ({exc})")
    if isinstance(exc, MemoryError):
        return "out of memory (RAM): close other programs or lower the batch size and crop, then queue again"
    if isinstance(exc, TrainingDiverged):
        return f"training diverged: {exc}"
    if isinstance(exc, (ValueError, FileNotFoundError, OSError)):
        return f"{exc}"
    return f"unexpected error ({type(exc).__name__}: {exc}); see the worker's log for the traceback"


def run_predict(store: Any, job: Any, device: torch.device, progress: Any, default_model: Any = None) -> str:
    """Predict the film with its active model (resumable: already predicted frames are skipped)."""
    film = _film(store, job.film_id)
    summary, version_id = _detect(store, film, None, device, progress, cancellable=True, default_model=default_model)
    return f"{summary} with model version {version_id}"


def repredict(store: Any, job: Any, version: Any, device: torch.device, progress: Any) -> str:
    """After publishing: predict the film with the new version (not cancellable: the version is
    already active, and its proposals should follow)."""
    return _detect(store, _film(store, job.film_id), version, device, progress, cancellable=False)[0]


def _film(store: Any, film_id: int) -> Any:
    from db.models import Film

    with store.session() as s:
        return s.get(Film, film_id)


def _detect(store: Any, film: Any, version: Any, device: torch.device, progress: Any, cancellable: bool,
            default_model: Any = None) -> tuple[str, int]:
    """(summary, model version id) of `studio.detection.predict_film` as a job: progress, cancel."""
    from studio.detection import predict_film
    from studio.jobs import JobCancelled

    def on_progress(done: int, total: int) -> None:
        if progress(step=done, total_steps=total) and cancellable:
            raise JobCancelled(f"detection cancelled after {done} of {total} frames; those frames are kept")

    # After fine-tuning only frames without a correction get new proposals (the restorer's mask is final
    # there); a plain detection job predicts every frame.
    indices = None if cancellable else _uncorrected_indices(store, film.id)
    progress(step=0, total_steps=film.frame_count if indices is None else len(indices))
    result = predict_film(store, film, version, default_model, device=device, on_progress=on_progress,
                          frame_indices=indices)
    return f"predicted {result.predicted} frame(s) of {film.name!r} ({result.skipped} already done)", result.model_version_id


def _uncorrected_indices(store: Any, film_id: int) -> list[int]:
    from sqlalchemy import select

    from db.models import Correction, Frame

    corrected = select(Correction.frame_id)
    with store.session() as s:
        return list(s.execute(select(Frame.index).where(Frame.film_id == film_id, Frame.id.not_in(corrected))
                              .order_by(Frame.index)).scalars())


def _execute(store: Any, job: Any, device: torch.device, cfg: WorkerConfig, progress: Any) -> tuple[str, str, int | None]:
    """(status, message, published model version id) of one job; never raises for job failures."""
    from studio.finetune import FinetuneConfig, run_finetune
    from studio.jobs import JobCancelled

    try:
        if job.kind == "finetune":
            outcome = run_finetune(store, job, device, cfg.finetune or FinetuneConfig.for_device(device), progress,
                                   cfg.default_model)
            if outcome.published is None:
                return "succeeded", outcome.message, None
            try:
                after = repredict(store, job, outcome.published, device, progress)
            except jobs.JobError:
                raise
            except Exception as exc:  # the version is published and active: the job did its main work
                log.error("job %s: re-predicting failed:\n%s", job.id, traceback.format_exc())
                after = f"re-predicting failed ({failure_message(exc)}); queue detection to retry"
            return "succeeded", f"{outcome.message}; {after}", outcome.published.id
        if job.kind == "predict":
            return "succeeded", run_predict(store, job, device, progress, cfg.default_model), None
        return "failed", f"unknown job kind {job.kind!r}: this worker runs finetune and predict jobs", None
    except JobCancelled as exc:
        return "cancelled", str(exc), None
    except jobs.JobError:
        raise  # the job was taken from us (recovered as stale): not ours to finish
    except Exception as exc:
        log.error("job %s failed:\n%s", job.id, traceback.format_exc())
        return "failed", failure_message(exc), None


def run_job(store: Any, job: Any, device: torch.device, worker_id: str, cfg: WorkerConfig) -> str:
    """Run one claimed job to its end; returns its final status (succeeded/failed/cancelled, or "lost"
    when another worker took it over meanwhile)."""
    try:
        with _Heartbeat(store, job.id, worker_id, cfg.heartbeat_seconds, cfg.stale_after_seconds) as heartbeat:
            progress = _Reporter(store, job.id, worker_id, cfg.progress_every_seconds, heartbeat)
            status, message, version_id = _execute(store, job, device, cfg, progress)
    except jobs.JobError as exc:
        log.warning("job %s: %s", job.id, exc)
        return "lost"
    jobs.finish_job(store, job.id, status, message, version_id)
    return status


def _recover(store: Any, stale_after_seconds: float) -> None:
    for job in jobs.recover_stale_jobs(store, timedelta(seconds=stale_after_seconds)):
        log.warning("job %s (film %s) had lost its worker: now %s", job.id, job.film_id, job.status)


def run_worker(store: Any, settings: Any, once: bool = False, poll_seconds: float | None = None,
               device: str | torch.device | None = None, worker_id: str | None = None,
               config: WorkerConfig | None = None, stop: threading.Event | None = None,
               max_jobs: int | None = None) -> int:
    """Claim and run jobs until `stop` is set (forever by default); once=True returns when the queue
    is empty. Recovers jobs orphaned by dead workers at start and then at most once per heartbeat period
    between jobs. Returns the number of jobs run."""
    cfg = config or WorkerConfig()
    if cfg.default_model is None and getattr(settings, "default_model", None) is not None:
        cfg = replace(cfg, default_model=settings.default_model)
    poll = cfg.poll_seconds if poll_seconds is None else poll_seconds
    dev = resolve_device(device if device is not None else settings.device)
    wid = worker_id or default_worker_id()
    recovered_at = -math.inf
    done = 0
    while not (stop is not None and stop.is_set()) and (max_jobs is None or done < max_jobs):
        if time.monotonic() - recovered_at >= cfg.heartbeat_seconds:
            _recover(store, cfg.stale_after_seconds)
            recovered_at = time.monotonic()
        job = jobs.claim_next_job(store, wid)
        if job is None:
            if once:
                break
            (stop.wait(poll) if stop is not None else time.sleep(poll))
            continue
        log.info("worker %s runs job %s (%s, film %s) on %s", wid, job.id, job.kind, job.film_id, dev)
        try:
            status = run_job(store, job, dev, wid, cfg)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: hand the job back instead of leaving it stale
            jobs.release_job(store, job.id, wid, f"worker {wid} was stopped")
            raise
        log.info("job %s %s", job.id, status)
        done += 1
    return done
