"""The background worker: claims queued jobs and runs them (fine-tune, predict).

    run_worker(store, settings)             # forever, polling every 2 s
    run_worker(store, settings, once=True)  # until the queue is empty

The device is resolved once here and passed down (GPU with mixed precision when present, the CPU
otherwise; the same code path). A job's code reports progress and learns of a cancel through one
job context, `WorkerJob`: it writes the job row, and while the job runs its heartbeat thread stamps
the row (and notices a cancel requested meanwhile), so a worker
that dies (killed, machine lost) leaves a stale heartbeat. Every running worker recovers stale jobs:
at start, between jobs (at most once per heartbeat period) and from its heartbeat thread while busy,
so a dead worker's job never blocks its film for long while another worker is up.
Every failure ends the job as `failed` with a readable message; the film's active model only
changes in the last write of a successful fine-tuning job.

A "predict" job is split into shot-aligned chunks (`studio.chunks`) by the worker that claims it; then
every worker, this one included, claims chunks until none is left, and the last to finish ends the
job. The re-predict that ends a fine-tuning job stays in that job, on its one worker.
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
from correlnet.job_context import JobCancelled, JobContext
from studio import chunks, jobs
from studio.detection_jobs import ModelCache, repredict, run_chunk, run_predict

log = logging.getLogger("correlnet.worker")
STALE_MIN_HEARTBEATS = 2  # a job is declared dead only after it missed at least one whole heartbeat
SPLIT = "split"  # what became of a "predict" job handed to its chunks (the last of them finishes it)


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
    chunks: how a film's detection is cut into chunks for several workers.
    """

    poll_seconds: float = 2.0
    heartbeat_seconds: float = 10.0
    stale_after_seconds: float = 120.0
    progress_every_seconds: float = 1.0
    finetune: Any = None
    default_model: Any = None
    chunks: chunks.ChunkConfig = chunks.ChunkConfig()

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


# The job row's column for each report field the row keeps (`unit` is not stored).
_ROW_COLUMNS = {"done": "step", "total": "total_steps", "loss": "loss", "val_f1": "val_f1",
                "eta_seconds": "eta_seconds", "message": "message"}


class WorkerJob(JobContext):
    """The job context of one claimed job (`correlnet.job_context`), used as `with WorkerJob(...) as job:`.

    report(**fields) writes the job row, at most once per `cfg.progress_every_seconds` (a report without
    `done`, with done 0 and with done == total always), so a fast CPU loop does not hammer the database.
    Inside `with`, a daemon thread stamps heartbeat_at every `cfg.heartbeat_seconds` and recovers other
    workers' stale jobs meanwhile (a busy worker must not leave a dead one's job blocking its film).
    `cancelled` turns True once a write (report or heartbeat) finds the row's cancel_requested set.
    A report raises jobs.JobError when the job is no longer this worker's; the heartbeat only logs.
    """

    def __init__(self, store: Any, job_id: int, worker_id: str, cfg: WorkerConfig):
        self._store, self._job_id, self._worker_id, self._cfg = store, job_id, worker_id, cfg
        self._cancel, self._stop = threading.Event(), threading.Event()
        self._last = -math.inf
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-job{job_id}", daemon=True)

    def __enter__(self) -> "WorkerJob":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _record(self, fields: dict[str, Any]) -> None:
        done, total = fields.get("done"), fields.get("total")
        now = time.monotonic()
        if now - self._last >= self._cfg.progress_every_seconds or done in (0, None) or done == total:
            self._last = now
            self._write(**{_ROW_COLUMNS[k]: v for k, v in fields.items() if k in _ROW_COLUMNS})

    def _write(self, **columns: Any) -> None:
        if jobs.report_progress(self._store, self._job_id, self._worker_id, **columns):
            self._cancel.set()

    def _beat(self) -> None:
        while not self._stop.wait(self._cfg.heartbeat_seconds):
            try:
                self._write()
            except Exception as exc:  # a lost heartbeat is logged; the job's own writes will fail loudly
                log.warning("heartbeat of job %s failed: %s", self._job_id, exc)
            try:
                _recover(self._store, self._cfg.stale_after_seconds)
            except Exception as exc:
                log.warning("looking for stale jobs failed: %s", exc)


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


def _execute(store: Any, job_row: Any, device: torch.device, cfg: WorkerConfig,
             job: JobContext, models: ModelCache) -> tuple[str, str, int | None]:
    """(status, message, published model version id) of one job, status SPLIT for a "predict" job
    handed to its chunks; never raises for job failures."""
    from studio.finetune import FinetuneConfig, run_finetune

    try:
        if job_row.kind == "finetune":
            outcome = run_finetune(store, job_row, device, cfg.finetune or FinetuneConfig.for_device(device), job,
                                   cfg.default_model)
            if outcome.published is None:
                return "succeeded", outcome.message, None
            try:
                after = repredict(store, job_row, outcome.published, device, job)
            except jobs.JobError:
                raise
            except Exception as exc:  # the version is published and active: the job did its main work
                log.error("job %s: re-predicting failed:\n%s", job_row.id, traceback.format_exc())
                after = f"re-predicting failed ({failure_message(exc)}); queue detection to retry"
            return "succeeded", f"{outcome.message}; {after}", outcome.published.id
        if job_row.kind == "predict":
            message = run_predict(store, job_row, cfg.chunks, cfg.default_model)
            return ("succeeded", message, None) if message is not None else (SPLIT, "", None)
        if job_row.kind == chunks.CHUNK_KIND:
            return "succeeded", run_chunk(store, job_row, device, job, models), None
        return "failed", f"unknown job kind {job_row.kind!r}: this worker runs finetune and predict jobs", None
    except JobCancelled as exc:
        return "cancelled", str(exc), None
    except jobs.JobError:
        raise  # the job was taken from us (recovered as stale): not ours to finish
    except Exception as exc:
        log.error("job %s failed:\n%s", job_row.id, traceback.format_exc())
        return "failed", failure_message(exc), None


def run_job(store: Any, job: Any, device: torch.device, worker_id: str, cfg: WorkerConfig,
            models: ModelCache | None = None) -> str:
    """Run one claimed job to its end; returns its final status (succeeded/failed/cancelled, SPLIT for a
    detection handed to its chunks, or "lost" when another worker took it over meanwhile). A chunk's
    end may end its detection (`chunks.finish_chunk`), whose worker then refreshes the review order."""
    try:
        with WorkerJob(store, job.id, worker_id, cfg) as context:
            status, message, version_id = _execute(store, job, device, cfg, context, models or ModelCache())
    except jobs.JobError as exc:
        log.warning("job %s: %s", job.id, exc)
        return "lost"
    if job.kind == chunks.CHUNK_KIND:
        parent = chunks.finish_chunk(store, job.id, worker_id, status, message)
        if parent is not None:
            log.info("detection job %s %s: %s", parent.id, parent.status, parent.message)
            if parent.status == "succeeded":
                _refresh_after_detection(store, parent)
    elif status != SPLIT:
        try:
            jobs.finish_job(store, job.id, worker_id, status, message, version_id)
        except jobs.JobError as exc:  # recovered as stale and maybe re-claimed meanwhile: the new owner's now
            log.warning("job %s: %s", job.id, exc)
            return "lost"
    return status


def _refresh_after_detection(store: Any, parent: Any) -> None:
    """Refresh the review order after the detection `parent` succeeded. A failure leaves the job
    succeeded (its predictions are stored) and says so on it; the worker goes on with the next job."""
    from studio.detection import refresh_review_order

    try:
        refresh_review_order(store, parent.film_id, parent.model_version_id)
    except Exception as exc:
        log.error("detection job %s: refreshing the review order failed:\n%s", parent.id, traceback.format_exc())
        try:
            jobs.add_note(store, parent.id, f"the review order was not refreshed ({failure_message(exc)}); "
                                            "queue detection again to refresh it")
        except Exception:
            log.error("detection job %s: could not note the failed refresh:\n%s", parent.id, traceback.format_exc())


def _recover(store: Any, stale_after_seconds: float) -> None:
    for job in jobs.recover_stale_jobs(store, timedelta(seconds=stale_after_seconds)):
        log.warning("job %s (film %s) had lost its worker: now %s", job.id, job.film_id, job.status)


def stop_when_finished(store: Any, job_id: int, poll_seconds: float = 0.05) -> threading.Event:
    """An event for `run_worker(stop=...)` that a daemon thread sets once job `job_id` is no longer queued
    or running: a worker that helps with one (split) detection and then exits."""
    stop = threading.Event()

    def watch() -> None:
        while jobs.get_job(store, job_id).status in jobs.ACTIVE:
            time.sleep(poll_seconds)
        stop.set()

    threading.Thread(target=watch, name=f"stop-after-job-{job_id}", daemon=True).start()
    return stop


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
    models = ModelCache()
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
            status = run_job(store, job, dev, wid, cfg, models)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: hand the job back instead of leaving it stale
            jobs.release_job(store, job.id, wid, f"worker {wid} was stopped")
            raise
        log.info("job %s %s", job.id, status)
        done += 1
    return done
