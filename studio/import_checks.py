"""What every import checks, whichever way it stores the frames: the configuration, the frame limits,
the pixel formats a film may hold and the one format all its frames share.

Shared by every import source (studio/import_sources.py) and the run (studio/resumable_import.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from correlnet import frames as framelib
from correlnet.neighbours import NeighbourConfig
from db.files import sha256_bytes


class FilmImportError(ValueError):
    """An import that cannot proceed; the message names the file and what to do. `kept_frames`: frames
    the import committed before the failure (0: the store is unchanged); re-running the same
    import resumes after them."""

    kept_frames = 0


@dataclass(frozen=True)
class ImportConfig:
    """max_pixels / max_side: frames larger than this are refused from their header, before decoding
    (defaults: correlnet.frames.MAX_PIXELS / MAX_SIDE, the limits `correlnet detect` applies too).
    in_place: a folder of frames is referenced where it lies (path, size and sha256 per frame, verified
        on every read) instead of copied into the store as PNG; videos are always decoded into the store,
        and so are sources inside the store's own data folder (its uploads are temporary).
    batch_frames: every import commits its rows (and a copying one has written its PNGs) every
        `batch_frames` frames, so a killed import resumes after the last batch (500: at 2K a batch takes
        about a minute to hash and thumbnail in place, a few minutes to encode as PNG).
    resume: an import of a source whose earlier import was interrupted continues it (in place: the same
        folder; copied: the same path or the same bytes; and the same name when one is given); False
        discards the interrupted one and starts again."""

    max_pixels: int = framelib.MAX_PIXELS
    max_side: int = framelib.MAX_SIDE
    neighbours: NeighbourConfig = NeighbourConfig()
    in_place: bool = True
    batch_frames: int = 500
    resume: bool = True

    def __post_init__(self) -> None:
        if self.batch_frames < 1:
            raise ValueError(f"ImportConfig.batch_frames must be at least 1, got {self.batch_frames}")


def frame_number(name: str, default: int) -> int:
    """The frame number in a file name: the last run of digits in its stem ("shot_0012.tif" -> 12)."""
    digits = re.findall(r"\d+", Path(name).stem)
    return int(digits[-1]) if digits else default


def folder_digest(named_shas: Iterable[tuple[str, str]]) -> str:
    """A frame folder's content digest from its (file name, sha256) pairs in film order: the same names
    and bytes give the same digest wherever the folder lies (re-import detection, `Film.source_sha`)."""
    return sha256_bytes("\n".join(f"{name}:{sha}" for name, sha in named_shas).encode())


def pick_name(taken: set[str], wanted: str, explicit: bool) -> str:
    """`wanted`, or when taken the next free "wanted-2", "wanted-3"...; an explicit (--name) name that is
    taken raises FilmImportError."""
    if wanted not in taken:
        return wanted
    if explicit:
        raise FilmImportError(f"a film named {wanted!r} already exists; choose another --name")
    suffix = 2
    while f"{wanted}-{suffix}" in taken:
        suffix += 1
    return f"{wanted}-{suffix}"


def frame_suffixes() -> str:
    return ", ".join(sorted(s.lstrip(".") for s in framelib.IMAGE_SUFFIXES))


def check_header(file: Path, cfg: ImportConfig) -> None:
    """Refuse a frame whose header is unreadable or whose size is above the limits, before decoding it."""
    try:
        width, height = framelib.image_header_size(file)
    except framelib.FrameReadError as exc:
        raise FilmImportError(f"{exc}; replace or remove this frame and import again") from exc
    check_size(file, width, height, cfg)


def check_size(file: Path, width: int, height: int, cfg: ImportConfig) -> None:
    if framelib.frame_too_large(width, height, cfg.max_pixels, cfg.max_side):
        raise FilmImportError(
            f"{file}: frame is {width}x{height}, above the import limit ({cfg.max_pixels} pixels, "
            f"{cfg.max_side} per side); downscale the scans or raise ImportConfig.max_pixels")


def read_frame_file(file: Path) -> np.ndarray:
    """One frame file as a film keeps it (`normalise`d); FilmImportError naming the file."""
    try:
        return normalise(framelib.read_image(file), file)
    except framelib.FrameReadError as exc:
        raise FilmImportError(f"{exc}; replace or remove this frame and import again") from exc


def normalise(image: np.ndarray, file: Path) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8/uint16; alpha dropped."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype not in (np.uint8, np.uint16) or image.ndim not in (2, 3):
        raise FilmImportError(f"{file}: unsupported pixels {image.dtype} {image.shape}; "
                              "export the frames as 8- or 16-bit gray or RGB")
    return image


FrameFormat = tuple[tuple[int, ...], np.dtype]  # (shape, dtype) of a normalised frame


class FormatCheck:
    """Every frame of a film shares the first frame's size, bit depth and channels."""

    def __init__(self, cfg: ImportConfig, fmt: FrameFormat | None = None) -> None:
        self.cfg, self.fmt = cfg, fmt

    def check(self, image: np.ndarray, file: Path) -> None:
        fmt = (image.shape, image.dtype)
        if self.fmt is None:
            check_size(file, image.shape[1], image.shape[0], self.cfg)
            self.fmt = fmt
        elif fmt != self.fmt:
            raise FilmImportError(
                f"{file}: frame is {describe(*fmt)} but the film's first frame is {describe(*self.fmt)}; "
                "every frame of a film must share size, bit depth and channels: convert or remove it")

    def film_fields(self) -> dict:
        """The Film columns the format gives: width, height, bit_depth, channels."""
        shape, dtype = self.fmt  # type: ignore[misc]
        return dict(width=shape[1], height=shape[0], bit_depth=np.dtype(dtype).itemsize * 8,
                    channels=shape[2] if len(shape) == 3 else 1)


def film_format(width: int, height: int, bit_depth: int, channels: int) -> FrameFormat:
    """The FrameFormat of a stored film's columns (to resume checking an interrupted import)."""
    shape = (height, width) if channels == 1 else (height, width, channels)
    return shape, np.dtype(np.uint8 if bit_depth == 8 else np.uint16)


def describe(shape: tuple[int, ...], dtype: np.dtype) -> str:
    channels = shape[2] if len(shape) == 3 else 1
    return f"{shape[1]}x{shape[0]} {np.dtype(dtype).itemsize * 8}-bit {channels}-channel"
