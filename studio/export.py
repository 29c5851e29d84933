"""Export a film's masks for finishing tools: one matte per frame, plus COCO run-length JSON.

Mattes (`FORMATS`): single channel, 255 / 65535 / 1.0 = defect, 0 = clean:
- `png`, `tiff`: 8-bit gray; `tiff16`: 16-bit gray; `exr`: one half-float channel named `A` (Nuke
  reads it straight into the alpha channel), ZIP-compressed.
- `rgba=True`: the scan as RGB (gray scans repeated) with the matte as unassociated alpha, the form
  of PFClean-style defect maps; 8 bits for png/tiff, 16 for tiff16, and for exr the scan converted
  back to scene-linear half floats (`correlnet.transfer.inverse_view_transform`).
- Named `<film>.<number>.<ext>` with the source frame's own number (from its file name, or its
  1-based position in a video), zero-padded to the source's padding and at least `MIN_PADDING`
  digits: a sequence `scan_000101.dpx...` exports `reel.000101.exr...`, read in Nuke as
  `reel.######.exr`, and a video's frames as `reel.0001.exr...` (`reel.####.exr`). If two frames
  share a number the 0-based frame index is used instead.
- Every frame gets a matte, so the sequence has no gaps: a frame without defects, or without a mask
  from the chosen source, gets a black one (the latter are listed in ExportResult.missing).
- `dilate=PX` grows every mask by a disc of radius PX pixels (every pixel within PX of a defect
  pixel), a safety margin for the paint or repair tool; the COCO JSON holds the same dilated masks.
- `frames=(first, last)` exports only the frames numbered first..last (inclusive): a render farm
  can split a film into ranges; the COCO JSON of a range is `<film>.<first>-<last>.coco.json`.
- Nothing is overwritten unasked: a file of a matte's name that already holds that very matte is
  left alone (a re-run is a no-op), one that holds anything else stops the export before a file is
  written, unless `overwrite=True`; the film's own source folder is refused as output folder.

Sources: "corrected" (the restorer's current mask), "predicted" (the model's proposal at 0.5),
"best" (the correction where there is one, else the proposal).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy import and_, select
from sqlalchemy.orm import aliased

from correlnet.frames import FrameReadError, read_native
from correlnet.png import decode_png, encode_png
from correlnet.transfer import inverse_view_transform
from db.files import atomic_write_bytes
from db.models import Correction, Film, Frame, Prediction
from db.store import Store
from studio.corrections import load_correction
from studio.detection import THRESHOLD, load_prediction
from studio.films import FrameRange, frame_image
from studio.frame_queries import frame_names, numbers_unique, shown_prediction

SOURCES = ("corrected", "predicted", "best")
FORMATS = {"png": ".png", "tiff": ".tif", "tiff16": ".tif", "exr": ".exr"}
MIN_PADDING = 4


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    written: list[Path] = field(default_factory=list)  # every matte of the export, including unchanged ones
    missing: list[int] = field(default_factory=list)  # frame numbers with no mask from the source: written black
    coco_path: Path | None = None
    unchanged: int = 0  # mattes already on disk with the same pixels, left as they were


# --- COCO run-length encoding (column-major, counts start with a run of 0s) -------------------

def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool -> {"size": [H, W], "counts": [runs...]}, COCO's uncompressed RLE."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode needs an (H, W) mask, got shape {mask.shape}")
    flat = mask.astype(bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Inverse of rle_encode (also accepts compressed string counts) -> (H, W) bool."""
    height, width = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = rle_counts_from_string(counts)
    if sum(counts) != height * width:
        raise ValueError(f"RLE counts sum to {sum(counts)} but size {height}x{width} needs {height * width}")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape((height, width), order="F")


def rle_counts_to_string(counts: list[int]) -> str:
    """COCO's compressed counts: each count minus the one two before (from the 4th on), written 5 bits
    per character (+48), bit 0x20 = more characters follow, bit 0x10 of the last = negative."""
    chars = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        while True:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: negative numbers end at -1
            more = x != -1 if c & 0x10 else x != 0
            chars.append(chr(c + 48 + (0x20 if more else 0)))
            if not more:
                break
    return "".join(chars)


def rle_counts_from_string(text: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


# --- masks of a film ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ExportRow:
    """One frame to export: its row, the number in its matte's name, its current correction (the latest
    row) and the prediction a restorer sees (the active version's, else the newest: as
    `studio.detection.latest_prediction`), each None when there is none."""

    frame: Frame
    number: int
    correction: Correction | None
    prediction: Prediction | None


def export_rows(store: Store, film: Film, frames: FrameRange | None = None) -> list[ExportRow]:
    """The frames numbered within `frames` (all when None), in film order, with the rows their masks come
    from, in one query (not three per frame: a feature has 130 000 frames). A matte is named after the
    frame's number, or its index when two frames of the film share a number."""
    older = aliased(Correction)
    latest = select(older.id).where(older.frame_id == Frame.id).order_by(older.id.desc()).limit(1).scalar_subquery()
    query = (select(Frame, Correction, Prediction).select_from(Frame).where(Frame.film_id == film.id)
             .outerjoin(Correction, and_(Correction.frame_id == Frame.id, Correction.id == latest))
             .outerjoin(Prediction, and_(Prediction.frame_id == Frame.id, Prediction.id == shown_prediction(film)))
             .order_by(Frame.index))
    if frames is not None:
        query = query.where(Frame.number >= frames[0], Frame.number <= frames[1])
    unique = numbers_unique(store, film)
    with store.session() as s:
        return [ExportRow(f, f.number if unique else f.index, c, p) for f, c, p in s.execute(query)]


def frame_mask(store: Store, row: ExportRow, source: str = "best") -> np.ndarray | None:
    """(H, W) bool mask of one frame from `source`, or None when that source has none."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if source in ("corrected", "best") and (row.correction is not None or source == "corrected"):
        return None if row.correction is None else load_correction(store, row.correction)
    return None if row.prediction is None else load_prediction(store, row.prediction) >= THRESHOLD


def dilate_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """(H, W) bool: every pixel within Euclidean distance `radius` of a True pixel of `mask`."""
    if radius < 0:
        raise ValueError(f"the dilation radius must be 0 or more pixels, got {radius}")
    if radius == 0 or not mask.any():
        return mask.astype(bool)
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disc = (yy * yy + xx * xx <= radius * radius).astype(np.uint8)
    return cv2.dilate(mask.astype(np.uint8), disc, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


@dataclass(frozen=True)
class _FrameMask:
    frame: Frame
    number: int  # the number in the matte's name
    mask: np.ndarray  # (H, W) bool, black where the source has none
    missing: bool  # no mask from the source


def _frame_mask(store: Store, film: Film, entry: ExportRow, source: str, dilate: int) -> _FrameMask:
    mask = frame_mask(store, entry, source)
    if mask is None:
        return _FrameMask(entry.frame, entry.number, np.zeros((film.height, film.width), bool), True)
    return _FrameMask(entry.frame, entry.number, dilate_mask(mask, dilate), False)


def source_padding(frames: list[Frame]) -> int:
    """Digits of the matte numbers: the source's own padding (the width of the frame number in every
    file name when all are zero-padded to the same width), at least MIN_PADDING."""
    widths = set()
    for frame in frames:
        digits = re.findall(r"\d+", Path(frame.source_name or "").stem)
        if not digits or int(digits[-1]) != frame.number:  # a video: every frame has the file's name
            return MIN_PADDING
        widths.add(len(digits[-1]))
    return max(MIN_PADDING, widths.pop()) if len(widths) == 1 else MIN_PADDING


def matte_name(stem: str, number: int, padding: int, fmt: str) -> str:
    """`<stem>.<number, zero-padded>.<ext>`, e.g. matte_name("reel", 7, 4, "exr") == "reel.0007.exr"."""
    return f"{stem}.{number:0{padding}d}{FORMATS[fmt]}"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "film"


# --- matte pixels and files ---------------------------------------------------------------------

def matte_pixels(mask: np.ndarray, fmt: str, scan: np.ndarray | None = None) -> np.ndarray:
    """The pixels of one matte file: (H, W) (H, W, 1 for exr) or, with `scan` ((H, W) or (H, W, 3)
    uint8/uint16, display-referred, as stored), (H, W, 4) RGBA: uint8 for png/tiff, uint16 for tiff16,
    float16 for exr."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {tuple(FORMATS)}, got {fmt!r}")
    mask = np.asarray(mask, bool)
    if scan is None:
        if fmt == "exr":
            return mask.astype(np.float16)[..., None]
        return mask.astype(np.uint16) * np.uint16(65535) if fmt == "tiff16" else mask.astype(np.uint8) * np.uint8(255)
    scan = np.asarray(scan)
    rgb = np.repeat(scan[..., None], 3, axis=2) if scan.ndim == 2 else scan[..., :3]
    unit = rgb.astype(np.float32) / np.float32(np.iinfo(rgb.dtype).max)
    if fmt == "exr":
        return np.concatenate([inverse_view_transform(unit), mask[..., None]], axis=2).astype(np.float16)
    dtype = np.uint16 if fmt == "tiff16" else np.uint8
    top = np.iinfo(dtype).max
    colour = np.rint(unit * np.float32(top)).astype(dtype)
    return np.concatenate([colour, (mask.astype(dtype) * dtype(top))[..., None]], axis=2)


def encode_matte(pixels: np.ndarray, fmt: str) -> bytes:
    """File bytes of `matte_pixels` output: PNG through correlnet.png.encode_png; TIFF (LZW, alpha marked
    unassociated) and EXR (ZIP; channel A, or R, G, B, A) through OpenImageIO."""
    if fmt == "png":
        return encode_png(pixels)
    import OpenImageIO as oiio  # local: only TIFF/EXR mattes need it

    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    kind = {np.dtype(np.uint8): oiio.UINT8, np.dtype(np.uint16): oiio.UINT16, np.dtype(np.float16): oiio.HALF}
    spec = oiio.ImageSpec(pixels.shape[1], pixels.shape[0], channels, kind[pixels.dtype])
    if channels == 4:
        spec.channelnames = ("R", "G", "B", "A")
        spec.attribute("oiio:UnassociatedAlpha", 1)
    else:
        spec.channelnames = ("A",) if fmt == "exr" else ("Y",)
    spec.attribute("compression", "zip" if fmt == "exr" else "lzw")
    with tempfile.TemporaryDirectory(prefix="correlnet-matte-") as tmp:
        path = str(Path(tmp) / f"matte{FORMATS[fmt]}")
        out = oiio.ImageOutput.create(path)
        # (H, W, C) always: OpenImageIO does not take a 2-D array as one channel (its rows come out scrambled).
        data = np.ascontiguousarray(pixels.reshape(pixels.shape[0], pixels.shape[1], channels))
        if out is None or not out.open(path, spec) or not out.write_image(data):
            reason = (out.geterror() if out is not None else "") or oiio.geterror()
            raise OSError(f"could not encode a {pixels.shape} matte as {fmt}: {reason}")
        out.close()
        return Path(path).read_bytes()


def read_matte(path: Path) -> np.ndarray | None:
    """The pixels of a matte file as `matte_pixels` returns them (RGBA order), or None when the file
    cannot be decoded (then it is not one of our mattes)."""
    if path.suffix.lower() == ".png":
        try:
            return decode_png(path.read_bytes())
        except ValueError:
            return None
    try:
        pixels, spec = read_native(path)
    except FrameReadError:
        return None
    return pixels[..., 0] if spec.nchannels == 1 and path.suffix.lower() != ".exr" else pixels


# --- the export ---------------------------------------------------------------------------------

class _Coco:
    """COCO-style dict built one frame at a time (RLE is small; masks are not kept)."""

    def __init__(self, film: Film, source: str, compressed: bool) -> None:
        self.film, self.source, self.compressed = film, source, compressed
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add(self, item: _FrameMask, file_name: str) -> None:
        if item.missing:
            return
        frame, mask = item.frame, item.mask
        self.images.append({"id": frame.index + 1, "file_name": file_name, "width": self.film.width,
                            "height": self.film.height, "frame_index": frame.index, "frame_number": frame.number})
        if not mask.any():
            return
        rle = rle_encode(mask)
        if self.compressed:
            rle["counts"] = rle_counts_to_string(rle["counts"])
        ys, xs = np.nonzero(mask)
        bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        self.annotations.append({"id": len(self.annotations) + 1, "image_id": frame.index + 1, "category_id": 1,
                                 "segmentation": rle, "area": int(mask.sum()), "bbox": bbox, "iscrowd": 1})

    def to_dict(self) -> dict[str, Any]:
        return {
            "info": {"description": f"Correl-Net Studio defect masks of film {self.film.name!r} "
                                    f"(source: {self.source})"},
            "images": self.images,
            "annotations": self.annotations,
            "categories": [{"id": 1, "name": "defect", "supercategory": "film_defect"}],
        }


def coco_json(store: Store, film: Film, source: str = "best", compressed: bool = False, fmt: str = "png",
              dilate: int = 0, frames: FrameRange | None = None) -> dict[str, Any]:
    """COCO-style dict: one image per frame that has a mask from `source` (file_name: its matte's name in
    `fmt`), one "defect" annotation (iscrowd=1, RLE) per image whose mask is not empty.
    compressed=True writes COCO's compressed string counts. `dilate`, `frames`: as in `export_film`."""
    _check_options(fmt, source, dilate, frames)
    stem, padding = _safe_name(film.name), source_padding(frame_names(store, film))
    coco = _Coco(film, source, compressed)
    for entry in export_rows(store, film, frames):
        coco.add(_frame_mask(store, film, entry, source, dilate), matte_name(stem, entry.number, padding, fmt))
    return coco.to_dict()


def _check_options(fmt: str, source: str, dilate: int, frames: FrameRange | None) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {tuple(FORMATS)}, got {fmt!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if dilate < 0:
        raise ValueError(f"the dilation must be 0 or more pixels, got {dilate}")
    if frames is not None and frames[0] > frames[1]:
        raise ValueError(f"the frame range {frames[0]}-{frames[1]} is empty; give FIRST-LAST with FIRST <= LAST")


def _check_out_dir(film: Film, out_dir: Path) -> None:
    source = Path(film.source_path).expanduser()
    if not source.is_dir():
        return
    folder, target = source.resolve(), out_dir.resolve()
    if target == folder or target.is_relative_to(folder):
        raise ValueError(f"{out_dir} is the film's source folder {folder} or inside it: mattes would sit among "
                         "(or replace) the scans; choose a folder outside it")


def _same_file(path: Path, pixels: np.ndarray | None = None, data: bytes | None = None) -> bool:
    """Whether `path` already holds these matte pixels (or these bytes)."""
    if not path.is_file():
        return False
    if data is not None:
        return path.read_bytes() == data
    existing = read_matte(path)
    return existing is not None and existing.dtype == pixels.dtype and np.array_equal(existing, pixels)


def export_film(store: Store, film: Film, out_dir: str | Path, fmt: str = "png", source: str = "best",
                coco: bool = True, *, dilate: int = 0, rgba: bool = False, frames: FrameRange | None = None,
                overwrite: bool = False) -> ExportResult:
    """Write one matte per frame to `out_dir` (see the module docstring), plus `<film>.coco.json`.

    Raises ValueError before writing anything: bad format, source, dilation or range; `out_dir` the
    film's source folder or inside it; a file of a matte's name (or the COCO JSON's) holding anything
    else than what this export would write there, unless `overwrite`.
    """
    _check_options(fmt, source, dilate, frames)
    out_dir = Path(out_dir).expanduser()
    _check_out_dir(film, out_dir)
    stem, padding = _safe_name(film.name), source_padding(frame_names(store, film))
    entries = export_rows(store, film, frames)
    span = "" if frames is None else f".{frames[0]:0{padding}d}-{frames[1]:0{padding}d}"
    coco_path = out_dir / f"{stem}{span}.coco.json" if coco else None

    def pixels_of(item: _FrameMask) -> np.ndarray:
        return matte_pixels(item.mask, fmt, frame_image(store, item.frame) if rgba else None)

    # The names already taken first (a re-run finds them all): the same matte is left alone, anything else
    # stops the export here, before a file is written.
    unchanged = set()
    for entry in entries:
        path = out_dir / matte_name(stem, entry.number, padding, fmt)
        if not path.exists():
            continue
        if _same_file(path, pixels_of(_frame_mask(store, film, entry, source, dilate))):
            unchanged.add(path)
        elif not overwrite:
            raise ValueError(f"{path} already exists and holds another image; choose an empty folder, or pass "
                             "--overwrite to replace earlier mattes (nothing was written)")
    if coco_path is not None and coco_path.exists() and not overwrite:
        previous = json.dumps(coco_json(store, film, source, fmt=fmt, dilate=dilate, frames=frames)).encode()
        if not _same_file(coco_path, data=previous):
            raise ValueError(f"{coco_path} already exists with other masks; pass --overwrite to replace it "
                             "(nothing was written)")
    out_dir.mkdir(parents=True, exist_ok=True)
    written, missing, builder = [], [], _Coco(film, source, compressed=False)
    for entry in entries:
        path = out_dir / matte_name(stem, entry.number, padding, fmt)
        item = _frame_mask(store, film, entry, source, dilate)
        if path not in unchanged:
            atomic_write_bytes(path, encode_matte(pixels_of(item), fmt))
        written.append(path)
        missing.extend([item.number] if item.missing else [])
        builder.add(item, path.name)
    if coco_path is not None:
        data = json.dumps(builder.to_dict()).encode()
        if not _same_file(coco_path, data=data):
            atomic_write_bytes(coco_path, data)
    return ExportResult(out_dir, written, missing, coco_path, unchanged=len(unchanged))
