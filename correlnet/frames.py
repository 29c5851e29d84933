"""Reading film frames: image files and video files, without losing bit depth.

Conventions:
- `read_image` keeps what is in the file: uint8 or uint16, (H, W) grayscale, (H, W, 3) RGB or
  (H, W, 4) RGBA. Colour channels are returned in **RGB** order (OpenCV decodes BGR; we swap),
  so arrays can go straight to PIL, Streamlit or `to_gray_float`.
- `iter_video_frames` yields (H, W, 3) uint8 RGB frames, decoded by OpenCV, or by PyAV when
  OpenCV cannot open the file.
- Every failure to read a file raises `FrameReadError` (a `ValueError`) whose message names the
  file and says what to do.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "FrameReadError",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "natural_sort",
    "list_frame_files",
    "read_image",
    "image_header_size",
    "to_gray_float",
    "iter_video_frames",
    "video_frame_count",
]

IMAGE_SUFFIXES = frozenset({".png", ".tif", ".tiff", ".jpg", ".jpeg"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".mxf"})
# ITU-R BT.601 luma, the weights OpenCV's COLOR_RGB2GRAY uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class FrameReadError(ValueError):
    """A frame or video file could not be read; the message names the file and the fix."""


def _natural_key(path: str | Path) -> tuple:
    name = Path(path).name
    chunks = re.split(r"(\d+)", name.lower())
    # Numbers compare as numbers (frame2 < frame10); text chunks compare as text.
    return tuple((0, int(c), c) if c.isdigit() else (1, 0, c) for c in chunks if c != ""), str(path)


def natural_sort(paths: Iterable[str | Path]) -> list:
    """Sort paths by file name with numbers compared numerically: frame2 before frame10."""
    return sorted(paths, key=_natural_key)


def list_frame_files(folder: str | Path) -> list[Path]:
    """Image files (png, tif/tiff, jpg/jpeg, any case) directly in `folder`, naturally sorted.

    Hidden files (starting with '.') are skipped. Raises `FrameReadError` if `folder` is not a
    directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FrameReadError(f"{folder}: not a folder; pass a folder of PNG/TIFF/JPEG frames or a video file")
    files = [
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    ]
    return natural_sort(files)


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image file, keeping its bit depth and channels.

    Returns:
        uint8 or uint16 array, (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA.

    Raises:
        FrameReadError: missing, zero-byte, truncated or undecodable file (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FrameReadError(f"{path}: file not found; check the path")
    if path.stat().st_size == 0:
        raise FrameReadError(f"{path}: the file is empty (0 bytes); re-export or re-copy this frame")
    # imdecode from bytes rather than imread(path): imread cannot open non-ASCII paths on Windows.
    img = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FrameReadError(
            f"{path}: cannot decode the image (truncated or not a PNG/TIFF/JPEG file); "
            "re-export or re-copy this frame"
        )
    if img.dtype not in (np.uint8, np.uint16):
        raise FrameReadError(f"{path}: unsupported sample type {img.dtype}; export 8- or 16-bit frames")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def image_header_size(path: str | Path) -> tuple[int, int]:
    """(width, height) read from the file header, without decoding the pixels.

    Lets an importer refuse oversized frames before decoding them. Images above Pillow's
    decompression-bomb limit (about 179 megapixels) are reported as errors too.

    Raises:
        FrameReadError: missing, empty or unrecognised file, or absurdly large image.
    """
    from PIL import Image  # local: only the importer needs Pillow

    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise FrameReadError(f"{path}: missing or empty file; re-export or re-copy this frame")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # lazy: parses the header only
                return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError as exc:
        raise FrameReadError(f"{path}: image too large to process ({exc}); downscale it first") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise FrameReadError(f"{path}: not a readable PNG/TIFF/JPEG image ({exc})") from exc


def to_gray_float(img: np.ndarray) -> np.ndarray:
    """Grayscale float32 (H, W) in [0, 1] from a `read_image`/video array.

    uint8 is divided by 255, uint16 by 65535; floats must already be in [0, 1]. Colour
    (RGB, or RGBA with alpha dropped) is converted to BT.601 luma.

    Raises:
        ValueError: unsupported shape or dtype, or floats outside [0, 1].
    """
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] in (1, 2):
        img = img[..., 0]  # gray, or gray + alpha
    if img.ndim == 3 and img.shape[2] in (3, 4):
        rgb = img[..., :3].astype(np.float32)
        img_f = rgb @ _LUMA
    elif img.ndim == 2:
        img_f = img.astype(np.float32)
    else:
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img_f / np.float32(255.0)
    if img.dtype == np.uint16:
        return img_f / np.float32(65535.0)
    if np.issubdtype(img.dtype, np.floating):
        if img_f.size and (img_f.min() < 0.0 or img_f.max() > 1.0):
            raise ValueError("float images must lie in [0, 1]; scale them first")
        return img_f
    raise ValueError(f"unsupported image dtype {img.dtype}; use uint8, uint16 or float in [0, 1]")


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video file as (H, W, 3) uint8 RGB arrays, in order.

    Tries OpenCV first, PyAV when OpenCV cannot open or decode the file.

    Raises:
        FrameReadError: neither decoder can read a frame of the file.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise FrameReadError(f"{path}: missing or empty video file; check the path")
    capture = cv2.VideoCapture(str(path))
    try:
        ok, frame = capture.read() if capture.isOpened() else (False, None)
        if ok:
            while ok:
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                ok, frame = capture.read()
            return
    finally:
        capture.release()
    yield from _iter_pyav(path)


def _iter_pyav(path: Path) -> Iterator[np.ndarray]:
    import av  # local: only needed when OpenCV lacks the codec

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise FrameReadError(
            f"{path}: cannot open the video ({exc}); convert it to MP4 (H.264) or PNG frames"
        ) from exc
    with container:
        if not container.streams.video:
            raise FrameReadError(f"{path}: the file has no video stream")
        count = 0
        try:
            for frame in container.decode(video=0):
                count += 1
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise FrameReadError(f"{path}: decoding failed after {count} frames ({exc})") from exc
        if count == 0:
            raise FrameReadError(f"{path}: no decodable frame; convert it to MP4 (H.264) or PNG frames")


def video_frame_count(path: str | Path) -> int:
    """Number of frames of a video: container metadata when present, else demuxed packets.

    Raises:
        FrameReadError: the file cannot be opened as a video.
    """
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FrameReadError(f"{path}: the file has no video stream")
            stream = container.streams.video[0]
            if stream.frames > 0:
                return int(stream.frames)
            # No count in the header (e.g. some AVI/MKV): count packets, no decoding needed.
            return sum(1 for p in container.demux(stream) if p.size > 0)
    except (av.FFmpegError, OSError) as exc:
        capture = cv2.VideoCapture(str(path))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        capture.release()
        if count > 0:
            return count
        raise FrameReadError(f"{path}: cannot open the video ({exc}); convert it to MP4 (H.264)") from exc
