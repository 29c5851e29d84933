"""`degrade_triplet`: clean triplet in, degraded triplet and defect masks out.

Order of operations (the random draws follow it, so a seed fixes everything):

0. Scene, not defects: the counter-examples `SynthConfig.scene_lines`, `scene_blotches` and `sprites`
   are drawn into the scene region and the triplet is cut from it (`correlnet.synth.scene.draw_scene`;
   with `view=None` the region is the triplet itself). Never in the mask.
1. Texture, not defects: grain then flicker on each clean frame -> the *base* frames
   (`texture_triplet`).
2. Defects on a copy of the base, each family optional (`SynthConfig`): per frame,
   independently, the paper's Perlin blotches (Sec. 4.1), dust specks, hairs; then persistent
   scratches across the three frames (`draw_defects`).
3. Optics, not a defect: one slight Gaussian blur per frame, applied alike to the degraded frame
   and to its base, so defect edges are as soft as the scene's (as after scanning).

Blending and labelling rule. Every defect is alpha-blended (``out = base + a (colour - base)``)
or, for scratches, added; values stay in [0, 1]. A pixel is in the mask exactly when the
defects moved its value by at least ``cfg.min_contrast`` (0.05, i.e. 13/255) from its base
value (after the blur); pixels that a defect moved by less (faint fringes, a dark speck on a black
region) are reset to the base value. So every masked pixel changed visibly, and every unmasked
pixel equals the base frame: it differs from the clean input only by grain, flicker and blur.
The target of the network is ``masks[1]``, the centre frame's mask.

Physical order (``cfg.physical_order``, the `SynthConfig.real()` recipe). A scan is made in this
order, and so the triplet is: flicker (exposure) on the clean frame -> the *base*; marks on the film
(the defects) on a copy; the scanner's optical blur on both; the labelling rule above; grain and
sensor noise over everything (one noise field per frame, added to the degraded frame and to its
base alike, so the rule still holds before compression); then, for a `cfg.compression_prob` share
of the triplets, one JPEG round trip of every frame (quality drawn from `cfg.jpeg_quality`), applied
to the degraded frame and the base alike. A mark is then never sharper or cleaner than the picture
around it. After compression unmasked pixels may differ from the base by compression error only.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from correlnet.synth.bank import DefectBank, paste_defects
from correlnet.synth.config import SynthConfig
from correlnet.synth.dust import draw_dust
from correlnet.synth.grain import add_flicker, add_grain, apply_grain, grain_field
from correlnet.synth.hairs import draw_hairs
from correlnet.synth.paper import draw_blotches
from correlnet.synth.scene import SceneView, draw_scene
from correlnet.synth.scratches import draw_scratches

__all__ = ["degrade_triplet", "degrade_triplet_with_base", "texture_triplet", "draw_defects"]


def degrade_triplet(
    clean: np.ndarray, cfg: SynthConfig, rng: np.random.Generator, bank: DefectBank | None = None, *,
    view: SceneView | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the scene's counter-examples, grain/flicker and synthetic defects on a clean triplet.

    Args:
        clean: (3, H, W) float32 in [0, 1]: frame_prev, frame_mid, frame_next, grayscale; with `view`,
            the scene region the view cuts the triplet from (float32 in [0, 1] or uint8).
        cfg: which scene content and defect families to draw and their parameters.
        rng: seeded ``numpy.random.Generator``; the same seed gives the same output.
        bank: real defects to paste as marks (`correlnet.synth.bank`, at ``cfg.bank_per_256``); None: none.
        view: how the triplet is cut from the region (`correlnet.synth.scene.SceneView`, the
            dataset's crops); None: `clean` is the triplet.

    Returns:
        degraded: (3, H, W) float32 in [0, 1].
        masks: (3, H, W) bool, True where a defect visibly changed the pixel (see module
        docstring); the training target is ``masks[1]``.

    Raises:
        ValueError: if `clean` is not (3, H, W) with values in [0, 1].
    """
    degraded, masks, _ = degrade_triplet_with_base(clean, cfg, rng, bank, view=view)
    return degraded, masks


def degrade_triplet_with_base(
    clean: np.ndarray, cfg: SynthConfig, rng: np.random.Generator, bank: DefectBank | None = None, *,
    view: SceneView | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`degrade_triplet` plus the base: the clean triplet (scene content drawn) with grain, flicker
    and blur but no defect, (3, H, W) float32; ``degraded == base`` wherever ``masks`` is False.

    The scene comes first, with `cfg` as given (a paper-only triplet of `mixed()` keeps its scene
    lines). Then, with ``cfg.paper_only_prob > 0``, one coin decides whether this triplet's defects
    use ``cfg.paper_part()`` (no coin is drawn otherwise, so other configurations keep their streams);
    with ``cfg.clean_prob > 0`` a second coin makes it defect-free (textures and optics only).
    """
    clean = _checked(draw_scene(clean if view is not None else _checked(clean), cfg, rng, view))
    if cfg.paper_only_prob > 0 and rng.random() < cfg.paper_only_prob:
        cfg = cfg.paper_part()
    if cfg.clean_prob > 0 and rng.random() < cfg.clean_prob:
        cfg = replace(cfg, blotches=False, dust=False, hairs=False, scratches=False, bank_per_256=0.0)
    if cfg.physical_order:
        return _degrade_physical(clean, cfg, rng, bank)
    base = texture_triplet(clean, cfg, rng)
    degraded = draw_defects(base, cfg, rng, bank)
    masks = _blur_and_label(base, degraded, cfg, rng)
    return degraded, masks, base


def _blur_and_label(base: np.ndarray, degraded: np.ndarray, cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """The optics and the labelling rule (module docstring), in place on both (3, H, W) triplets:
    one Gaussian blur per frame applied alike to base and degraded, then masks (3, H, W) bool where a
    defect moved the value by >= cfg.min_contrast, and degraded reset to base elsewhere."""
    if cfg.blur:
        for t in range(base.shape[0]):
            sigma = rng.uniform(*cfg.blur_sigma)
            if sigma > 0.1:  # below this the 3-tap kernel is the identity to float precision
                base[t] = cv2.GaussianBlur(base[t], (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
                degraded[t] = cv2.GaussianBlur(degraded[t], (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    masks = np.abs(degraded - base) >= cfg.min_contrast
    degraded[~masks] = base[~masks]
    return masks


def _degrade_physical(
    clean: np.ndarray, cfg: SynthConfig, rng: np.random.Generator, bank: DefectBank | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`degrade_triplet_with_base` in the physical order of a scan (module docstring)."""
    base = texture_triplet(clean, replace(cfg, grain=False), rng)  # flicker (exposure) only: grain comes last
    degraded = draw_defects(base, cfg, rng, bank)
    masks = _blur_and_label(base, degraded, cfg, rng)
    if cfg.grain:
        for t in range(base.shape[0]):
            field = grain_field(base[t].shape, cfg, rng)
            apply_grain(base[t], field)
            apply_grain(degraded[t], field)
    if cfg.compression_prob > 0 and rng.random() < cfg.compression_prob:
        quality = int(round(rng.uniform(*cfg.jpeg_quality)))
        for t in range(base.shape[0]):
            base[t], degraded[t] = jpeg_round_trip(base[t], quality), jpeg_round_trip(degraded[t], quality)
    return degraded, masks, base


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """(H, W) float32 in [0, 1] encoded as 8-bit JPEG at `quality` (1-100) and decoded again."""
    u8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode a frame (is opencv-python-headless intact?)")
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32) / np.float32(255.0)


def texture_triplet(clean: np.ndarray, cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Grain and flicker (not defects) on a copy of `clean` ((3, H, W) float32 in [0, 1])."""
    base = np.array(clean, dtype=np.float32, copy=True)
    for frame in base:
        if cfg.grain:
            add_grain(frame, cfg, rng)
        if cfg.flicker:
            add_flicker(frame, cfg, rng)
    return base


def draw_defects(base: np.ndarray, cfg: SynthConfig, rng: np.random.Generator,
                 bank: DefectBank | None = None) -> np.ndarray:
    """Defects drawn on a copy of `base` ((3, H, W) float32 in [0, 1]); returns the copy. Real
    defects from `bank` are pasted per frame (Poisson, ``cfg.bank_per_256``) when one is given."""
    out = base.copy()
    use_bank = bank is not None and len(bank) > 0 and cfg.bank_per_256 > 0
    for frame in out:
        if cfg.blotches:
            draw_blotches(frame, cfg, rng)
        if cfg.dust:
            draw_dust(frame, cfg, rng)
        if cfg.hairs:
            draw_hairs(frame, cfg, rng)
        if use_bank:
            paste_defects(frame, bank, int(rng.poisson(cfg.bank_per_256 * frame.size / 256.0**2)), rng,
                          cfg.bank_opacity)
    if cfg.scratches:
        draw_scratches(out, cfg, rng)
    return out


def _checked(clean: np.ndarray) -> np.ndarray:
    clean = np.asarray(clean)
    if clean.ndim != 3 or clean.shape[0] != 3:
        raise ValueError(
            f"clean must be a (3, H, W) triplet (frame_prev, frame_mid, frame_next), got shape "
            f"{clean.shape}; stack three grayscale frames with np.stack([a, b, c])"
        )
    if clean.size and (float(clean.min()) < 0.0 or float(clean.max()) > 1.0):
        raise ValueError(
            f"clean values must lie in [0, 1], got [{clean.min():.3g}, {clean.max():.3g}]; "
            "divide 8-bit frames by 255 and 16-bit frames by 65535 (frames.to_gray_float)"
        )
    return clean.astype(np.float32, copy=False)
