"""One film's detection on several workers: shot-aligned chunks of its "predict" job (issue 16).

The worker that claims a film's "predict" job pins the model version on it, plans chunks over the
frames that version has not predicted yet (`plan_chunks`) and inserts them once (`split_job`). The
parent then stays "running" with no worker of its own: any worker claims any queued chunk
(`studio.jobs.claim_next_job`; the film's running parent does not hold back its own chunks, but still
holds back fine-tuning of the film, and a running fine-tuning job holds back the parent). A chunk
predicts its frame indices with the parent's version; frames already predicted are skipped
(`Prediction` is unique per frame and version), so a chunk re-run after its worker died does no frame
twice. The chunk that finishes last finishes the parent (`finish_chunk`: one transaction holding the
parent's lock, so exactly once); a cancel of the parent cancels the queued chunks at once and asks
the running ones to stop at their next report (`cancel_chunks`).

Locks go parent first, then chunks, in every transaction that takes both (PostgreSQL row locks; on
SQLite BEGIN IMMEDIATE serialises writers anyway); `recover_stale_jobs` locks only stale rows and
settles parents in a transaction of its own (`settle_orphans`). No torch here: the web app imports it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from db.models import Film, Frame, Prediction, TrainingJob
from studio.jobs import ACTIVE, JobError, for_update, has_chunks, locked_job, locked_with_parent, utcnow

CHUNK_KIND = "predict_chunk"


@dataclass(frozen=True)
class ChunkConfig:
    """How a film's frames to predict are cut into chunks: about `target_chunks` of them (so each of up
    to ~16 workers gets several and they finish together), each of min_frames..max_frames frames to do.
    A chunk's first model load and its boundary frames' neighbours outside it cost extra: the minimum
    keeps that small beside the chunk's own frames, the maximum keeps a lost chunk cheap to redo."""

    target_chunks: int = 64
    min_frames: int = 4
    max_frames: int = 1000

    def __post_init__(self) -> None:
        if not 1 <= self.min_frames <= self.max_frames or self.target_chunks < 1:
            raise ValueError(f"chunks need 1 <= min_frames <= max_frames and target_chunks >= 1, got {self}")

    def frames_per_chunk(self, frames_to_do: int) -> int:
        return min(max(math.ceil(frames_to_do / self.target_chunks), self.min_frames), self.max_frames)


def plan_chunks(todo: Sequence[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Cut the frames to predict into chunks at shot boundaries.

    todo: (frame index, shot) of each frame to predict, in index order (a shot is a run of frames).
    size: frames to do per chunk at most (`ChunkConfig.frames_per_chunk`).
    Returns (first_index, last_index) ranges, inclusive, in order: consecutive short shots are merged
    while the chunk stays within `size`; a shot longer than `size` is cut into near-equal pieces, the
    only cuts inside a shot. Every frame of `todo` lies in exactly one range; a range may also hold
    frames not in `todo` (already predicted: the chunk skips them).
    """
    if size < 1:
        raise ValueError(f"a chunk holds at least one frame, got size {size}")
    shots: list[list[int]] = []
    for i, (index, shot) in enumerate(todo):
        if i and index <= todo[i - 1][0]:
            raise ValueError(f"frame indices must increase: {todo[i - 1][0]} then {index}")
        if i and shot == todo[i - 1][1]:
            shots[-1].append(index)
        else:
            shots.append([index])
    chunks: list[list[int]] = []
    open_chunk: list[int] = []
    for frames in shots:
        if len(frames) > size:  # a long shot: its own near-equal pieces
            if open_chunk:
                chunks.append(open_chunk)
                open_chunk = []
            pieces = math.ceil(len(frames) / size)
            base, extra = divmod(len(frames), pieces)  # the first `extra` get one more
            start = 0
            for k in range(pieces):
                end = start + base + (k < extra)
                chunks.append(frames[start:end])
                start = end
        elif len(open_chunk) + len(frames) <= size:
            open_chunk = open_chunk + frames
        else:
            chunks.append(open_chunk)
            open_chunk = list(frames)
    if open_chunk:
        chunks.append(open_chunk)
    return [(c[0], c[-1]) for c in chunks]


def frames_to_predict(store: Any, film_id: int, version_id: int) -> list[tuple[int, int]]:
    """(index, shot) of the film's frames without a prediction by the version, in index order."""
    done = select(Prediction.frame_id).where(Prediction.model_version_id == version_id)
    with store.session() as s:
        return [(i, shot) for i, shot in s.execute(select(Frame.index, Frame.shot).where(
            Frame.film_id == film_id, Frame.id.not_in(done)).order_by(Frame.index))]


def split_job(store: Any, parent_id: int, version_id: int, ranges: Sequence[tuple[int, int]], total: int) -> int | None:
    """Insert the parent's chunks (once: a second call finds them and inserts nothing) and pin the
    version on the parent; returns the number of chunks, None when the parent was cancelled meanwhile
    (nothing inserted). Raises JobError when the parent is no longer running (recovered as stale)."""
    with store.write() as s:
        parent = locked_job(s, parent_id)
        if parent is None or parent.status != "running":
            raise JobError(f"job {parent_id} is no longer running: not splitting it")
        existing = s.execute(select(func.count()).select_from(TrainingJob).where(
            TrainingJob.parent_id == parent_id)).scalar_one()
        if existing:
            return int(existing)
        if parent.cancel_requested:
            return None
        parent.model_version_id, parent.total_steps, parent.step = version_id, total, 0
        parent.message = f"split into {len(ranges)} chunk(s) of {total} frame(s) to predict"
        s.add_all(TrainingJob(film_id=parent.film_id, kind=CHUNK_KIND, status="queued", parent_id=parent_id,
                              first_index=a, last_index=b, model_version_id=version_id, cancel_requested=False,
                              force_publish=False, step=0, created_at=parent.created_at) for a, b in ranges)
        return len(ranges)


def list_chunks(store: Any, parent_id: int) -> list[TrainingJob]:
    with store.session() as s:
        return list(s.execute(select(TrainingJob).where(TrainingJob.parent_id == parent_id)
                              .order_by(TrainingJob.first_index)).scalars())


def cancel_chunks(s: Any, parent: TrainingJob) -> None:
    """Inside a transaction holding the parent's lock: cancel its queued chunks, ask the running ones."""
    for chunk in s.execute(for_update(select(TrainingJob).where(
            TrainingJob.parent_id == parent.id, TrainingJob.status.in_(ACTIVE)), s)).scalars():
        if chunk.status == "queued":
            chunk.status, chunk.finished_at, chunk.message = "cancelled", utcnow(), "cancelled before it started"
        else:
            chunk.cancel_requested = True


def finish_chunk(store: Any, chunk_id: int, worker_id: str, status: str, message: str) -> TrainingJob | None:
    """End a chunk run by `worker_id` and, when it was the last, its parent; returns the parent when this
    call finished it (exactly once: the parent's lock is held), else None. A chunk no longer this
    worker's (recovered as stale meanwhile) is left to its new owner."""
    with store.write() as s:
        parent, chunk = locked_with_parent(s, chunk_id) or (None, None)
        if parent is None:
            raise JobError(f"job {chunk_id} is not a detection chunk")
        if chunk.status != "running" or chunk.worker_id != worker_id:
            return None
        chunk.status, chunk.finished_at, chunk.heartbeat_at, chunk.message = status, utcnow(), utcnow(), message
        return parent if settle(s, parent) else None


def settle(s: Any, parent: TrainingJob) -> bool:
    """Inside a transaction holding the parent's lock: finish a running parent whose chunks have all
    ended (failed if one failed, cancelled if one was cancelled or the parent asked, else succeeded).
    Returns whether it finished it; a parent with no chunks (not split yet) is its worker's to finish."""
    if parent.status != "running":
        return False
    rows = s.execute(select(TrainingJob.status, TrainingJob.message, TrainingJob.first_index, TrainingJob.last_index)
                     .where(TrainingJob.parent_id == parent.id).order_by(TrainingJob.first_index)).all()
    if not rows or any(r.status in ACTIVE for r in rows):
        return False
    film = s.get(Film, parent.film_id)
    done = _frames_done(s, parent, film)
    kept = f"{done} of {parent.total_steps} frame(s) predicted and kept"
    failed = [r for r in rows if r.status == "failed"]
    if failed:
        first = failed[0]
        parent.status = "failed"
        parent.message = (f"{len(failed)} of {len(rows)} chunk(s) failed, the first (frame indices {first.first_index}-"
                          f"{first.last_index}): {first.message}; {kept}; queue detection again for the rest")
    elif parent.cancel_requested or any(r.status == "cancelled" for r in rows):
        parent.status, parent.message = "cancelled", f"detection cancelled: {kept}"
    else:
        workers = s.execute(select(func.count(func.distinct(TrainingJob.worker_id))).where(
            TrainingJob.parent_id == parent.id)).scalar_one()
        parent.status = "succeeded"
        parent.message = (f"predicted {done} frame(s) of {film.name!r} ({film.frame_count - parent.total_steps} "
                          f"already done) with model version {parent.model_version_id}, in {len(rows)} chunk(s) "
                          f"by {workers} worker(s)")
    parent.step, parent.finished_at, parent.eta_seconds = done, utcnow(), None
    return True


def settle_orphans(store: Any) -> list[TrainingJob]:
    """Finish running parents whose chunks have all ended but that no finisher settled (their last chunk
    was failed or cancelled by `recover_stale_jobs`). Returns the parents finished."""
    finished = []
    with store.write() as s:
        for parent in s.execute(for_update(select(TrainingJob).where(
                TrainingJob.status == "running", has_chunks()), s, skip_locked=True)).scalars():
            if settle(s, parent):
                finished.append(parent)
    return finished


def live_progress(s: Any, parents: Sequence[TrainingJob]) -> dict[int, dict[str, Any]]:
    """For running split parents: {id: step (frames predicted so far), eta_seconds, message (chunks)}."""
    out: dict[int, dict[str, Any]] = {}
    for parent in parents:
        if parent.status != "running" or parent.model_version_id is None:
            continue
        counts = dict(s.execute(select(TrainingJob.status, func.count()).where(
            TrainingJob.parent_id == parent.id).group_by(TrainingJob.status)).all())
        if not counts:
            continue
        workers = s.execute(select(func.count(func.distinct(TrainingJob.worker_id))).where(
            TrainingJob.parent_id == parent.id, TrainingJob.status == "running")).scalar_one()
        done = _frames_done(s, parent, s.get(Film, parent.film_id))
        elapsed = (utcnow() - parent.started_at).total_seconds() if parent.started_at else None
        eta = elapsed / done * (parent.total_steps - done) if done and elapsed else None
        ended = sum(n for status, n in counts.items() if status not in ACTIVE)
        out[parent.id] = {"step": done, "eta_seconds": eta, "message": (
            f"{ended} of {sum(counts.values())} chunk(s) done, {counts.get('running', 0)} running on {workers} worker(s)")}
    return out


def _frames_done(s: Any, parent: TrainingJob, film: Film) -> int:
    """Frames of the parent's run predicted so far: the film's frames its version has predicted, less
    those it had predicted before the split (frame_count - total_steps)."""
    predicted = s.execute(select(func.count()).select_from(Prediction).join(Frame, Frame.id == Prediction.frame_id)
                          .where(Frame.film_id == parent.film_id,
                                 Prediction.model_version_id == parent.model_version_id)).scalar_one()
    return min(max(int(predicted) - (film.frame_count - parent.total_steps), 0), parent.total_steps)
