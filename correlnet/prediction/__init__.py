"""Prediction, the one home: one triplet and a sequence, at native resolution.

`predict_triplet_tiled(model, frames (3, H, W), cfg, device)` -> probs (H, W) of the middle frame
(`triplet.py`); `detect_frames(model, read_frame, neighbours, cfg, device)` yields each frame's probs
of a sequence, streaming a `correlnet.models.base.StreamingNet` (per-frame features and per-pair
correlations computed once) and running any other model on each stacked triplet (`sequence.py`).
Both pad a frame once (`FrameTiling`, through the models' `InputPadder`), cut it with
`correlnet.tiling`, run tiles through `in_batches`, prepare the model (`correlnet.inference`) and
apply its temporal gate.
"""

from .sequence import default_neighbours, detect_frames
from .triplet import FrameTiling, check_eval, in_batches, predict_triplet_tiled, size_multiple_of

__all__ = ["FrameTiling", "check_eval", "default_neighbours", "detect_frames", "in_batches",
           "predict_triplet_tiled", "size_multiple_of"]
