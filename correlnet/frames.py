"""Reading film frames: image files and video files, without losing bit depth.

Conventions:
- `read_image` returns display-referred pixels at the file's depth: uint8 or uint16, (H, W)
  grayscale, (H, W, 3) RGB or (H, W, 4) RGBA. Colour channels are returned in **RGB** order
  (OpenCV decodes BGR; we swap), so arrays can go straight to PIL, Streamlit or `to_gray_float`.
  PNG and JPEG are decoded by OpenCV; scanner formats (DPX, Cineon, OpenEXR, TIFF at 8/16/32 bits,
  `SCAN_SUFFIXES`) by OpenImageIO, which keeps their depth and DPX transfer metadata. Log DPX/Cineon
  and scene-linear EXR are mapped to display-referred uint16 by the policy of `correlnet.transfer`
  (the model was trained on display-referred video); the table is in that module's docstring.
- Video files are decoded by `correlnet.video` (`iter_video_frames`: RGB at the stream's depth; a
  video that ends short of its header's count raises).
- A sequence (a folder of frames or a video) is read in order by `iter_frames`, or frame by frame in
  any order by `FrameSequence` (the `read_frame(i) -> (H, W) float32` that neighbours and streaming
  take); `correlnet detect`, `data.load_clip` and the demo film read through them.
- Every failure to read a file raises `FrameReadError` (a `ValueError`) whose message names the
  file and says what to do.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

import cv2
import numpy as np

from correlnet import transfer

__all__ = [
    "FrameReadError",
    "IMAGE_SUFFIXES",
    "SCAN_SUFFIXES",
    "natural_sort",
    "list_frame_files",
    "read_image",
    "image_header_size",
    "read_native",
    "scan_encoding",
    "to_gray_float",
    "frame_too_large",
    "MAX_PIXELS",
    "MAX_SIDE",
    "iter_frames",
    "FrameSequence",
]

# Read through OpenImageIO (depth, float and DPX transfer metadata kept); the rest through OpenCV.
SCAN_SUFFIXES = frozenset({".dpx", ".cin", ".exr", ".tif", ".tiff"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"}) | SCAN_SUFFIXES
_SUFFIX_LIST = "PNG/JPEG/TIFF/DPX/Cineon/EXR"
# ITU-R BT.601 luma, the weights OpenCV's COLOR_RGB2GRAY uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Frames above this are refused from their header, before decoding (a corrupt or hostile header could
# otherwise ask for gigabytes, and a 12000x12000 scan runs for minutes). 8K DCI is 8192x4320 = 35 Mpx.
MAX_PIXELS = 40_000_000
MAX_SIDE = 16_384


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
    """Image files (`IMAGE_SUFFIXES`: png, jpg/jpeg, tif/tiff, dpx, cin, exr; any case) directly in
    `folder`, naturally sorted.

    Hidden files (starting with '.') are skipped. Raises `FrameReadError` if `folder` is not a
    directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FrameReadError(f"{folder}: not a folder; pass a folder of frames ({_SUFFIX_LIST}) or a video file")
    files = [
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    ]
    return natural_sort(files)


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image file to display-referred pixels, keeping its bit depth and channels.

    PNG/JPEG/TIFF and display-referred DPX come back as stored; log DPX, Cineon and OpenEXR are
    mapped by `correlnet.transfer`'s policy to uint16; float TIFF is clipped to [0, 1] as uint16.

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
    if path.suffix.lower() in SCAN_SUFFIXES:
        return _read_scan(path)
    # imdecode from bytes rather than imread(path): imread cannot open non-ASCII paths on Windows.
    img = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FrameReadError(
            f"{path}: cannot decode the image (truncated or not a {_SUFFIX_LIST} file); "
            "re-export or re-copy this frame"
        )
    if img.dtype not in (np.uint8, np.uint16):
        raise FrameReadError(f"{path}: unsupported sample type {img.dtype}; export 8- or 16-bit frames")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def _open_scan(path: Path):  # type: ignore[no-untyped-def]
    """An OpenImageIO ImageInput on `path` (the caller closes it); FrameReadError naming the file."""
    import OpenImageIO as oiio  # local: only scanner formats need it

    config = oiio.ImageSpec()
    config.attribute("oiio:UnassociatedAlpha", 1)  # samples as stored: never premultiplied on reading
    image = oiio.ImageInput.open(str(path), config)
    if image is None:
        reason = oiio.geterror().strip().splitlines()
        raise FrameReadError(f"{path}: cannot decode the image ({reason[0] if reason else 'unknown format'}); "
                             "re-export or re-copy this frame")
    return image


def read_native(path: str | Path):  # type: ignore[no-untyped-def]
    """A scanner-format file's own samples, without the display mapping: ((H, W, C) array of its native
    type, uint8/uint16/float16/float32, channels in file order; its OpenImageIO ImageSpec).

    Raises:
        FrameReadError: missing, undecodable or truncated file (names the file).
    """
    import OpenImageIO as oiio

    path = Path(path)
    image = _open_scan(path)
    try:
        spec = image.spec()
        pixels = image.read_image(0, 0, 0, spec.nchannels, oiio.UNKNOWN)  # native type: uint8/16, half, float
        if pixels is None:
            raise FrameReadError(f"{path}: cannot decode the pixels ({image.geterror().strip() or 'truncated?'}); "
                                 "re-export or re-copy this frame")
    finally:
        image.close()
    return np.asarray(pixels).reshape(spec.height, spec.width, spec.nchannels), spec


def _read_scan(path: Path) -> np.ndarray:
    pixels, spec = read_native(path)
    pixels = _picture_channels(pixels, spec)
    encoding = scan_encoding(path, spec)
    if encoding == "display":
        if pixels.dtype in (np.uint8, np.uint16):
            return pixels
        if np.issubdtype(pixels.dtype, np.floating):
            return _to_uint16(np.nan_to_num(pixels.astype(np.float32), nan=0.0))
        raise FrameReadError(f"{path}: unsupported sample type {pixels.dtype}; export 8/16-bit or float frames")
    values = pixels.astype(np.float32)
    if pixels.dtype in (np.uint8, np.uint16):
        values /= np.float32(np.iinfo(pixels.dtype).max)
    picture = values[..., :3] if values.ndim == 3 and values.shape[2] == 4 else values
    if encoding == "log":
        black, white = _cineon_levels(spec)
        picture = transfer.cineon_to_linear(picture * np.float32(1023.0), black, white)
    display = transfer.view_transform(picture)
    if values.ndim == 3 and values.shape[2] == 4:  # alpha is coverage, not light: kept as it is
        display = np.concatenate([display, np.clip(values[..., 3:], 0.0, 1.0)], axis=2)
    return _to_uint16(display)


def _to_uint16(values: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(values, 0.0, 1.0) * np.float32(65535.0)).astype(np.uint16)


def _picture_channels(pixels: np.ndarray, spec) -> np.ndarray:  # type: ignore[no-untyped-def]
    """(H, W), (H, W, 3) or (H, W, 4) from the file's channels: R, G, B (and A) by name, else Y (luma),
    else the first channel (a single-channel or gray + alpha file); other channels (depth, AOVs) dropped."""
    names = [str(n).split(".")[-1].upper() for n in spec.channelnames]
    if {"R", "G", "B"} <= set(names):
        keep = [names.index(c) for c in ("R", "G", "B", "A") if c in names]
        return pixels[..., keep]
    if spec.nchannels >= 3 and "Y" not in names:
        return pixels[..., : 4 if spec.nchannels == 4 else 3]
    return pixels[..., names.index("Y") if "Y" in names else 0]


def scan_encoding(path: str | Path, spec) -> str:  # type: ignore[no-untyped-def]
    """"log", "linear" or "display": how a scanner-format file encodes light, from its format and its
    metadata (an OpenImageIO ImageSpec), as `correlnet.transfer`'s policy table says."""
    suffix = Path(path).suffix.lower()
    if suffix == ".exr":
        return "linear"
    if suffix == ".cin":
        return "log"
    if suffix == ".dpx":
        curve = str(spec.get_string_attribute("dpx:Transfer")).lower()
        if curve in ("logarithmic", "printing density"):
            return "log"
        if curve == "linear":
            return "linear"
    return "display"


def _cineon_levels(spec) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(reference black, reference white) on the 10-bit code scale: the DPX header's television black
    and white levels when both are set and plausible, else Kodak's 95 and 685."""
    bits = spec.get_int_attribute("oiio:BitsPerSample") or 10
    scale = 1023.0 / (2 ** bits - 1)
    black = spec.get_float_attribute("dpx:BlackLevel", float("nan")) * scale
    white = spec.get_float_attribute("dpx:WhiteLevel", float("nan")) * scale
    if np.isfinite(black) and np.isfinite(white) and 0.0 <= black < white <= 1023.0 and white - black >= 100.0:
        return float(black), float(white)
    return transfer.CINEON_BLACK, transfer.CINEON_WHITE


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
    if path.suffix.lower() in SCAN_SUFFIXES:
        image = _open_scan(path)  # parses the header only
        try:
            return int(image.spec().width), int(image.spec().height)
        finally:
            image.close()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # lazy: parses the header only
                return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError as exc:
        raise FrameReadError(f"{path}: image too large to process ({exc}); downscale it first") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise FrameReadError(f"{path}: not a readable {_SUFFIX_LIST} image ({exc})") from exc


def frame_too_large(width: int, height: int, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE) -> bool:
    """Whether a width x height frame is above the limits (check it from `image_header_size`)."""
    return width * height > max_pixels or max(width, height) > max_side


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


def iter_frames(source: str | Path, start: int = 0, stop: int | None = None, step: int = 1) -> Iterator[np.ndarray]:
    """Frames start, start + step, ... before `stop` of a folder of frames (`list_frame_files` order;
    files outside the range are never opened) or of a video file (`correlnet.video.iter_video_frames`), as those give them.

    Raises:
        FrameReadError: no such file or folder, or a frame that cannot be read (names the file).
    """
    from correlnet import video  # local: video imports this module's FrameReadError

    path = Path(source)
    if path.is_dir():
        for file in list_frame_files(path)[start:stop:step]:
            yield read_image(file)
    elif path.is_file():
        # Frames before `start` are decoded but never converted (iter_video_frames' start); islice keeps its
        # own errors for a negative start or stop.
        skip = max(start, 0)
        end = None if stop is None else (max(stop - skip, 0) if stop >= 0 else stop)
        yield from islice(video.iter_video_frames(path, skip), start - skip, end, step)
    else:
        raise FrameReadError(f"{path}: not found; pass a video file or a folder of frames")


class FrameSequence:
    """The frames of a folder or a video file, read on demand in any order: `seq(i)` is frame i as
    (H, W) float32 gray in [0, 1] (`to_gray_float`), `len(seq)` the number of frames, `seq.files` the
    frame files in order (a folder) or [the video], `seq.video` whether it is a video.

    Frames above `frame_too_large` are refused: a folder's from their headers when it is opened (before
    any decoding: a huge scan would run for minutes), a video's as they are decoded. A video is decoded
    in order with the last `keep` frames kept (streaming only ever looks back one or two frames), and
    reopened when an earlier frame is asked for.

    Raises:
        FrameReadError: no such file or folder, no frame in it, a frame above the limits, a video that
            ends before its header's frame count, or an unreadable frame (each names the file).
    """

    def __init__(self, source: str | Path, keep: int = 4):
        self.path, self.keep = Path(source), keep
        if not self.path.exists():
            raise FrameReadError(f"{self.path}: no such file or folder; pass a video file or a folder of frames")
        self.video = not self.path.is_dir()
        if self.video:
            self.files = [self.path]
            from correlnet import video  # local: video imports this module's FrameReadError

            self.count = video.video_frame_count(self.path)
            if self.count < 1:
                raise FrameReadError(f"{self.path}: the video has no frames")
        else:
            self.files = list_frame_files(self.path)
            self.count = len(self.files)
            if not self.files:
                raise FrameReadError(f"{self.path}: no {_SUFFIX_LIST} frames in this folder; pass a folder of "
                                     "frames or a video file")
            for file in self.files:
                width, height = image_header_size(file)
                _check_size(file, width, height)
        self._iter: Iterator[np.ndarray] | None = None
        self._next, self._recent = 0, {}

    def __len__(self) -> int:
        return self.count

    def __call__(self, i: int) -> np.ndarray:
        if not 0 <= i < self.count:
            raise IndexError(f"frame {i} out of range for {self.path} ({self.count} frames)")
        if not self.video:
            return to_gray_float(read_image(self.files[i]))
        if i in self._recent:
            return self._recent[i]
        if self._iter is None or i < self._next:
            from correlnet import video

            self._iter, self._next = video.iter_video_frames(self.path, start=i), i  # earlier frames: decoded only
        while self._next <= i:
            frame = next(self._iter, None)
            if frame is None:
                raise FrameReadError(f"{self.path}: the video ended at frame {self._next} but its header says "
                                     f"{self.count} frames; re-encode it (e.g. to MP4/H.264) or export PNG frames")
            _check_size(self.path, frame.shape[1], frame.shape[0])
            self._recent[self._next] = to_gray_float(frame)
            self._recent.pop(self._next - self.keep, None)
            self._next += 1
        return self._recent[i]


def _check_size(path: Path, width: int, height: int) -> None:
    if frame_too_large(width, height):
        raise FrameReadError(f"{path}: frame is {width}x{height}, above the limit ({MAX_PIXELS // 1_000_000} "
                             f"megapixels, {MAX_SIDE} pixels a side); downscale it first")
