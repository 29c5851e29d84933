"""Saving the canvas as a Correction each time the drawing changes, without losing anyone's work.

A canvas session (one frame, one `CanvasSession`; webapp/canvas_input.py opens one per drawing token)
composites all its objects onto the mask it started from (`base`). The canvas sends its whole drawing
at each mouse-up; we save only when the drawing's objects changed and the resulting mask differs from
the current one.

Two restorers on the same frame: before saving we look at the frame's current correction; if it is
neither our base nor our own last save, someone else saved meanwhile, so we rebase onto their mask.
Add and erase strokes are set operations (x -> (x & K) | L), so re-applying our drawing on top of
their mask keeps both edits; history() keeps both rows and the later save is current.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from studio import corrections
from webapp.canvas import CanvasGeometry, apply_drawing, drawing_objects


@dataclass
class CanvasSession:
    """State of one mounted canvas. base (H, W) bool: the mask the drawing applies to;
    base_id: the correction row base came from (None = the model's proposal);
    last_saved_id / last_mask: our last save; objects: the canvas objects of the drawing last
    handled (`drawing_objects`)."""

    base: np.ndarray
    base_id: int | None
    last_saved_id: int | None = None
    last_mask: np.ndarray | None = None
    objects: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def start(cls, store, frame_id: int, fallback: np.ndarray) -> "CanvasSession":
        """Begin from the frame's current correction, else from `fallback` (the model's proposal,
        `FrameView.proposal`: never the filtered overlay, so a display filter cannot change what is saved)."""
        row = corrections.current_correction(store, frame_id)
        if row is None:
            return cls(base=fallback.astype(bool), base_id=None, last_mask=None)
        mask = corrections.load_correction(store, row)
        return cls(base=mask, base_id=row.id, last_mask=mask)


def autosave(store, frame_id: int, json_data: dict | None, geometry: CanvasGeometry, session: CanvasSession,
             author: str, predicted: np.ndarray | None = None):
    """Save the drawing as the frame's correction if it changed anything; returns the new Correction
    row or None. Mutates `session` (rebase, last drawing, last save)."""
    objects = drawing_objects(json_data)
    if objects == session.objects:
        return None
    current = corrections.current_correction(store, frame_id)
    current_id = current.id if current is not None else None
    if current_id is not None and current_id not in (session.base_id, session.last_saved_id):
        session.base = corrections.load_correction(store, current)  # another session saved: keep its work
        session.base_id = current_id
        session.last_mask = session.base
    mask = apply_drawing(json_data, geometry, session.base, predicted)
    session.objects = objects
    unchanged_ref = session.last_mask if current_id is not None else None
    if unchanged_ref is not None and np.array_equal(mask, unchanged_ref):
        return None
    if current_id is None and not objects:
        return None
    row = corrections.save_correction(store, frame_id, mask, author, kind="edit")
    session.last_saved_id, session.last_mask = row.id, mask
    return row
