"""Where fine-tuning crops its training triplets from a film's corrected frames.

Three kinds of crop, in shares set by FinetuneConfig (docs/training.md, "Per-film fine-tuning:
evidence"):
- "disagreement" (`disagreement_crop_fraction`): centred, with jitter, on a pixel where the
  restorer's mask and the proposal it started from differ, on EDITED frames. Erased false positives
  and added misses get half of these crops each when both exist (either alone gets them all); within
  a side a disagreement blob is drawn uniformly (a 3-pixel missed speck counts as much as an erased
  door frame), then a pixel of it. Train where the model was wrong.
- "defect" (`defect_crop_fraction`): centred on a defect pixel of an EDITED frame's mask, so the
  model keeps finding what it found (rehearsal of the film's true positives).
- "synthetic" (`synthetic_crop_fraction`): an EDITED frame's uniform window with synthetic defects
  (`SynthConfig.marks_only()`: blotches, dust, hairs, one set per frame of the triplet) composited
  onto the film's own frames; the target is the restorer's mask plus the synthetic defects of the
  middle frame. The paper's self-supervision on the film itself: rehearsal of what pre-training
  taught, on this film's look, so learning the restorer's erasures does not unlearn defects.
- "elsewhere" (the rest): a training frame drawn uniformly, EDITED or ACCEPTED, and a uniform window
  in it; in an ACCEPTED frame only a window where the frame marks nothing (its marks are the model's
  unchecked proposal), else an EDITED frame's uniform window.
A kind with nothing to centre on (no proposal stored, no defect) gives its share to the next one
(disagreement -> defect -> elsewhere); the synthetic share is its own.
Every crop is a function of (seed, item index); random horizontal and vertical flips.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from correlnet.synth import SynthConfig, degrade_triplet

CROP_KINDS = ("disagreement", "defect", "synthetic", "elsewhere")
NEGATIVE_TRIES = 16  # uniform windows tried in an accepted frame before falling back to an edited one


@dataclass
class TrainFrame:
    """One corrected frame for training. indices: the film frame indices (prev, mid, next) of its
    triplet; target (H, W) bool: its current mask; edited: EDITED evidence (else ACCEPTED, whose
    marked pixels are never a target); proposal (H, W) bool or None: the model's proposal the
    correction started from (None: not stored, e.g. drawn before any detection)."""

    indices: tuple[int, int, int]
    target: np.ndarray
    edited: bool
    proposal: np.ndarray | None = None


@dataclass(frozen=True)
class CropWindow:
    frame: int  # position in the TrainFrame list
    y: int
    x: int
    kind: str  # one of CROP_KINDS


@functools.cache
def _marks() -> SynthConfig:
    return SynthConfig.marks_only()


def _blobs(mask: np.ndarray) -> list[np.ndarray]:
    """8-connected components of a (H, W) bool mask as (n, 2) arrays of (y, x)."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return []
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    order = np.argsort(lab, kind="stable")
    splits = np.cumsum(np.bincount(lab, minlength=count)[1:])[:-1]
    return np.split(np.stack([ys[order], xs[order]], axis=1), splits)


class CorrectionCrops(Dataset):
    """Item i is {"frames": (3, c, c) float32 in [0, 1], "mask": (1, c, c) float32 in {0, 1}}.

    frames: film frame index -> (H, W) gray frame (float16 or float32 in [0, 1]), every index a
    TrainFrame names; samples: at least one EDITED TrainFrame; cfg: the FinetuneConfig (crop, seed
    and the shares above)."""

    def __init__(self, frames: Mapping[int, np.ndarray], samples: list[TrainFrame], length: int, cfg: Any):
        if not any(s.edited for s in samples):
            raise ValueError("CorrectionCrops needs at least one edited frame (accepted frames only give negatives)")
        self.frames, self.samples, self.length, self.cfg = frames, samples, length, cfg
        h, w = samples[0].target.shape
        self.ch, self.cw = min(cfg.crop, h), min(cfg.crop, w)
        self.edited = [k for k, s in enumerate(samples) if s.edited]
        self.defects = {k: np.argwhere(samples[k].target) for k in self.edited}
        self.with_defects = [k for k in self.edited if len(self.defects[k])]
        # (frame, blob) pairs per side: erased false positives, added misses
        self.sides = [[], []]
        for k in self.edited:
            proposal, target = samples[k].proposal, samples[k].target
            if proposal is not None:
                self.sides[0] += [(k, b) for b in _blobs(proposal & ~target)]
                self.sides[1] += [(k, b) for b in _blobs(target & ~proposal)]
        self.sides = [side for side in self.sides if side]

    def __len__(self) -> int:
        return self.length

    def _around(self, k: int, cy: int, cx: int, rng: np.random.Generator, kind: str) -> CropWindow:
        h, w = self.samples[k].target.shape
        y = int(np.clip(cy - self.ch // 2 + rng.integers(-(self.ch // 4), self.ch // 4 + 1), 0, h - self.ch))
        x = int(np.clip(cx - self.cw // 2 + rng.integers(-(self.cw // 4), self.cw // 4 + 1), 0, w - self.cw))
        return CropWindow(k, y, x, kind)

    def _uniform(self, k: int, rng: np.random.Generator) -> tuple[int, int]:
        h, w = self.samples[k].target.shape
        return int(rng.integers(h - self.ch + 1)), int(rng.integers(w - self.cw + 1))

    def window(self, i: int) -> CropWindow:
        """Where item i is cut from (its kind included); deterministic per (cfg.seed, i)."""
        rng = np.random.default_rng([self.cfg.seed, i])
        u = rng.random()
        if u < self.cfg.disagreement_crop_fraction and self.sides:
            side = self.sides[int(rng.integers(len(self.sides)))]
            k, blob = side[int(rng.integers(len(side)))]
            cy, cx = blob[int(rng.integers(len(blob)))]
            return self._around(k, int(cy), int(cx), rng, "disagreement")
        if u < self.cfg.disagreement_crop_fraction + self.cfg.defect_crop_fraction and self.with_defects:
            k = self.with_defects[int(rng.integers(len(self.with_defects)))]
            cy, cx = self.defects[k][int(rng.integers(len(self.defects[k])))]
            return self._around(k, int(cy), int(cx), rng, "defect")
        centred = self.cfg.disagreement_crop_fraction + self.cfg.defect_crop_fraction
        if centred <= u < centred + self.cfg.synthetic_crop_fraction:
            k = self.edited[int(rng.integers(len(self.edited)))]
            return CropWindow(k, *self._uniform(k, rng), "synthetic")
        k = int(rng.integers(len(self.samples)))
        if not self.samples[k].edited:
            marked = self.samples[k].target
            for _ in range(NEGATIVE_TRIES):
                y, x = self._uniform(k, rng)
                if not marked[y:y + self.ch, x:x + self.cw].any():
                    return CropWindow(k, y, x, "elsewhere")
            k = self.edited[int(rng.integers(len(self.edited)))]
        return CropWindow(k, *self._uniform(k, rng), "elsewhere")

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        win = self.window(i)
        sample = self.samples[win.frame]
        rows, cols = slice(win.y, win.y + self.ch), slice(win.x, win.x + self.cw)
        frames = np.stack([self.frames[j][rows, cols] for j in sample.indices]).astype(np.float32)
        mask = np.zeros((1, self.ch, self.cw), np.float32)
        if sample.edited:  # an accepted frame's window marks nothing (or came from an edited frame)
            mask[0] = sample.target[rows, cols]
        if win.kind == "synthetic":
            frames, marks = degrade_triplet(frames, _marks(), np.random.default_rng([self.cfg.seed, i, 2]))
            mask[0] = np.maximum(mask[0], marks[1])
        rng = np.random.default_rng([self.cfg.seed, i, 1])
        if rng.random() < 0.5:
            frames, mask = frames[:, :, ::-1], mask[:, :, ::-1]
        if rng.random() < 0.5:
            frames, mask = frames[:, ::-1], mask[:, ::-1]
        return {"frames": torch.from_numpy(frames.copy()), "mask": torch.from_numpy(mask.copy())}
