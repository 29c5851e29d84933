"""Writing PNGs (the one home): the codec every writer uses, and an atomic file write.

Arrays are in numpy's RGB order (OpenCV's BGR is swapped here), 8 or 16 bit, 1, 3 or 4 channels; a bool
mask is written as 0/255. `write_png` goes through a temporary file beside the target, fsync'ed and
renamed over it (`correlnet.atomic`), so a reader or a crash never meets a half-written file. The store
writes through `db.files.write_png` (the same codec, plus the checksum it records and a directory fsync);
`correlnet detect`, the demo film and the evaluation's pictures write through `write_png` here.
Frames are read by `correlnet.frames`.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from correlnet.atomic import atomic_write

__all__ = ["encode_png", "decode_png", "write_png"]


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of `image`: (H, W) or (H, W, 3) RGB or (H, W, 4) RGBA, dtype uint8 or uint16; bool is
    written as 0/255 uint8. Lossless, so decode_png(encode_png(x)) == x bit for bit.

    Raises:
        ValueError: another dtype or shape (the message says how to convert).
    """
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"PNG needs uint8 or uint16 pixels, got {image.dtype}: convert first (e.g. (x*255).round().astype(np.uint8))")
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
        image = cv2.cvtColor(image, code)
    elif image.ndim != 2:
        raise ValueError(f"PNG needs an (H, W), (H, W, 3) or (H, W, 4) array, got shape {image.shape}")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise ValueError(f"could not encode a {image.shape} {image.dtype} image as PNG")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """Inverse of encode_png: (H, W), (H, W, 3) RGB or (H, W, 4) RGBA array with the stored bit depth.

    Raises:
        ValueError: the bytes are not a readable PNG.
    """
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("not a readable PNG")
    if image.ndim == 3:
        code = cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
        image = cv2.cvtColor(image, code)
    return image


def write_png(path: str | os.PathLike, image: np.ndarray, *, create_dirs: bool = True) -> Path:
    """Atomically write `image` (as `encode_png` takes it) as a PNG file at `path`; returns the path.

    Creates the parent folder unless create_dirs=False. On any error `path` keeps its previous
    content (or stays absent).

    Raises:
        ValueError: an image PNG cannot hold (see `encode_png`).
        OSError: the file cannot be written; the message names it and what to check.
    """
    data = encode_png(image)
    try:
        return atomic_write(path, lambda handle: handle.write(data), create_dirs=create_dirs)
    except OSError as exc:
        # OSError(errno, ...) builds the matching subclass (PermissionError, FileNotFoundError, ...).
        raise OSError(exc.errno, f"could not write {path} ({exc.strerror or exc}): check that the folder "
                      "exists, is writable and is not full") from exc
