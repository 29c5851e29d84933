"""What a detector does on real footage: parts (c), (d) and (e) of `correlnet.real_eval`.

(c) Clean real video (`clean_video_flagged`): clips with no defect at all, so the share of pixels
    flagged is the false-positive rate where restorers work (pixel totals over all evaluated frames).
(d) Real 1903/1906 film (`real_film_flagged`): real dust and blotches but no masks. Reported: the
    share of pixels flagged, and the one-frame share: the fraction of the flagged pixels that lie in
    flagged 8-connected components that look like one-frame defects, i.e. where at least
    `ONE_FRAME_FRACTION` of the component's pixels have an SDI-p score (`correlnet.sdi.triplet_score`,
    the same-sign minimum of the two motion-compensated differences, default `SdiConfig`) of at least
    `ONE_FRAME_EVIDENCE`. Static scene edges and tracked motion give low scores, so a detector that
    flags them has a low one-frame share. (For SDI-p itself it is 1 by construction.)
(e) Annotated real film (`annotated_scores`): pixel precision / recall / F1 against the masks of
    `correlnet.annotations`, and the same by marks (`correlnet.metrics.count_blobs`: an annotated mark
    is found when any flagged pixel covers it; a flagged 8-connected component touching no annotated
    pixel is a false mark, the click a restorer spends on it). Small dust makes the pixel figures
    hinge on a mark's outline by a pixel; the mark figures do not.
Film frames get their neighbours from `correlnet.neighbours.analyse_sequence` (duplicated frames
of the 1906 clip are skipped over, as the importer does), and only frames with a usable neighbour
on both sides inside the loaded frames are predicted (`correlnet.prediction.detect_frames`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np
import torch
from torch import nn

from correlnet.annotations import annotated_numbers, annotation_path, load_annotation
from correlnet.evaluate import centre_frames, clean_triplet
from correlnet.metrics import PixelCounts, count_blobs, count_pixels, supported_components
from correlnet.neighbours import SequenceAnalysis, analyse_sequence, thumbnail
from correlnet.prediction import detect_frames, predict_triplet_tiled
from correlnet.sdi import Compensation, compensate_triplet
from correlnet.sure_defects import SureConfig, sure_labels
from correlnet.tiling import TilingConfig

ONE_FRAME_EVIDENCE = 0.03  # SDI-p score (gray levels) a pixel needs to count as differing from both neighbours
ONE_FRAME_FRACTION = 0.5  # share of a component's pixels that must have that evidence


@dataclass
class Flagged:
    """Pixels looked at and pixels flagged over `frames` frames; `one_frame` flagged pixels in
    one-frame components (part (d) only, else 0)."""

    frames: int = 0
    pixels: int = 0
    flagged: int = 0
    one_frame: int = 0
    sure: int = 0  # part (d): sure one-frame defects (correlnet.synth.bank.sure_defect_labels) ...
    sure_found: int = 0  # ... of which at least half the pixels are flagged

    def __add__(self, other: "Flagged") -> "Flagged":
        return Flagged(self.frames + other.frames, self.pixels + other.pixels, self.flagged + other.flagged,
                       self.one_frame + other.one_frame, self.sure + other.sure, self.sure_found + other.sure_found)

    @property
    def share(self) -> float:
        return self.flagged / self.pixels if self.pixels else 0.0

    @property
    def one_frame_share(self) -> float | None:
        """one_frame / flagged, None when nothing is flagged."""
        return self.one_frame / self.flagged if self.flagged else None

    def to_dict(self, one_frame: bool = False) -> dict:
        out = {"frames": self.frames, "pixels": self.pixels, "flagged": self.flagged, "share_flagged": self.share}
        if one_frame:
            out.update(one_frame_pixels=self.one_frame, one_frame_share=self.one_frame_share,
                       sure_defects=self.sure, sure_found=self.sure_found,
                       sure_recall=self.sure_found / self.sure if self.sure else None)
        return out


@dataclass
class FlaggedReport:
    """Per-clip and overall `Flagged` counts; `skipped`: clip -> why it was not evaluated."""

    per_clip: dict[str, Flagged]
    skipped: dict[str, str] = field(default_factory=dict)
    one_frame: bool = False  # report the one-frame share (part d)

    @property
    def total(self) -> Flagged:
        return sum(self.per_clip.values(), Flagged())

    def to_dict(self) -> dict:
        return {"overall": self.total.to_dict(self.one_frame),
                "per_clip": {k: v.to_dict(self.one_frame) for k, v in self.per_clip.items()},
                "skipped": dict(self.skipped)}


def one_frame_pixels(mask: np.ndarray, score: np.ndarray, evidence: float = ONE_FRAME_EVIDENCE,
                     fraction: float = ONE_FRAME_FRACTION) -> int:
    """Flagged pixels in one-frame components (module docstring): mask (H, W) bool, score (H, W) float."""
    if mask.shape != score.shape or mask.ndim != 2:
        raise ValueError(f"mask and score must be (H, W) of one shape; got {mask.shape} and {score.shape}")
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return 0
    return int(supported_components(labels, n - 1, score >= evidence, fraction)[labels].sum())


def clean_video_flagged(model: nn.Module, clips: Mapping[str, np.ndarray], frames: int, threshold: float,
                        tiling: TilingConfig, device: torch.device) -> FlaggedReport:
    """Part (c): share of pixels flagged on `frames` evenly spaced centre frames of each clean clip.

    clips: name -> (T, H, W) clip, float32 in [0, 1] or uint8, T >= 3; predicted at full resolution.
    """
    per_clip = {}
    for name, clip in clips.items():
        counts = Flagged()
        for t in centre_frames(clip.shape[0], frames):
            pred = predict_triplet_tiled(model, clean_triplet(clip, t), tiling, device) >= threshold
            counts = counts + Flagged(1, pred.size, int(pred.sum()))
        per_clip[name] = counts
    return FlaggedReport(per_clip)


@dataclass(frozen=True)
class FilmClip:
    """The first frames of a real-film clip: frames (T, H, W) float32 in [0, 1], their numbers (from
    the file names, 00001.png -> 1) and their temporal neighbours."""

    frames: np.ndarray
    numbers: tuple[int, ...]
    analysis: SequenceAnalysis

    @classmethod
    def load(cls, folder: Path, max_frames: int) -> "FilmClip":
        from correlnet.data import load_clip
        from correlnet.frames import list_frame_files

        frames = load_clip(folder, max_frames=max_frames)
        numbers = tuple(int(p.stem) if p.stem.isdigit() else i + 1
                        for i, p in enumerate(list_frame_files(folder)[: len(frames)]))
        return cls(frames, numbers, analyse_sequence(np.stack([thumbnail(f) for f in frames])))

    @property
    def predictable(self) -> list[int]:
        """Indices of the frames with a distinct neighbour on both sides inside the loaded frames."""
        return [i for i, nb in enumerate(self.analysis.neighbours) if not nb.flagged]

    def predict(self, model: nn.Module, indices: list[int], tiling: TilingConfig, device: torch.device):
        """Yields (index, probs (H, W) float32) for `indices`, with the clip's neighbours."""
        return detect_frames(model, lambda j: self.frames[j], self.analysis.neighbours, tiling, device,
                             indices=indices)

    def compensation(self, i: int) -> Compensation:
        """Frame i with its neighbours compensated onto it (the sure-defect rule's DIS settings, which
        are the default SdiConfig's): shared by the one-frame share and the sure-defect recall."""
        nb = self.analysis.neighbours[i]
        return compensate_triplet(self.frames[nb.prev], self.frames[i], self.frames[nb.next], SureConfig().flow)


def sure_defects_found(comp: Compensation, score: np.ndarray, mask: np.ndarray,
                       fraction: float = 0.5) -> tuple[int, int]:
    """(sure one-frame defects of a compensated frame, how many have at least `fraction` of their
    pixels in mask); score is ``comp.score()``."""
    labels, count = sure_labels(comp, SureConfig(), score)
    if count == 0:
        return 0, 0
    return count, int(supported_components(labels, count, mask, fraction).sum())


def real_film_flagged(model: nn.Module, clips: Mapping[str, FilmClip], threshold: float, tiling: TilingConfig,
                      device: torch.device) -> FlaggedReport:
    """Part (d): share flagged, one-frame share and the recall of sure defects on each clip's
    predictable frames (module docstring)."""
    per_clip = {}
    for name, clip in clips.items():
        counts = Flagged()
        for i, probs in clip.predict(model, clip.predictable, tiling, device):
            mask = probs >= threshold
            comp = clip.compensation(i)
            score = comp.score()
            one = one_frame_pixels(mask, score) if mask.any() else 0
            sure, found = sure_defects_found(comp, score, mask)
            counts = counts + Flagged(1, mask.size, int(mask.sum()), one, sure, found)
        per_clip[name] = counts
    return FlaggedReport(per_clip, one_frame=True)


@dataclass
class AnnotatedReport:
    """Part (e): pixel counts per clip against the hand-drawn masks, the frame numbers used, and mark
    counts per clip (`PixelCounts` of marks: found, false, missed)."""

    per_clip: dict[str, PixelCounts]
    frames: dict[str, list[int]]
    skipped: dict[str, str] = field(default_factory=dict)
    marks: dict[str, PixelCounts] = field(default_factory=dict)

    @property
    def total(self) -> PixelCounts:
        return sum(self.per_clip.values(), PixelCounts(0, 0, 0))

    @property
    def total_marks(self) -> PixelCounts:
        return sum(self.marks.values(), PixelCounts(0, 0, 0))

    def to_dict(self) -> dict:
        return {"overall": self.total.as_dict(), "per_clip": {k: v.as_dict() for k, v in self.per_clip.items()},
                "frames": {k: list(v) for k, v in self.frames.items()}, "skipped": dict(self.skipped),
                "marks": {"overall": self.total_marks.as_dict(),
                          "per_clip": {k: v.as_dict() for k, v in self.marks.items()}}}


def annotated_scores(model: nn.Module, clips: Mapping[str, FilmClip], threshold: float, tiling: TilingConfig,
                     device: torch.device, root: Path | None = None) -> AnnotatedReport:
    """Part (e): precision / recall / F1 by pixels and by marks on the annotated frames of each clip
    (masks under `root`, default `correlnet.annotations.ANNOTATIONS_DIR`), predicted with the clip's neighbours (a frame
    at either end of the loaded frames uses its one neighbour twice). A clip without masks lands in
    `skipped`; an annotated frame outside the loaded frames raises ValueError naming its mask."""
    per_clip, used, skipped, marks = {}, {}, {}, {}
    for name, clip in clips.items():
        numbers = annotated_numbers(name, root)
        if not numbers:
            skipped[name] = f"no annotation under {annotation_path(name, 1, root).parent}"
            continue
        missing = [n for n in numbers if n not in clip.numbers]
        if missing:
            raise ValueError(f"{annotation_path(name, missing[0], root)}: frame {missing[0]} is not among the "
                             f"evaluated frames {clip.numbers[0]}-{clip.numbers[-1]} of {name}")
        index = {n: clip.numbers.index(n) for n in numbers}
        truth = {index[n]: load_annotation(annotation_path(name, n, root), clip.frames.shape[1:]) for n in numbers}
        counts = blobs = PixelCounts(0, 0, 0)
        for i, probs in clip.predict(model, sorted(truth), tiling, device):
            flagged = probs >= threshold
            counts = counts + count_pixels(flagged, truth[i])
            blobs = blobs + count_blobs(flagged, truth[i])
        per_clip[name], used[name], marks[name] = counts, numbers, blobs
    return AnnotatedReport(per_clip, used, skipped, marks)
