"""The one job context (correlnet.job_context): its field vocabulary, and that film import and film
detection report done/total exactly (hand-counted) and stop on a cancel, keeping the frames stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select

from correlnet.job_context import CallbackJob, JobCancelled, JobContext, NullJob, Uncancellable, job_or_null
from db.models import Prediction
from studio.detection import detect_film
from studio.versions import active_model_version
from studio.films import ImportConfig, film_frames, import_film
from tests.test_import import moving_frames, write_folder
from tests.worker_fixtures import make_tiny_film


class Recorder(JobContext):
    """Keeps every report; cancelled from the report whose `done` equals `cancel_at` on."""

    def __init__(self, cancel_at: int | None = None):
        self.reports: list[dict[str, Any]] = []
        self.cancel_at, self._cancelled = cancel_at, False

    def _record(self, fields: dict[str, Any]) -> None:
        self.reports.append(fields)
        self._cancelled = self._cancelled or fields.get("done") == self.cancel_at

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def counts(self) -> list[tuple[int, int]]:
        assert {r["unit"] for r in self.reports} <= {"frame"}
        return [(r["done"], r["total"]) for r in self.reports]


def test_contexts_check_the_field_names_and_forward_reports() -> None:
    seen = []
    job = CallbackJob(lambda **f: seen.append(f))
    job.report(done=1, total=2, unit="frame", loss=0.5, lr=1e-3, val_f1=0.7, eta_seconds=3.0, message="ok")
    assert seen == [dict(done=1, total=2, unit="frame", loss=0.5, lr=1e-3, val_f1=0.7, eta_seconds=3.0, message="ok")]
    with pytest.raises(ValueError, match="unknown progress field.*total_steps"):
        job.report(total_steps=3)  # the job row's column name, not the vocabulary's
    assert seen == [seen[0]] and not job.cancelled
    job.raise_if_cancelled("never")  # never cancelled: no raise
    assert isinstance(job_or_null(None), NullJob) and job_or_null(job) is job
    cancelled = Recorder(cancel_at=0)
    cancelled.report(done=0, total=1)
    with pytest.raises(JobCancelled, match="what was kept"):
        cancelled.raise_if_cancelled("what was kept")
    view = Uncancellable(cancelled)  # reports reach the parent, its cancel does not stop the work
    view.report(done=1, total=1)
    assert not view.cancelled and cancelled.reports[-1] == {"done": 1, "total": 1}


@pytest.mark.parametrize("in_place", [True, False])
def test_folder_import_reports_every_frame(tmp_path: Path, in_place: bool) -> None:
    from db.testing import temporary_store

    write_folder(tmp_path / "src", moving_frames(4))
    job = Recorder()
    with temporary_store(tmp_path / "data") as store:
        film = import_film(store, tmp_path / "src", job=job, cfg=ImportConfig(in_place=in_place))
        frames = film_frames(store, film)
    assert film.frame_count == 4 and job.counts() == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(bool(f.source_path) == in_place for f in frames)  # both import paths were taken


def test_video_import_reports_every_frame(tmp_path: Path) -> None:
    from db.testing import temporary_store

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 24, (56, 40))
    for img in moving_frames(3):
        writer.write(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    writer.release()
    job = Recorder()
    with temporary_store(tmp_path / "data") as store:
        film = import_film(store, path, job=job)
    assert film.frame_count == 3 and job.counts() == [(1, 3), (2, 3), (3, 3)]


def predictions(store) -> int:
    with store.session() as s:
        return s.execute(select(func.count()).select_from(Prediction)).scalar_one()


def test_detection_reports_exactly_and_a_cancel_keeps_the_frames_stored(tmp_path: Path) -> None:
    tf = make_tiny_film(tmp_path, corrected=())  # 8 frames
    version = active_model_version(tf.store, tf.film, tf.model_path)
    job = Recorder()
    result = detect_film(tf.store, tf.film, version, device="cpu", job=job, frame_indices=[1, 3, 4, 6])
    assert result.predicted == 4 and job.counts() == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    # 4 frames left (0, 2, 5, 7); cancelled when the second of them is stored
    job = Recorder(cancel_at=2)
    with pytest.raises(JobCancelled, match="after 2 of 4 frames; those frames are kept"):
        detect_film(tf.store, tf.film, version, device="cpu", job=job)
    assert job.counts() == [(0, 4), (1, 4), (2, 4)] and predictions(tf.store) == 6
    # cancelled before it starts: nothing predicted, the message says so
    job = Recorder(cancel_at=0)
    with pytest.raises(JobCancelled, match="before its first frame"):
        detect_film(tf.store, tf.film, version, device="cpu", job=job)
    assert job.counts() == [(0, 2)] and predictions(tf.store) == 6
    # a cancel after the last frame changes nothing; the run resumes where the cancelled one stopped
    job = Recorder(cancel_at=2)
    result = detect_film(tf.store, tf.film, version, device="cpu", job=job)
    assert (result.predicted, result.skipped) == (2, 6) and job.counts() == [(0, 2), (1, 2), (2, 2)]
    job = Recorder()
    assert detect_film(tf.store, tf.film, version, device="cpu", job=job).predicted == 0 and job.counts() == [(0, 0)]
    assert predictions(tf.store) == 8
