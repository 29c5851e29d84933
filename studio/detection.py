"""Detection over a whole film: predict every frame at native resolution and store the proposals.

Predictions are 8-bit PNGs of probs * 255 (full resolution) with one Prediction row per
(frame, model version); the row is inserted only after its file is on disk. Each write gets a file
name of its own, so two runs racing on one frame never overwrite the file the winner's row points
to (the loser removes its file). A model version's file is checked against its sha256 before it
is loaded. A run is resumable:
frames that already have a prediction by that version are skipped. torch is imported only inside
the functions that run a model, so the web app can import `load_prediction` cheaply.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from correlnet import DEFECT_THRESHOLD
from correlnet.job_context import JobContext, job_or_null
from db.files import read_png, write_png
from db.models import Film, Frame, ModelVersion, Prediction
from db.store import Store
from studio.active import frame_uncertainty
from studio.films import frame_gray
from studio.frame_queries import frame_count, frames_around
from studio.versions import active_model_version, load_version_model, pin_model_version

if TYPE_CHECKING:
    from correlnet.tiling import TilingConfig

THRESHOLD = DEFECT_THRESHOLD  # probs >= 0.5 is a defect (the paper's binarisation, Sec. 4.2)


@dataclass(frozen=True)
class DetectResult:
    model_version_id: int
    predicted: int  # frames predicted in this run
    skipped: int  # frames of the run (all, or `frame_indices`) that already had a prediction by this version


def quantise_probs(probs: np.ndarray) -> np.ndarray:
    """(H, W) float probs in [0, 1] -> uint8 probs * 255, rounded (what is stored)."""
    return np.clip(np.rint(np.asarray(probs, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def load_prediction(store: Store, prediction: Prediction) -> np.ndarray:
    """probs (H, W) float32 in [0, 1] (stored at 8 bits: multiples of 1/255)."""
    return read_png(store.path(prediction.path), prediction.sha256).astype(np.float32) / 255.0


def _save_prediction(store: Store, film: Film, frame: Frame, version_id: int, probs: np.ndarray,
                     set_uncertainty: bool) -> None:
    stored = quantise_probs(probs)
    # A name of its own per write: a second run on this frame must not replace the file a row points to.
    relative = f"{film.storage_dir}/predictions/v{version_id}/{frame.index:06d}-{uuid.uuid4().hex[:12]}.png"
    sha = write_png(store.path(relative), stored)  # the file first, then the row that points to it
    row = Prediction(frame_id=frame.id, model_version_id=version_id, path=relative, sha256=sha,
                     defect_pixels=int((stored >= 128).sum()), uncertainty=frame_uncertainty(stored))
    try:
        inserted = _insert_prediction(store, row, set_uncertainty)
    except BaseException:
        store.path(relative).unlink(missing_ok=True)  # no row points to it
        raise
    if not inserted:  # another process predicted it meanwhile: keep its row and file, drop ours
        store.path(relative).unlink(missing_ok=True)


def _has_prediction(session: Any, frame_id: int, version_id: int) -> bool:
    return session.execute(select(Prediction.id).where(Prediction.frame_id == frame_id,
                                                       Prediction.model_version_id == version_id)).first() is not None


def _insert_prediction(store: Store, row: Prediction, set_uncertainty: bool) -> bool:
    """Insert `row` (and copy its uncertainty to its frame when `set_uncertainty`); False, inserting
    nothing, when the frame already has a prediction by that version. The check before the insert
    only spares the common case an error: on PostgreSQL (READ COMMITTED) another run's row can land
    between the two, and the unique (frame, version) key refusing ours is that same race lost."""
    try:
        with store.write() as s:
            if _has_prediction(s, row.frame_id, row.model_version_id):
                return False
            s.add(row)
            s.flush()
            if set_uncertainty:
                s.execute(update(Frame).where(Frame.id == row.frame_id).values(uncertainty=row.uncertainty))
        return True
    except IntegrityError:
        with store.session() as s:
            if _has_prediction(s, row.frame_id, row.model_version_id):
                return False
        raise  # not the race (e.g. the frame was deleted): the caller removes our file


def _predicted_frame_ids(store: Store, film: Film, version_id: int, first: int, last: int) -> set[int]:
    """Ids of the film's frames with index in first..last (inclusive) predicted by `version_id`."""
    with store.session() as s:
        return set(s.execute(select(Prediction.frame_id).join(Frame, Frame.id == Prediction.frame_id).where(
            Frame.film_id == film.id, Frame.index.between(first, last),
            Prediction.model_version_id == version_id)).scalars())


def predict_film(store: Store, film: Film, version: ModelVersion | None = None, default_model: str | Path | None = None,
                 device: str = "auto", job: JobContext | None = None, tiling: "TilingConfig | None" = None,
                 limit: int | None = None, frame_indices: Sequence[int] | None = None) -> DetectResult:
    """The film-detection use case in one process: `correlnet film detect` and the re-predict after
    fine-tuning (the worker's "predict" jobs run the same three steps split into chunks: studio.chunks).

    `pin_model_version` (version None: the film's active model, pinned when it has none), then
    `detect_film` (resumable; `frame_indices`, `limit` as there), then `refresh_review_order`.
    job: progress and cancel, as in `detect_film`.
    """
    version = pin_model_version(store, film, version, default_model)
    result = detect_film(store, film, version, device=device, job=job, tiling=tiling, limit=limit,
                         frame_indices=frame_indices)
    refresh_review_order(store, film.id, version.id)
    return result


def refresh_review_order(store: Store, film_id: int, version_id: int) -> bool:
    """After a detection: when `version_id` is the film's active model, copy its predictions'
    uncertainty into the review order (Frame.uncertainty). Returns whether it did."""
    from studio.active import refresh_frame_uncertainty

    with store.session() as s:
        active_id = s.get(Film, film_id).active_model_version_id
    if active_id != version_id:
        return False
    refresh_frame_uncertainty(store, film_id, version_id)
    return True


def detect_film(store: Store, film: Film, model_version: ModelVersion | None = None, device: Any = "auto",
                job: JobContext | None = None, tiling: "TilingConfig | None" = None,
                limit: int | None = None, frame_indices: Sequence[int] | None = None,
                load: Callable[[Store, ModelVersion, Any], Any] | None = None) -> DetectResult:
    """Predict the film's frames not yet predicted by `model_version` (default: the active one).

    Each frame is seen with its stored neighbours (Frame.prev_index/next_index). `frame_indices` restricts
    the run to those frame indices (e.g. the frame a restorer opened, a worker's chunk): only their rows,
    their neighbours' and their predictions are read, never the whole film's. `limit` stops after that many
    new frames (previews, tests). Safe to interrupt: finished frames are kept and a new run resumes.
    job: gets report(done=0, total=frames to do, unit="frame") first, then done + 1 after each stored
    frame; once it is cancelled, JobCancelled is raised after the frame in progress is stored (unless
    that was the last).
    load: called as load(store, version, device) for the model when there is a frame to do (default
    `load_version_model`; a worker running chunk after chunk passes its cache of the last model).
    """
    from correlnet.device import resolve_device
    from correlnet.prediction import detect_frames
    from correlnet.tiling import TilingConfig

    version = model_version or active_model_version(store, film)
    with store.session() as s:
        active_id = s.get(Film, film.id).active_model_version_id
    device = resolve_device(device)
    asked = set(range(frame_count(store, film)) if frame_indices is None else (int(i) for i in frame_indices))
    rows = frames_around(store, film, asked)  # the frames asked for and their neighbours, nothing more
    wanted = sorted(asked & rows.keys())  # indices outside the film are left out
    done = _predicted_frame_ids(store, film, version.id, wanted[0], wanted[-1]) if wanted else set()
    new = [i for i in wanted if rows[i].id not in done]
    todo, skipped = new[:limit], len(wanted) - len(new)
    job = job_or_null(job)
    job.report(done=0, total=len(todo), unit="frame")
    if not todo:
        return DetectResult(version.id, 0, skipped)
    job.raise_if_cancelled(f"detection cancelled before its first frame (0 of {len(todo)} frames predicted)")
    model = (load or load_version_model)(store, version, device)
    # detect_frames sees the rows read as a sequence of their own (positions in index order, so its
    # order and its reuse of a neighbour's features are the film's); a neighbour's own neighbours are
    # never asked for (it is not predicted here) and point to itself.
    frames = [rows[i] for i in sorted(rows)]
    position = {f.index: k for k, f in enumerate(frames)}
    neighbours = [(position.get(f.prev_index, k), position.get(f.next_index, k)) for k, f in enumerate(frames)]
    count = 0

    def saved(future: Future) -> None:
        nonlocal count
        future.result()  # the save's own error (disk full, database refused) stops the run here
        count += 1
        job.report(done=count, total=len(todo), unit="frame")
        if count < len(todo):  # a cancel after the last frame changes nothing: the run is complete
            job.raise_if_cancelled(f"detection cancelled after {count} of {len(todo)} frames; those frames are kept")

    # Frame i's prediction is written (PNG encoding, uncertainty, its row) on one thread while frame
    # i+1 is predicted; at most one write is in flight, and a frame counts as done once it is stored.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="correlnet-save") as writer:
        pending: Future | None = None
        for index, probs in detect_frames(model, lambda i: frame_gray(store, frames[i]), neighbours,
                                          tiling or TilingConfig.for_device(device), device,
                                          indices=[position[i] for i in todo]):
            if pending is not None:
                saved(pending)
            pending = writer.submit(_save_prediction, store, film, frames[index], version.id, probs,
                                    active_id in (None, version.id))
        if pending is not None:
            saved(pending)
    return DetectResult(version.id, count, skipped)


def latest_prediction(store: Store, frame_id: int) -> Prediction | None:
    """The proposal a restorer sees for a frame: the prediction by the film's active model version, else
    the most recent prediction of any version, else None."""
    with store.session() as s:
        frame = s.get(Frame, frame_id)
        if frame is None:
            raise LookupError(f"no frame with id {frame_id}")
        active_id = s.get(Film, frame.film_id).active_model_version_id
        query = select(Prediction).where(Prediction.frame_id == frame_id)
        if active_id is not None:
            hit = s.execute(query.where(Prediction.model_version_id == active_id)).scalar_one_or_none()
            if hit is not None:
                return hit
        return s.execute(query.order_by(Prediction.id.desc())).scalars().first()
