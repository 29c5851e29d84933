"""Everything the Review page shows for one frame, built from the store through the studio use
cases. The page passes cached loaders (st.cache_data); the latency benchmark calls the same
functions uncached, which is the worst case a restorer meets on a frame never shown before.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from studio import corrections, detection, films
from webapp.overlay import MaskFilter, filter_mask, magnify, overlay, to_gray_u8, to_rgb_u8

ImageLoader = Callable[[object, object], np.ndarray]  # (store, frame) -> frame image
ProbsLoader = Callable[[object, object], "np.ndarray | None"]  # (store, frame) -> probs or None


def load_probs(store, frame) -> np.ndarray | None:
    """probs (H, W) float32 of the prediction a restorer sees for the frame, None if not predicted."""
    prediction = detection.latest_prediction(store, frame.id)
    return None if prediction is None else detection.load_prediction(store, prediction)


def load_correction(store, frame) -> np.ndarray | None:
    """The frame's current corrected mask (H, W) bool, None when nobody corrected it yet."""
    mask = corrections.current_mask(store, frame.id)
    return None if mask is None else np.asarray(mask) > 0


@dataclass
class FrameView:
    """frame_rgb (H, W, 3) uint8; probs (H, W) float32 or None; predicted (H, W) bool (after the
    filters; all False without a prediction); corrected (H, W) bool or None; picture (H, W, 3)
    uint8 = frame with the overlay."""

    image: np.ndarray
    frame_rgb: np.ndarray
    probs: np.ndarray | None
    predicted: np.ndarray
    corrected: np.ndarray | None
    picture: np.ndarray

    @property
    def shown_mask(self) -> np.ndarray:
        """What "accept frame as is" stores: the correction if any, else the filtered prediction."""
        return self.corrected if self.corrected is not None else self.predicted


def build_view(store, frame, flt: MaskFilter, opacity: float, *,
               load_image: ImageLoader = films.frame_image, load_pred: ProbsLoader = load_probs,
               load_mask: Callable = load_correction) -> FrameView:
    """Load the frame, its prediction and correction, and compose the overlay picture."""
    image = load_image(store, frame)
    frame_rgb = to_rgb_u8(image)
    probs = load_pred(store, frame)
    if probs is not None and probs.shape != frame_rgb.shape[:2]:
        raise ValueError(f"prediction of frame {frame.index} is {probs.shape}, the frame {frame_rgb.shape[:2]}; "
                         "run detection again (`correlnet film detect`)")
    predicted = (filter_mask(probs, image, flt) if probs is not None
                 else np.zeros(frame_rgb.shape[:2], bool))
    corrected = load_mask(store, frame)
    picture = overlay(frame_rgb, predicted, corrected, opacity)
    return FrameView(image, frame_rgb, probs, predicted, corrected, picture)


def encode_jpeg(rgb: np.ndarray, width: int | None = None, quality: int = 90) -> bytes:
    """(H, W, 3) uint8 -> JPEG bytes, optionally resized to `width` (area filter) for the canvas."""
    if width is not None and width != rgb.shape[1]:
        height = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def flick_gif(crops: list[np.ndarray], ms_per_frame: int = 350) -> bytes:
    """Animated GIF cycling previous / current / next (H, W) uint8 crops, so a restorer sees what
    appears in one frame only (a defect) and what moves with the scene (not a defect). Grey, so
    no palette quantisation is needed (it would cost more than everything else on the page)."""
    frames = [Image.fromarray(c, mode="L") for c in crops]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0)
    return buf.getvalue()


def flick_crops(images: list[np.ndarray], centre_xy: tuple[float, float], size: int, factor: int) -> list[np.ndarray]:
    """The same magnified window of previous, current and next frames, grey (H, W) uint8 each.
    Cropped before converting, so a 2K frame is never converted whole for a 64 px window."""
    return [to_gray_u8(magnify(img, centre_xy, size, factor)) for img in images]
