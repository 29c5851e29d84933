"""What a restorer's corrections are evidence of, and the film's fixed validation split.

A frame's evidence is decided by its current correction row (the latest one), never by the row's
`kind`: "Accept frame as is" on a frame the restorer had edited stores the edited mask under kind
"accept", and a "reset" or an unchanged "edit" stores the model's own proposal.
- EDITED: the mask differs from the proposal it started from (`dice_vs_prediction` < 1), or there
  was no proposal (drawn by hand). Ground truth for every pixel of the frame: it trains and it may
  validate.
- ACCEPTED: the mask is the model's proposal (`dice_vs_prediction` == 1, an exact equality for
  Dice). Weak evidence: its marked pixels may be false positives nobody checked, so they never
  become a training target, and the frame never validates (a model agreeing with its own proposal
  scores ~1.0: issue 13). Its unmarked pixels are negatives a person looked at: fine-tuning draws
  crops from it only where it marks nothing (`studio.crop_sampler`).
See docs/training.md, "Per-film fine-tuning: evidence". No torch here: the web app imports it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select

from db.models import Correction, Frame

EDITED, ACCEPTED = "edited", "accepted"


def correction_evidence(row: Correction) -> str:
    """EDITED or ACCEPTED for one correction row (see the module docstring)."""
    dice = row.dice_vs_prediction
    return EDITED if dice is None or dice < 1.0 else ACCEPTED


def edited_clause() -> Any:
    """`correction_evidence(row) == EDITED` as a SQL condition on Correction rows (for counting)."""
    return or_(Correction.dice_vs_prediction.is_(None), Correction.dice_vs_prediction < 1.0)


@dataclass(frozen=True)
class FrameEvidence:
    frame: Frame
    correction: Correction  # the frame's current (latest) correction row
    kind: str  # EDITED or ACCEPTED


@dataclass(frozen=True)
class EvidenceSplit:
    """A film's corrected frames by use. validation: EDITED frames only, fixed across retrains.
    unused: frames on the validation side whose current mask is the model's proposal (they neither
    validate nor train, so the split stays fixed)."""

    train_edited: list[FrameEvidence]
    train_accepted: list[FrameEvidence]
    validation: list[FrameEvidence]
    unused: list[FrameEvidence]

    @property
    def edited(self) -> int:
        return len(self.train_edited) + len(self.validation)


def film_evidence(session: Any, film_id: int) -> list[FrameEvidence]:
    """Every frame of the film with a correction, by frame index, with its current row classified."""
    latest = (select(func.max(Correction.id)).join(Frame, Frame.id == Correction.frame_id)
              .where(Frame.film_id == film_id).group_by(Correction.frame_id))
    rows = session.execute(select(Frame, Correction).join(Correction, Correction.frame_id == Frame.id)
                           .where(Correction.id.in_(latest)).order_by(Frame.index)).all()
    return [FrameEvidence(frame, row, correction_evidence(row)) for frame, row in rows]


def hash_unit(film_id: int, index: int) -> float:
    """A frame's fixed position in [0, 1) for the validation split, a pure function of (film, index)."""
    digest = hashlib.sha256(f"correlnet-validation:{film_id}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_validation(store: Any, film_id: int, fraction: float, min_frames: int) -> EvidenceSplit:
    """Split the film's corrected frames by evidence and fix the validation side in the store.

    Only EDITED frames are ever moved to the validation side (Frame.is_validation, never unset, so
    the split holds across retrains: MONAI Label issue 1752): those whose hash_unit < fraction, then,
    while fewer than `min_frames` validate and more than one edited frame trains, the training frame
    with the smallest hash. A frame on the validation side whose mask is (now) the model's proposal
    is left out of both sides.
    """
    with store.write() as s:
        evidence = film_evidence(s, film_id)
        for e in evidence:
            if e.kind == EDITED and not e.frame.is_validation and hash_unit(film_id, e.frame.index) < fraction:
                e.frame.is_validation = True
        edited = [e for e in evidence if e.kind == EDITED]
        train = sorted((e for e in edited if not e.frame.is_validation),
                       key=lambda e: hash_unit(film_id, e.frame.index))
        while sum(e.frame.is_validation for e in edited) < min_frames and len(train) > 1:
            train.pop(0).frame.is_validation = True
        s.flush()
    return EvidenceSplit(
        train_edited=[e for e in evidence if e.kind == EDITED and not e.frame.is_validation],
        train_accepted=[e for e in evidence if e.kind == ACCEPTED and not e.frame.is_validation],
        validation=[e for e in evidence if e.kind == EDITED and e.frame.is_validation],
        unused=[e for e in evidence if e.kind == ACCEPTED and e.frame.is_validation])
