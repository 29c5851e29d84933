"""A restorer's corrections: an append-only history of masks per frame.

Rows are never updated or deleted. The latest row (highest id) of a frame is its current mask; an
undo adds a row equal to an earlier state; the model's proposal (Prediction) is never touched.
Two restorers saving the same frame at once both keep their row; the later one is current.
Each row's parent_id is the row whose state it replaced, so repeated undo walks back in time:
edit rows point to the row they replaced, an undo row points to the parent of the state it restores.
"""

from __future__ import annotations

import uuid

import numpy as np
from sqlalchemy import select

from db.files import read_png, write_png
from db.models import CORRECTION_KINDS, Correction, Film, Frame
from db.store import Store
from studio.active import mask_dice
from studio.detection import THRESHOLD, latest_prediction, load_prediction


class NothingToUndo(LookupError):
    """The frame is already at its earliest state (the model's proposal, or no correction at all)."""


def _frame_and_film(store: Store, frame_id: int) -> tuple[Frame, Film]:
    with store.session() as s:
        frame = s.get(Frame, frame_id)
        if frame is None:
            raise LookupError(f"no frame with id {frame_id}; list a film's frames with studio.films.film_frames")
        return frame, s.get(Film, frame.film_id)


def _as_mask(mask: np.ndarray, film: Film) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != (film.height, film.width):
        raise ValueError(f"mask has shape {mask.shape} but film {film.name!r} frames are (H, W) = "
                         f"({film.height}, {film.width}); draw the mask at the frame's full resolution")
    return mask > 0 if mask.dtype != bool else mask


def _lock_frame(session, frame_id: int) -> None:  # type: ignore[no-untyped-def]
    """Serialise writers of one frame. SQLite: already done by BEGIN IMMEDIATE (FOR UPDATE is ignored);
    PostgreSQL (READ COMMITTED): the row lock makes a second writer wait, then read the new latest row."""
    session.execute(select(Frame.id).where(Frame.id == frame_id).with_for_update())


def _latest(session, frame_id: int) -> Correction | None:  # type: ignore[no-untyped-def]
    return session.execute(select(Correction).where(Correction.frame_id == frame_id)
                           .order_by(Correction.id.desc())).scalars().first()


def _write_mask(store: Store, film: Film, frame: Frame, mask: np.ndarray) -> tuple[str, str]:
    relative = f"{film.storage_dir}/corrections/{frame.index:06d}-{uuid.uuid4().hex[:12]}.png"
    sha = write_png(store.path(relative), mask.astype(np.uint8) * 255)
    return relative, sha


def _proposal(store: Store, frame_id: int, threshold: float = THRESHOLD) -> tuple[int | None, np.ndarray | None]:
    prediction = latest_prediction(store, frame_id)
    if prediction is None:
        return None, None
    return prediction.id, load_prediction(store, prediction) >= threshold


def save_correction(store: Store, frame_id: int, mask: np.ndarray, author: str, kind: str = "edit") -> Correction:
    """Store `mask` ((H, W) bool or {0, 1} / {0, 255}, the frame's full size) as the frame's current mask.

    The mask file is written first, then the row (so no row ever points to a missing file). The row
    records the proposal it started from and the Dice between the two (the restorer's effort).
    """
    return _append(store, frame_id, mask, author, kind, chain=True)


def _append(store: Store, frame_id: int, mask: np.ndarray, author: str, kind: str, chain: bool) -> Correction:
    if kind not in CORRECTION_KINDS:
        raise ValueError(f"kind must be one of {CORRECTION_KINDS}, got {kind!r}")
    if not author:
        raise ValueError("a correction needs an author (the restorer's name)")
    frame, film = _frame_and_film(store, frame_id)
    mask = _as_mask(mask, film)
    prediction_id, proposal = _proposal(store, frame_id)
    relative, sha = _write_mask(store, film, frame, mask)
    dice = mask_dice(mask, proposal) if proposal is not None else None
    with store.write() as s:
        _lock_frame(s, frame_id)
        parent = _latest(s, frame_id) if chain else None
        row = Correction(frame_id=frame_id, path=relative, sha256=sha, author=author, kind=kind,
                         parent_id=parent.id if parent else None, prediction_id=prediction_id,
                         dice_vs_prediction=dice, defect_pixels=int(mask.sum()))
        s.add(row)
        s.flush()
        return row


def load_correction(store: Store, correction: Correction) -> np.ndarray:
    """The mask of one correction row: (H, W) bool."""
    return read_png(store.path(correction.path), correction.sha256) > 0


def current_correction(store: Store, frame_id: int) -> Correction | None:
    with store.session() as s:
        return _latest(s, frame_id)


def current_mask(store: Store, frame_id: int) -> np.ndarray | None:
    """The frame's current corrected mask, (H, W) bool, or None when no one corrected it yet."""
    row = current_correction(store, frame_id)
    return None if row is None else load_correction(store, row)


def history(store: Store, frame_id: int) -> list[Correction]:
    """Every correction row of the frame, oldest first (the last one is current)."""
    with store.session() as s:
        return list(s.execute(select(Correction).where(Correction.frame_id == frame_id)
                              .order_by(Correction.id)).scalars())


def accept_prediction(store: Store, frame_id: int, author: str, threshold: float = THRESHOLD) -> Correction:
    """Take the model's proposal (probs >= threshold) as the frame's correct mask (kind "accept")."""
    _, proposal = _proposal(store, frame_id, threshold)
    if proposal is None:
        raise LookupError(f"frame {frame_id} has no prediction to accept; run `correlnet film detect` first")
    return save_correction(store, frame_id, proposal, author, kind="accept")


def accept_frame(store: Store, frame_id: int, author: str) -> Correction:
    """"Accept frame as is": the frame's current correction stored again as accepted, or the model's
    proposal when nobody corrected it. Raises LookupError when it has neither (not predicted yet)."""
    current = current_mask(store, frame_id)
    if current is None:
        return accept_prediction(store, frame_id, author)
    return save_correction(store, frame_id, current, author, kind="accept")


def accept_unreviewed(store: Store, frame_ids: list[int], author: str) -> tuple[list[int], list[int], list[int]]:
    """Accept the model's proposal on every frame of `frame_ids` nobody corrected or accepted yet (a
    restorer's "the rest of this shot is fine"). Frames already reviewed keep their mask untouched.
    Returns (accepted, already reviewed, not predicted) frame ids."""
    accepted, reviewed, unpredicted = [], [], []
    for frame_id in frame_ids:
        if current_correction(store, frame_id) is not None:
            reviewed.append(frame_id)
            continue
        try:
            accept_prediction(store, frame_id, author)
        except LookupError:
            unpredicted.append(frame_id)
            continue
        accepted.append(frame_id)
    return accepted, reviewed, unpredicted


def reset_to_prediction(store: Store, frame_id: int, author: str) -> Correction:
    """Go back to the model's proposal (kind "reset"); the history is kept and undo brings back the
    state the reset replaced."""
    return _reset(store, frame_id, author, chain=True)


def _reset(store: Store, frame_id: int, author: str, chain: bool) -> Correction:
    _, proposal = _proposal(store, frame_id)
    if proposal is None:
        raise NothingToUndo(f"frame {frame_id} has no prediction to go back to")
    return _append(store, frame_id, proposal, author, "reset", chain=chain)


def undo(store: Store, frame_id: int, author: str) -> Correction:
    """Restore the state before the current one, by adding a row (kind "undo") equal to it.

    Before the first correction lies the model's proposal: undoing the first correction resets to it.
    Raises NothingToUndo when there is nothing earlier (no correction, or already at the proposal).
    """
    with store.write() as s:
        _lock_frame(s, frame_id)
        current = _latest(s, frame_id)
        if current is None:
            raise NothingToUndo(f"frame {frame_id} has no correction to undo")
        if current.parent_id is not None:
            earlier = s.get(Correction, current.parent_id)
            row = Correction(frame_id=frame_id, path=earlier.path, sha256=earlier.sha256, author=author,
                             kind="undo", parent_id=earlier.parent_id, prediction_id=earlier.prediction_id,
                             dice_vs_prediction=earlier.dice_vs_prediction, defect_pixels=earlier.defect_pixels)
            s.add(row)  # the file is shared: stored masks are immutable
            s.flush()
            return row
        if current.kind == "reset":
            raise NothingToUndo(f"frame {frame_id} is already back at the model's proposal")
    # Undoing the first correction: back to the proposal, as a row with no parent (nothing further back).
    return _reset(store, frame_id, author, chain=False)
