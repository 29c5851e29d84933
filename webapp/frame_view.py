"""Everything the Review page shows for one frame, built from the store through the studio use
cases. The page passes cached loaders (st.cache_data); the latency benchmark calls the same
functions uncached, which is the worst case a restorer meets on a frame never shown before.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np
from PIL import Image

from studio import corrections, detection, evidence, films
from webapp.overlay import MaskFilter, dilate, filter_mask, magnify, overlay, to_gray_u8, to_rgb_u8

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


def load_evidence(store, frame) -> str | None:
    """studio.evidence.EDITED or ACCEPTED for the frame's current correction, None without one."""
    row = corrections.current_correction(store, frame.id)
    return None if row is None else evidence.correction_evidence(row)


@dataclass
class FrameView:
    """image: the stored frame (`studio.films.frame_image`); frame_rgb (H, W, 3) uint8; probs (H, W)
    float32 or None. proposal (H, W) bool: the model's proposal as the store keeps it (probs >=
    studio.detection.THRESHOLD, no display filter); candidates (H, W) bool: the proposal as the
    display filters see it, before dilation (the defects a click toggles); predicted (H, W) bool:
    candidates dilated, what the overlay paints. All three are all False without a prediction.
    corrected (H, W) bool or None; picture (H, W, 3) uint8 = frame with the overlay. evidence:
    studio.evidence.EDITED / ACCEPTED for a corrected frame, else None. An ACCEPTED frame holds the
    model's own proposal: it is painted in the proposal's colour, never Fig. 5's green, which would
    say a person checked each defect."""

    image: np.ndarray
    frame_rgb: np.ndarray
    probs: np.ndarray | None
    proposal: np.ndarray
    candidates: np.ndarray
    predicted: np.ndarray
    corrected: np.ndarray | None
    picture: np.ndarray
    evidence: str | None = None

    @property
    def shown_mask(self) -> np.ndarray:
        """What the overlay paints: the correction if any, else the filtered prediction."""
        return self.corrected if self.corrected is not None else self.predicted

    @property
    def saved_mask(self) -> np.ndarray:
        """What the frame holds regardless of the display filters: the correction if any, else the
        proposal. A drawing starts from it, and "Accept frame as is" stores it."""
        return self.corrected if self.corrected is not None else self.proposal


def proposal_mask(probs: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """The model's proposal as the store keeps it: (H, W) bool, probs >= studio.detection.THRESHOLD, no
    display filter; all False without a prediction (probs None). What accepting stores and drawing starts
    from on a frame nobody corrected (`FrameView.proposal`)."""
    return np.zeros(shape, bool) if probs is None else probs >= detection.THRESHOLD


def build_view(store, frame, flt: MaskFilter, opacity: float, *,
               load_image: ImageLoader = films.frame_image, load_pred: ProbsLoader = load_probs,
               load_mask: Callable = load_correction, load_evidence: Callable = load_evidence) -> FrameView:
    """Load the frame, its prediction and correction, and compose the overlay picture."""
    image = load_image(store, frame)
    frame_rgb = to_rgb_u8(image)
    probs = load_pred(store, frame)
    if probs is not None and probs.shape != frame_rgb.shape[:2]:
        raise ValueError(f"prediction of frame {frame.index} is {probs.shape}, the frame {frame_rgb.shape[:2]}; "
                         "run detection again (`correlnet film detect`)")
    proposal = proposal_mask(probs, frame_rgb.shape[:2])
    if probs is None:
        candidates = predicted = proposal
    else:
        candidates = filter_mask(probs, image, replace(flt, dilation=0))
        predicted = dilate(candidates, flt.dilation)
    corrected = load_mask(store, frame)
    kind = None if corrected is None else load_evidence(store, frame)
    if kind == evidence.ACCEPTED:
        picture = overlay(frame_rgb, corrected, None, opacity)
    else:
        picture = overlay(frame_rgb, predicted, corrected, opacity)
    return FrameView(image, frame_rgb, probs, proposal, candidates, predicted, corrected, picture, kind)


def encode_jpeg(rgb: np.ndarray, width: int | None = None, quality: int = 90) -> bytes:
    """(H, W, 3) uint8 -> JPEG bytes, optionally resized to `width` for the canvas: reduced with the
    area filter, enlarged with nearest-neighbour (a dust pixel stays a sharp square, as in the magnifier)."""
    if width is not None and width != rgb.shape[1]:
        height = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
        filt = cv2.INTER_AREA if width < rgb.shape[1] else cv2.INTER_NEAREST
        rgb = cv2.resize(rgb, (width, height), interpolation=filt)
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
    """The same magnified window of previous, current and next frames (any stored format), grey
    (H, W) uint8 luma each (`to_gray_u8`). Cropped before converting, so a 2K frame is never
    converted whole for a 64 px window."""
    return [to_gray_u8(magnify(img, centre_xy, size, factor)) for img in images]
