"""Moving sprites: scene objects with their own motion (FlyingChairs-style), never labelled defect.

Why. The demo clips have little independent motion, so a network trained on them alone learns that
whatever differs between frames is a defect, and flags moving actors, hands and deforming stripes in
real footage. Sprites are the counter-examples: textured patches cut from real frames, uniform specks
that look like dust, and thin lines, each moving with its own affine motion (translation 0-20 px per
frame, rotation and scaling) over the scene, occluding each other, some with motion blur. They are
present in all three frames and move consistently, so they are scene; the principle the network must
learn is "what can be tracked across frames belongs to the scene, what appears in one frame only is a
defect".

They are drawn into the scene region before the triplet is cut from it (`correlnet.synth.scene.draw_scene`,
the first stage of `degrade_triplet`), like the scene lines, so the gate weave and jitter of the crops apply
to them too.

Geometry. A sprite has a local square canvas (texture and alpha, side S); frame t places it with the
affine map "rotate by angle_t, scale by scale_t about the canvas centre, then move the centre to
centre_t", where t = -1, 0, 1 for frame_prev, frame_mid, frame_next and
``centre_t = centre + t * velocity``, ``angle_t = t * spin``, ``scale_t = growth ** t``. Motion blur
averages `blur_taps` placements spread over a fraction of the frame interval (the shutter).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["SpriteConfig", "Sprite", "blob_shape", "draw_sprite", "draw_moving_sprites", "random_sprite"]

Range = tuple[float, float]


@dataclass(frozen=True)
class SpriteConfig:
    """Knobs of `draw_moving_sprites`; sizes in pixels of the region drawn on."""

    prob: float = 0.6  # probability that a triplet gets sprites at all
    mean_count: float = 4.0  # Poisson mean of their number (at least one) per 128x128 area
    max_speed: float = 20.0  # px per frame; speeds are uniform in [0, max_speed] ...
    static_prob: float = 0.15  # ... except this share, which stands still (a static scene object)
    max_spin_deg: float = 6.0  # rotation per frame
    max_growth: float = 0.06  # scale change per frame (1 +- this)
    # Kinds, by probability: a textured patch cut from a frame (a person, a ball), a uniform speck
    # or blob that looks like dust but moves, a thin line (a wire, a leash, a stripe).
    texture_prob: float = 0.5
    speck_prob: float = 0.3  # the rest are lines
    texture_radius: Range = (3.0, 40.0)  # log-uniform
    speck_radius: Range = (1.0, 8.0)  # log-uniform
    line_length: Range = (8.0, 90.0)
    line_width: Range = (0.8, 3.0)
    speck_dark_prob: float = 0.6
    speck_colour_dark: Range = (0.0, 0.25)
    speck_colour_light: Range = (0.75, 1.0)
    opacity: Range = (0.6, 1.0)
    motion_blur_prob: float = 0.3
    shutter: Range = (0.2, 0.6)  # fraction of the frame interval the shutter is open
    blur_taps: int = 5


@dataclass(frozen=True)
class Sprite:
    """One sprite: canvas (texture (S, S) float32, alpha (S, S) float32 in [0, 1]) and its motion."""

    texture: np.ndarray
    alpha: np.ndarray
    centre: tuple[float, float]  # (y, x) in the centre frame, region pixels
    velocity: tuple[float, float]  # (dy, dx) px per frame
    spin: float = 0.0  # radians per frame
    growth: float = 1.0  # scale factor per frame
    shutter: float = 0.0  # 0 = no motion blur


def _placement(sprite: Sprite, t: float) -> np.ndarray:
    """2x3 affine map from canvas pixels to region pixels at time t (frames -1, 0, 1)."""
    s = sprite.texture.shape[0]
    c = (s - 1) / 2.0
    angle, scale = t * sprite.spin, sprite.growth**t
    cy, cx = sprite.centre[0] + t * sprite.velocity[0], sprite.centre[1] + t * sprite.velocity[1]
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    # x' = cos*(x-c) - sin*(y-c) + cx ; y' = sin*(x-c) + cos*(y-c) + cy
    return np.array([[cos, -sin, cx - cos * c + sin * c], [sin, cos, cy - sin * c - cos * c]], np.float32)


def draw_sprite(frame: np.ndarray, sprite: Sprite, t: float, taps: int = 5) -> np.ndarray:
    """Composite `sprite` at time t into `frame` ((H, W) float32, in place); returns its coverage
    (H, W) float32 in [0, 1] (the blended alpha), with motion blur when ``sprite.shutter > 0``."""
    h, w = frame.shape
    times = [t] if sprite.shutter <= 0 else list(t + sprite.shutter * (np.linspace(0, 1, taps) - 0.5))
    colour = np.zeros((h, w), np.float32)
    cover = np.zeros((h, w), np.float32)
    premult = sprite.texture * sprite.alpha
    for tau in times:
        m = _placement(sprite, tau)
        cover += cv2.warpAffine(sprite.alpha, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
        colour += cv2.warpAffine(premult, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
    cover /= len(times)
    colour /= len(times)
    frame *= 1.0 - cover
    frame += colour
    return cover


def blob_shape(radius: float, rng: np.random.Generator) -> np.ndarray:
    """(S, S) bool irregular blob: an ellipse whose radius wobbles with the angle. The outline of the
    sprites' specks and patches, the scene trap's blobs (`correlnet.synth.scene`) and the moving trap's."""
    size = int(np.ceil(radius * 1.6)) * 2 + 1
    c = size // 2
    yy, xx = np.mgrid[:size, :size].astype(np.float32) - c
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    aspect = rng.uniform(0.5, 1.0)
    r = np.hypot(u, v / aspect)
    ang = np.arctan2(v, u)
    wobble = 1 + sum(rng.uniform(-0.15, 0.15) * np.cos(k * ang + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    return r <= radius * wobble


def _log_uniform(rng: np.random.Generator, lo_hi: Range) -> float:
    return float(np.exp(rng.uniform(np.log(lo_hi[0]), np.log(lo_hi[1]))))


def _line_alpha(length: float, width: float, rng: np.random.Generator) -> np.ndarray:
    """(S, S) anti-aliased alpha of a straight or slightly bent line through the canvas centre."""
    s = int(np.ceil(length)) + 5
    c = (s - 1) / 2.0
    yy, xx = np.mgrid[:s, :s].astype(np.float32) - c
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)  # along the line
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    v = v - rng.uniform(-0.15, 0.15) * (u * u) / max(length / 2, 1.0)  # a little bend
    across = np.clip(width / 2 + 0.5 - np.abs(v), 0.0, 1.0)
    along = np.clip(length / 2 + 0.5 - np.abs(u), 0.0, 1.0)
    return (across * along).astype(np.float32)


def random_sprite(region_hw: tuple[int, int], texture_source: np.ndarray, cfg: SpriteConfig,
                  rng: np.random.Generator) -> Sprite:
    """A random sprite for a region of size region_hw; textured ones are cut from
    `texture_source` ((H', W') float32 in [0, 1] or uint8, any frame of any clip)."""
    h, w = region_hw
    kind = rng.random()
    opacity = rng.uniform(*cfg.opacity)
    if kind < cfg.texture_prob:
        radius = _log_uniform(rng, cfg.texture_radius)
        alpha = blob_shape(radius, rng).astype(np.float32)
        alpha = cv2.GaussianBlur(alpha, (0, 0), 0.7)  # soft, anti-aliased outline
        s = alpha.shape[0]
        th, tw = texture_source.shape
        if th < s or tw < s:
            mean = float(texture_source.mean()) / (255.0 if texture_source.dtype == np.uint8 else 1.0)
            texture = np.full((s, s), mean, np.float32)
        else:
            y, x = int(rng.integers(0, th - s + 1)), int(rng.integers(0, tw - s + 1))
            patch = texture_source[y : y + s, x : x + s]
            scale = np.float32(1 / 255) if patch.dtype == np.uint8 else np.float32(1)
            texture = patch.astype(np.float32) * scale
    else:
        if kind < cfg.texture_prob + cfg.speck_prob:
            radius = _log_uniform(rng, cfg.speck_radius)
            alpha = blob_shape(radius, rng).astype(np.float32)
            if radius < 2.5:
                alpha = cv2.GaussianBlur(alpha, (0, 0), 0.5)
        else:
            alpha = _line_alpha(rng.uniform(*cfg.line_length), rng.uniform(*cfg.line_width), rng)
        dark = rng.random() < cfg.speck_dark_prob
        value = rng.uniform(*(cfg.speck_colour_dark if dark else cfg.speck_colour_light))
        texture = np.full(alpha.shape, value, np.float32)
    alpha *= np.float32(opacity)
    if rng.random() < cfg.static_prob:
        velocity = (0.0, 0.0)
    else:
        speed, heading = rng.uniform(0.0, cfg.max_speed), rng.uniform(0, 2 * np.pi)
        velocity = (float(speed * np.sin(heading)), float(speed * np.cos(heading)))
    return Sprite(
        texture=texture, alpha=alpha,
        centre=(float(rng.uniform(0, h)), float(rng.uniform(0, w))), velocity=velocity,
        spin=float(np.deg2rad(rng.uniform(-cfg.max_spin_deg, cfg.max_spin_deg))),
        growth=float(1.0 + rng.uniform(-cfg.max_growth, cfg.max_growth)),
        shutter=float(rng.uniform(*cfg.shutter)) if rng.random() < cfg.motion_blur_prob else 0.0,
    )


def draw_moving_sprites(region: np.ndarray, texture_source: np.ndarray, cfg: SpriteConfig,
                        rng: np.random.Generator) -> list[Sprite]:
    """Draw moving sprites into a (3, H, W) float32 region in [0, 1] (in place, then clipped):
    frame_prev, frame_mid, frame_next at t = -1, 0, 1. Returns the sprites (in painting order,
    later ones occlude earlier ones). Draws nothing, after one coin, with probability 1 - cfg.prob.

    Raises ValueError unless region is (3, H, W)."""
    if region.ndim != 3 or region.shape[0] != 3:
        raise ValueError(f"region must be (3, H, W) (frame_prev, frame_mid, frame_next); got {region.shape}")
    if rng.random() >= cfg.prob:
        return []
    _, h, w = region.shape
    count = max(1, int(rng.poisson(cfg.mean_count * h * w / (128 * 128))))
    sprites = [random_sprite((h, w), texture_source, cfg, rng) for _ in range(count)]
    for sprite in sprites:
        for k, t in enumerate((-1.0, 0.0, 1.0)):
            draw_sprite(region[k], sprite, t, cfg.blur_taps)
    np.clip(region, 0.0, 1.0, out=region)
    return sprites
