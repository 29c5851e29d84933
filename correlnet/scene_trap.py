"""The scene-feature trap's score: how much of the scene's defect-like blobs a detector flags.

The paper's point (Sec. 1, Fig. 1) is that a single-frame detector cannot tell a dark spot painted
in the scene from a blotch on the film. `correlnet.evaluate` repeats its triplets with blobs painted
into the scene (`correlnet.synth.scene.add_scene_blobs`: in all three frames, moving with the camera)
before the defects are added, and counts here how many blob pixels and blobs the model flags: the
false-positive rate a single-frame detector cannot avoid and that the correlation is meant to remove.

The blobs are generated in `correlnet.synth.scene`, beside the training's scene content (one home for
the scene's counter-examples); this module only scores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from correlnet.metrics import PixelCounts, count_pixels

__all__ = ["SceneTrapResult"]


@dataclass
class SceneTrapResult:
    """Counts over the trap's triplets: blob pixels (not also a true defect) and how many were flagged,
    blobs and how many were flagged (at least `flag_fraction` of their pixels), and the defect counts
    with the blobs present."""

    blob_pixels: int = 0
    flagged_pixels: int = 0
    blobs: int = 0
    blobs_flagged: int = 0
    counts: PixelCounts = field(default_factory=lambda: PixelCounts(0, 0, 0))  # defect P/R/F1 with blobs present

    @property
    def fp_rate(self) -> float:
        """Fraction of scene-blob pixels (not also a true defect) predicted as defect."""
        return self.flagged_pixels / self.blob_pixels if self.blob_pixels else 0.0

    @property
    def blob_fp_rate(self) -> float:
        return self.blobs_flagged / self.blobs if self.blobs else 0.0

    def add(self, pred: np.ndarray, true: np.ndarray, blobs: list[np.ndarray], flag_fraction: float) -> None:
        """Count one triplet: pred, true (H, W) bool of the middle frame; blobs: one (H, W) bool mask per
        blob (`add_scene_blobs`). A defect drawn over a blob is a true defect there, not a trap pixel."""
        self.counts = self.counts + count_pixels(pred, true)
        for blob in blobs:
            blob = blob & ~true
            n = int(blob.sum())
            if n == 0:
                continue
            flagged = int((pred & blob).sum())
            self.blobs += 1
            self.blob_pixels += n
            self.flagged_pixels += flagged
            self.blobs_flagged += int(flagged >= flag_fraction * n)
