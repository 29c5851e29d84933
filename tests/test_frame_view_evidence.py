"""The Review picture tells checked from unchecked (issue 13): a frame accepted as is holds the model's
own proposal and is painted in the proposal's colour; Fig. 5's green is for frames a restorer edited."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from studio.evidence import ACCEPTED, EDITED
from webapp.frame_view import build_view
from webapp.overlay import AGREED_RGB, FALSE_POSITIVE_RGB, PREDICTED_RGB, MaskFilter

H, W = 16, 20


def _view(mask: np.ndarray, kind: str):
    frame = np.full((H, W), 128, np.uint8)
    proposal = np.zeros((H, W), bool)
    proposal[2:5, 2:5] = proposal[10:12, 14:17] = True
    probs = np.where(proposal, np.float32(0.9), np.float32(0.0))
    return build_view(None, SimpleNamespace(index=0), MaskFilter(), 1.0, load_image=lambda s, f: frame,
                      load_pred=lambda s, f: probs, load_mask=lambda s, f: mask(proposal),
                      load_evidence=lambda s, f: kind)


def test_accepted_frame_is_painted_as_a_proposal_not_as_checked() -> None:
    view = _view(lambda p: p, ACCEPTED)
    assert view.evidence == ACCEPTED
    assert tuple(view.picture[3, 3]) == PREDICTED_RGB and tuple(view.picture[10, 15]) == PREDICTED_RGB
    assert not (view.picture == np.array(AGREED_RGB, np.uint8)).all(axis=2).any()


def test_edited_frame_keeps_the_fig5_colours() -> None:
    def erase_second(p: np.ndarray) -> np.ndarray:
        out = p.copy()
        out[10:12, 14:17] = False  # the restorer erased a false positive
        return out

    view = _view(erase_second, EDITED)
    assert tuple(view.picture[3, 3]) == AGREED_RGB and tuple(view.picture[10, 15]) == FALSE_POSITIVE_RGB
