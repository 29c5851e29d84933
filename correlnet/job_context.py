"""Progress and cancellation of long work: the one job context that training, film import, film
detection and the worker share.

    job.report(done=3, total=60, unit="step", loss=0.41)   # what the work has got to
    job.raise_if_cancelled("cancelled at step 3 of 60")     # or: if job.cancelled: stop cleanly

The work only reports and asks; the context decides where reports go (a progress bar, a Streamlit
bar, the job's database row) and what makes it cancelled (the worker's: the row's cancel_requested).
No threads here: a context that polls something (the worker's heartbeat) lives with its caller.

Fields of `report` (all optional; a report carries the ones that changed):
- done: units finished so far in this run (frames stored, optimizer steps); 0 before the first.
- total: units this run will do.
- unit: "frame" or "step".
- loss: training loss, the mean of the last (up to) 50 steps.
- lr: the learning rate of the step just done.
- val_f1: pixel F1 on validation frames, on the reports where validation ran.
- eta_seconds: estimated seconds left.
- message: a readable status line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

FIELDS = frozenset({"done", "total", "unit", "loss", "lr", "val_f1", "eta_seconds", "message"})


class JobCancelled(Exception):
    """The restorer cancelled a job (fine-tuning or detection): the worker ends it as cancelled. What
    the job finished before stays (predicted frames); a fine-tuning job publishes nothing."""


class JobContext:
    """Where long work reports progress and learns it was cancelled. The base drops reports and is
    never cancelled; subclasses override `_record` (and `cancelled` where something can cancel)."""

    def report(self, **fields: Any) -> None:
        """Record progress (the fields of the module docstring). Raises ValueError for an unknown field,
        so a misspelt name fails in the tests instead of vanishing."""
        unknown = set(fields) - FIELDS
        if unknown:
            raise ValueError(f"unknown progress field(s) {', '.join(sorted(unknown))}: report uses "
                             f"{', '.join(sorted(FIELDS))}")
        self._record(fields)

    def _record(self, fields: dict[str, Any]) -> None:
        pass

    @property
    def cancelled(self) -> bool:
        return False

    def raise_if_cancelled(self, message: str) -> None:
        """Raise JobCancelled(message) when cancelled; `message` says what was kept."""
        if self.cancelled:
            raise JobCancelled(message)


class NullJob(JobContext):
    """Reports go nowhere, never cancelled: what `job=None` means everywhere."""


class CallbackJob(JobContext):
    """Calls on_report(**fields) for each report (a CLI's or a web page's progress bar); never cancelled."""

    def __init__(self, on_report: Callable[..., None]):
        self._on_report = on_report

    def _record(self, fields: dict[str, Any]) -> None:
        self._on_report(**fields)


class Uncancellable(JobContext):
    """Reports go to `job`, whose cancel is ignored: for work that must finish once begun (re-predicting
    a film with a model version that is already published and active)."""

    def __init__(self, job: JobContext):
        self._job = job

    def _record(self, fields: dict[str, Any]) -> None:
        self._job.report(**fields)


def job_or_null(job: JobContext | None) -> JobContext:
    """`job`, or a NullJob for None (the default of every `job=` parameter)."""
    return NullJob() if job is None else job
