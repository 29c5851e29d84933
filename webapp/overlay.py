"""What the restorer sees over a frame: the filtered defect mask, the Fig. 5 colouring against a
correction, the blended overlay and the magnifier crop. Pure numpy + OpenCV, no Streamlit, so the
page, the latency benchmark and the tests call the same functions.

Images: frames are what the store holds (`studio.films.frame_image`): (H, W) gray or (H, W, 3) RGB,
uint8 or uint16, or float32 in [0, 1]; probs (H, W) float32 in [0, 1]; masks (H, W) bool. Colours are
RGB uint8. Every judgement of brightness (the polarity filter, the grey flick view) goes through
`correlnet.frames.to_gray_float`, the conversion the model itself sees, so it holds for every bit
depth and channel count the importer accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from correlnet import DEFECT_THRESHOLD
from correlnet.frames import to_gray_float

POLARITIES = ("both", "dark", "light")

# Paper Fig. 5: green = detected and true, blue = false positive, red = missed defect. The blue is a light
# one: the dark blue first used (40, 90, 255) was hard to see on dark parts of a frame, where dust sits.
AGREED_RGB = (0, 200, 0)
FALSE_POSITIVE_RGB = (80, 180, 255)
MISSED_RGB = (255, 30, 30)
# Prediction shown alone (no correction yet): one warm colour that reads on grey film.
PREDICTED_RGB = (255, 140, 0)

# How far around a defect the "surrounding" intensity is sampled to decide dark vs light.
_RING_PX = 3


@dataclass(frozen=True)
class MaskFilter:
    """The Review page's live filters. They decide what is painted over the frame, never what is
    saved: accepting a frame or drawing on it starts from the model's proposal
    (`webapp.frame_view.FrameView.proposal`), so a filter left on cannot empty a stored mask.

    threshold: probs >= threshold is a defect pixel (the paper evaluates at 0.5).
    polarity: "both", "dark" (defect darker than its surroundings: dust on the positive) or
        "light" (brighter: blotches and dirt on the negative).
    min_size: connected defects with fewer pixels are dropped (8-connectivity).
    dilation: grow the kept defects by this many pixels (single-pixel dust stays visible on a
        canvas shown smaller than the film).
    """

    threshold: float = DEFECT_THRESHOLD
    polarity: str = "both"
    min_size: int = 1
    dilation: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.polarity not in POLARITIES:
            raise ValueError(f"polarity must be one of {POLARITIES}, got {self.polarity!r}")
        if self.min_size < 0 or self.dilation < 0:
            raise ValueError(f"min_size and dilation must be >= 0, got {self.min_size}, {self.dilation}")


def to_gray_u8(frame: np.ndarray) -> np.ndarray:
    """Any frame (see the module docstring) -> (H, W) uint8 luma, for grey display (the flick view).

    Rounds `to_gray_float` to 8 bits; an 8-bit gray frame comes back unchanged (no copy).
    """
    if frame.dtype == np.uint8 and frame.ndim == 2:
        return frame
    return (to_gray_float(frame) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def to_rgb_u8(frame: np.ndarray) -> np.ndarray:
    """Any frame (see the module docstring) -> (H, W, 3) uint8 for display. 16-bit colour keeps its
    top 8 bits (a shift: this runs on every 2K frame shown); gray goes through to_gray_u8."""
    if frame.ndim == 3 and frame.shape[2] >= 3:
        rgb = frame[..., :3]
        if rgb.dtype == np.uint8:
            return np.ascontiguousarray(rgb)
        if rgb.dtype == np.uint16:
            return (rgb >> 8).astype(np.uint8)
        return np.clip(rgb.astype(np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(to_gray_u8(frame), cv2.COLOR_GRAY2RGB)


def component_labels(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """8-connected components of a (H, W) bool mask -> (count incl. background 0, labels int32, areas)."""
    count, labels, stats = component_stats(mask)
    return count, labels, stats[:, cv2.CC_STAT_AREA]


def component_stats(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(count incl. background 0, labels (H, W) int32, stats (count, 5): x, y, width, height, area)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8) if mask.dtype == bool
                                                               else mask.astype(np.uint8), connectivity=8)
    return count, labels, stats


def component_polarity(frame: np.ndarray, labels: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """Per component (index = label), +1 if brighter than the ring around it, -1 if darker, 0 if equal.

    frame: any frame (see the module docstring) at the labels' (H, W); brightness is its luma
    (`to_gray_float`) at full bit depth. The ring is the component dilated by _RING_PX pixels minus
    every defect pixel, so neighbouring defects do not count as background. Work (the gray conversion
    included) is done in each component's bounding box only, so the cost follows the defects, not the
    2K frame. Label 0 (background) gets 0.
    """
    count = len(stats)
    sign = np.zeros(count, np.int8)
    h, w = labels.shape
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * _RING_PX + 1, 2 * _RING_PX + 1))
    for k in range(1, count):
        x, y, bw, bh = stats[k, :4]
        x0, y0 = max(x - _RING_PX, 0), max(y - _RING_PX, 0)
        x1, y1 = min(x + bw + _RING_PX, w), min(y + bh + _RING_PX, h)
        lab = labels[y0:y1, x0:x1]
        inside = lab == k
        ring = cv2.dilate(inside.view(np.uint8), kernel).view(bool) & (lab == 0)
        if ring.any():
            gray = to_gray_float(frame[y0:y1, x0:x1])
            sign[k] = np.sign(gray[inside].mean() - gray[ring].mean())
    return sign


def filter_mask(probs: np.ndarray, frame: np.ndarray | None, flt: MaskFilter) -> np.ndarray:
    """Apply threshold, polarity, minimum size and dilation: probs (H, W) -> mask (H, W) bool.

    frame is needed only for the polarity filter (same H, W as probs).
    """
    if probs.ndim != 2:
        raise ValueError(f"probs must be (H, W), got shape {probs.shape}")
    mask = probs >= flt.threshold
    if flt.min_size > 1 or flt.polarity != "both":
        if flt.polarity != "both" and (frame is None or frame.shape[:2] != probs.shape):
            raise ValueError(f"the polarity filter needs the frame at {probs.shape}, got "
                             f"{None if frame is None else frame.shape}")
        count, labels, stats = component_stats(mask)
        keep = stats[:, cv2.CC_STAT_AREA] >= flt.min_size
        if flt.polarity != "both":
            sign = component_polarity(frame, labels, stats)
            keep &= sign == (-1 if flt.polarity == "dark" else 1)
        keep[0] = False
        mask = keep[labels]
    return dilate(mask, flt.dilation)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grow a (H, W) bool mask by a disc of the given pixel radius (0 = unchanged)."""
    if radius <= 0:
        return mask.astype(bool, copy=False)
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    kernel = (yy * yy + xx * xx <= radius * radius).astype(np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def fig5_layer(pred_mask: np.ndarray, true_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fig. 5 colouring of a prediction against the restorer's mask.

    Returns (colours (H, W, 3) uint8, painted (H, W) bool): green where both agree, blue where
    only the prediction has a defect, red where only the correction has one.
    """
    if pred_mask.shape != true_mask.shape:
        raise ValueError(f"prediction {pred_mask.shape} and correction {true_mask.shape} differ in size")
    colours = np.zeros(pred_mask.shape + (3,), np.uint8)
    colours[pred_mask & true_mask] = AGREED_RGB
    colours[pred_mask & ~true_mask] = FALSE_POSITIVE_RGB
    colours[~pred_mask & true_mask] = MISSED_RGB
    return colours, pred_mask | true_mask


def blend(frame_rgb: np.ndarray, colours: np.ndarray, painted: np.ndarray, opacity: float) -> np.ndarray:
    """Alpha-blend colours over frame_rgb where painted: all (H, W[, 3]) -> (H, W, 3) uint8."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    out = frame_rgb.copy()
    if opacity == 0.0 or not painted.any():
        return out
    ys, xs = np.nonzero(painted)
    base = out[ys, xs].astype(np.float32)
    out[ys, xs] = (base + opacity * (colours[ys, xs].astype(np.float32) - base) + 0.5).astype(np.uint8)
    return out


def overlay(frame: np.ndarray, pred_mask: np.ndarray, true_mask: np.ndarray | None, opacity: float) -> np.ndarray:
    """The Review picture: frame with the prediction (PREDICTED_RGB) or, where a correction exists,
    the Fig. 5 colouring. Returns (H, W, 3) uint8."""
    frame_rgb = to_rgb_u8(frame)
    if frame_rgb.shape[:2] != pred_mask.shape:
        raise ValueError(f"frame {frame_rgb.shape[:2]} and mask {pred_mask.shape} differ in size")
    if true_mask is None:
        colours = np.zeros_like(frame_rgb)
        colours[pred_mask] = PREDICTED_RGB
        return blend(frame_rgb, colours, pred_mask, opacity)
    colours, painted = fig5_layer(pred_mask, true_mask)
    return blend(frame_rgb, colours, painted, opacity)


def magnify(image: np.ndarray, centre_xy: tuple[float, float], size: int, factor: int) -> np.ndarray:
    """Crop a (size x size) window of image centred on (x, y) (clamped inside the image) and
    enlarge it factor times with nearest-neighbour, so single dust pixels stay sharp squares."""
    if factor < 1 or size < 1:
        raise ValueError(f"factor and size must be >= 1, got {factor}, {size}")
    h, w = image.shape[:2]
    size_y, size_x = min(size, h), min(size, w)
    x0 = int(np.clip(round(centre_xy[0] - size_x / 2), 0, w - size_x))
    y0 = int(np.clip(round(centre_xy[1] - size_y / 2), 0, h - size_y))
    crop = image[y0:y0 + size_y, x0:x0 + size_x]
    return np.repeat(np.repeat(crop, factor, axis=0), factor, axis=1)
