"""The worker's detection jobs: a film's "predict" job split into chunks, one chunk, and the
re-predict that ends a fine-tuning job (which stays in that job, on its one worker).

torch is imported only inside the functions that run a model (studio.detection's rule).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from correlnet.job_context import JobCancelled, JobContext, Uncancellable
from db.models import Correction, Film, Frame, ModelVersion
from studio import chunks
from studio.chunks import ChunkConfig

if TYPE_CHECKING:
    import torch


class ModelCache:
    """The model of the version this worker predicted with last, called as
    `studio.versions.load_version_model`: chunk after chunk of one film loads and checks it once."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._model: Any = None

    def __call__(self, store: Any, version: Any, device: torch.device) -> Any:
        from studio.versions import load_version_model

        key = (version.id, version.sha256, str(device))
        if key != self._key:
            self._key, self._model = None, None  # the old model is freed before the new one loads
            self._model, self._key = load_version_model(store, version, device), key
        return self._model


def run_predict(store: Any, job_row: Any, cfg: ChunkConfig, default_model: Any = None) -> str | None:
    """Split the film's detection with its active model (pinned on the job) into chunks for any worker
    and return None (the last chunk ends the job); with nothing left to predict, refresh the review
    order and return the message. A cancel before the split raises JobCancelled."""
    from studio.detection import refresh_review_order
    from studio.versions import pin_model_version

    film = _film(store, job_row.film_id)
    version = pin_model_version(store, film, None, default_model)
    todo = chunks.frames_to_predict(store, film.id, version.id)
    if not todo:
        refresh_review_order(store, film.id, version.id)
        return (f"predicted 0 frame(s) of {film.name!r} ({film.frame_count} already done) "
                f"with model version {version.id}")
    ranges = chunks.plan_chunks(todo, cfg.frames_per_chunk(len(todo)))
    if chunks.split_job(store, job_row.id, version.id, ranges, len(todo)) is None:
        raise JobCancelled("detection cancelled before its first frame (0 frames predicted)")
    return None


def run_chunk(store: Any, job_row: Any, device: torch.device, job: JobContext, models: ModelCache) -> str:
    """Predict a chunk's frames with its detection's pinned version (frames already predicted by it are
    skipped, so a chunk taken over from a dead worker does none twice); a cancel ends it after the
    frame in progress (JobCancelled), keeping the frames stored so far."""
    from studio.detection import detect_film

    with store.session() as s:
        version = s.get(ModelVersion, job_row.model_version_id) if job_row.model_version_id else None
    if version is None:
        raise ValueError(f"the model version of detection job {job_row.parent_id} was deleted; queue detection again")
    first, last = job_row.first_index, job_row.last_index
    result = detect_film(store, _film(store, job_row.film_id), version, device=device, job=job,
                         frame_indices=range(first, last + 1), load=models)
    return f"predicted {result.predicted} frame(s) of frame indices {first}-{last} ({result.skipped} already done)"


def repredict(store: Any, job_row: Any, version: Any, device: torch.device, job: JobContext) -> str:
    """After publishing: predict the film's frames without a correction (the restorer's mask is final
    there) with the new version. Not cancellable: the version is already active, its proposals follow."""
    from studio.detection import predict_film

    film = _film(store, job_row.film_id)
    result = predict_film(store, film, version, device=device, job=Uncancellable(job),
                          frame_indices=_uncorrected_indices(store, film.id))
    return f"predicted {result.predicted} frame(s) of {film.name!r} ({result.skipped} already done)"


def _film(store: Any, film_id: int) -> Film:
    with store.session() as s:
        return s.get(Film, film_id)


def _uncorrected_indices(store: Any, film_id: int) -> list[int]:
    corrected = select(Correction.frame_id)
    with store.session() as s:
        return list(s.execute(select(Frame.index).where(Frame.film_id == film_id, Frame.id.not_in(corrected))
                              .order_by(Frame.index)).scalars())
