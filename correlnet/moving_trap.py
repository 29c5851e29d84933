"""The moving-objects trap: scene objects that move on their own, which a defect detector must not flag.

`correlnet.synth.scene.add_scene_blobs` paints blobs that move with the camera; real footage also has people, balls,
hands and wires that move independently of it, and a detector that calls "whatever differs between
frames" a defect flags them (issue 11: 48-70 % of the pixels of small moving scene objects). Here
each object gets its own velocity (0-20 px per frame, drawn evenly over `SPEED_BINS`) and a small
rotation, and is painted into all three frames of a clean triplet; nothing is labelled defect, so
every flagged object pixel is a false positive. Objects: uniform dark or light blobs (the look of
the synthetic blotches, `synth.sprites.blob_shape`), textured patches cut from the clean middle frame
itself, and thin textured lines. They are drawn with the sprite renderer of `correlnet.synth.sprites`
(`Sprite`, `draw_sprite`: frames t = -1, 0, 1), without motion blur, at sub-pixel positions.

The sampling here is the trap's own (speed bins, sizes, counts), not the training generator's.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from correlnet.synth.sprites import Sprite, blob_shape, draw_sprite

SPEED_BINS: tuple[tuple[float, float], ...] = ((0.0, 2.0), (2.0, 8.0), (8.0, 20.0))  # px per frame
KINDS = ("blob", "sprite", "line")


def speed_bin_name(lo: float, hi: float) -> str:
    """'0-2', '2-8', '8-20': the key of a speed bin in reports."""
    return f"{lo:g}-{hi:g}"


@dataclass(frozen=True)
class MovingTrapConfig:
    """Objects per triplet and their look; sizes in pixels of the full-resolution frame.

    density: objects per 256 x 256 pixels of frame (at least `min_count` per triplet), kinds in
        the proportions `kind_weights` (blob, sprite, line).
    blob_radius, sprite_radius: log-uniform ranges (a few px to large); line_length, line_width:
        uniform ranges of the thin lines.
    max_spin_deg: rotation per frame, uniform in +- this.
    """

    density: float = 2.0
    min_count: int = 3
    kind_weights: tuple[float, float, float] = (0.4, 0.4, 0.2)
    blob_radius: tuple[float, float] = (1.5, 30.0)
    sprite_radius: tuple[float, float] = (2.0, 60.0)
    line_length: tuple[float, float] = (10.0, 100.0)
    line_width: tuple[float, float] = (1.0, 3.0)
    dark_range: tuple[float, float] = (0.0, 0.15)  # as scene_trap's blobs and the paper's blotches
    light_range: tuple[float, float] = (0.85, 1.0)
    max_spin_deg: float = 3.0


@dataclass(frozen=True)
class MovingObject:
    """One painted object: its kind, speed (px per frame) and speed bin index into SPEED_BINS."""

    kind: str
    speed: float
    speed_bin: int
    sprite: Sprite


def _log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(lo_hi[0]), np.log(lo_hi[1]))))


def _line_alpha(length: float, width: float, rng: np.random.Generator) -> np.ndarray:
    """(S, S) float32 anti-aliased straight line through the canvas centre, random direction."""
    s = int(np.ceil(length)) + 5
    c, theta = (s - 1) / 2.0, rng.uniform(0, np.pi)
    dy, dx = np.sin(theta) * length / 2, np.cos(theta) * length / 2
    shift = 4  # cv2 draws at 1/16 px with `shift` fractional bits
    p0 = tuple(int(round(v * 16)) for v in (c - dx, c - dy))
    p1 = tuple(int(round(v * 16)) for v in (c + dx, c + dy))
    canvas = np.zeros((s, s), np.uint8)
    cv2.line(canvas, p0, p1, 255, max(1, int(round(width))), cv2.LINE_AA, shift)
    return canvas.astype(np.float32) / 255.0


def _texture(source: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """An (s, s) patch of the frame `source` ((H, W) float32), edge-padded if the frame is smaller."""
    if source.shape[0] < s or source.shape[1] < s:
        source = np.pad(source, ((0, max(s - source.shape[0], 0)), (0, max(s - source.shape[1], 0))), mode="edge")
    y = int(rng.integers(0, source.shape[0] - s + 1))
    x = int(rng.integers(0, source.shape[1] - s + 1))
    return np.array(source[y : y + s, x : x + s], np.float32)


def random_object(shape: tuple[int, int], frame_mid: np.ndarray, cfg: MovingTrapConfig,
                  rng: np.random.Generator) -> MovingObject:
    """One random object for an (H, W) frame; textures are cut from `frame_mid` ((H, W) float32)."""
    h, w = shape
    kind = KINDS[int(rng.choice(len(KINDS), p=np.asarray(cfg.kind_weights) / np.sum(cfg.kind_weights)))]
    if kind == "blob":
        alpha = blob_shape(_log_uniform(rng, cfg.blob_radius), rng).astype(np.float32)
        value = rng.uniform(*(cfg.dark_range if rng.random() < 0.5 else cfg.light_range))
        texture = np.full(alpha.shape, value, np.float32)
    elif kind == "sprite":
        alpha = blob_shape(_log_uniform(rng, cfg.sprite_radius), rng).astype(np.float32)
        texture = _texture(frame_mid, alpha.shape[0], rng)
    else:
        alpha = _line_alpha(rng.uniform(*cfg.line_length), rng.uniform(*cfg.line_width), rng)
        texture = _texture(frame_mid, alpha.shape[0], rng)
    b = int(rng.integers(len(SPEED_BINS)))
    speed, heading = float(rng.uniform(*SPEED_BINS[b])), rng.uniform(0, 2 * np.pi)
    sprite = Sprite(texture=texture, alpha=alpha, centre=(float(rng.uniform(0, h)), float(rng.uniform(0, w))),
                    velocity=(float(speed * np.sin(heading)), float(speed * np.cos(heading))),
                    spin=float(np.deg2rad(rng.uniform(-cfg.max_spin_deg, cfg.max_spin_deg))))
    return MovingObject(kind, speed, b, sprite)


def add_moving_objects(clean: np.ndarray, cfg: MovingTrapConfig, rng: np.random.Generator
                       ) -> tuple[np.ndarray, list[MovingObject], list[np.ndarray]]:
    """Paint independently moving objects into a clean triplet.

    clean: (3, H, W) float32 in [0, 1] (frame_prev, frame_mid, frame_next).
    Returns (frames (3, H, W) float32 in [0, 1], objects in painting order (later ones occlude
    earlier ones), one (H, W) bool mask per object: its visible pixels in the middle frame, where
    its coverage after the later objects is at least 0.5). Masks of two objects never overlap.
    """
    if clean.ndim != 3 or clean.shape[0] != 3:
        raise ValueError(f"clean must be (3, H, W) (frame_prev, frame_mid, frame_next); got {clean.shape}")
    frames = clean.astype(np.float32, copy=True)
    _, h, w = frames.shape
    count = max(cfg.min_count, int(round(cfg.density * h * w / 256**2)))
    objects = [random_object((h, w), clean[1], cfg, rng) for _ in range(count)]
    covers = []
    for obj in objects:
        for k, t in enumerate((-1.0, 0.0, 1.0)):
            cover = draw_sprite(frames[k], obj.sprite, t)
            if k == 1:
                covers.append(cover)
    np.clip(frames, 0.0, 1.0, out=frames)
    masks, hidden = [], np.ones((h, w), np.float32)
    for cover in reversed(covers):  # what is left visible of each object once later ones are on top
        masks.append(cover * hidden >= 0.5)
        hidden = hidden * (1.0 - cover)
    return frames, objects, masks[::-1]


@dataclass
class MovingTrapCounts:
    """Object pixels of the middle frames and how many of them were flagged, by speed bin and kind;
    background (no object) pixels and their flagged count for context."""

    pixels_by_bin: list[int]
    flagged_by_bin: list[int]
    pixels_by_kind: dict[str, int]
    flagged_by_kind: dict[str, int]
    background_pixels: int = 0
    background_flagged: int = 0
    objects: int = 0
    frames: int = 0

    @classmethod
    def empty(cls) -> "MovingTrapCounts":
        return cls([0] * len(SPEED_BINS), [0] * len(SPEED_BINS), dict.fromkeys(KINDS, 0), dict.fromkeys(KINDS, 0))

    def add(self, pred: np.ndarray, objects: list[MovingObject], masks: list[np.ndarray]) -> None:
        """Count one frame: pred (H, W) bool, the objects and their masks from `add_moving_objects`."""
        if len(objects) != len(masks):
            raise ValueError(f"{len(objects)} objects but {len(masks)} masks")
        any_object = np.zeros(pred.shape, bool)
        for obj, mask in zip(objects, masks):
            if mask.shape != pred.shape:
                raise ValueError(f"object mask {mask.shape} and prediction {pred.shape} differ in size")
            n, f = int(mask.sum()), int((pred & mask).sum())
            self.pixels_by_bin[obj.speed_bin] += n
            self.flagged_by_bin[obj.speed_bin] += f
            self.pixels_by_kind[obj.kind] += n
            self.flagged_by_kind[obj.kind] += f
            self.objects += int(n > 0)
            any_object |= mask
        self.background_pixels += int((~any_object).sum())
        self.background_flagged += int((pred & ~any_object).sum())
        self.frames += 1

    @property
    def share(self) -> float:
        """Flagged share of all object pixels (0 when there are none)."""
        n = sum(self.pixels_by_bin)
        return sum(self.flagged_by_bin) / n if n else 0.0

    def to_dict(self) -> dict:
        def share(f: int, n: int) -> float | None:
            return f / n if n else None

        return {
            "share_flagged": self.share,
            "by_speed": {speed_bin_name(*b): {"pixels": n, "flagged": f, "share": share(f, n)}
                         for b, n, f in zip(SPEED_BINS, self.pixels_by_bin, self.flagged_by_bin)},
            "by_kind": {k: {"pixels": self.pixels_by_kind[k], "flagged": self.flagged_by_kind[k],
                            "share": share(self.flagged_by_kind[k], self.pixels_by_kind[k])} for k in KINDS},
            "object_pixels": sum(self.pixels_by_bin), "flagged_pixels": sum(self.flagged_by_bin),
            "background_share_flagged": share(self.background_flagged, self.background_pixels),
            "objects": self.objects, "frames": self.frames,
        }
