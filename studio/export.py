"""Export a film's masks for finishing tools: one matte per frame, plus COCO run-length JSON.

Mattes are single-channel 8-bit images, 255 = defect, 0 = clean (plain PNG or TIFF, which Nuke,
Resolve and PFClean read as image sequences), named `<film>.<number:06d>.<ext>` with the source
frame's number (from its file name, or its 1-based position in a video), so a matte sequence lines
up with the scan sequence. If two frames share a number the 0-based frame index is used instead.

Sources: "corrected" (the restorer's current mask), "predicted" (the model's proposal at 0.5),
"best" (the correction where there is one, else the proposal). Frames without a mask from the
chosen source are not written and are listed in ExportResult.missing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from db.files import atomic_write_bytes
from db.models import Film, Frame
from db.store import Store
from studio.corrections import current_mask
from studio.detection import THRESHOLD, latest_prediction, load_prediction
from studio.films import film_frames

SOURCES = ("corrected", "predicted", "best")
FORMATS = {"png": ".png", "tiff": ".tif"}


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    written: list[Path] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)  # frame numbers with no mask from the source
    coco_path: Path | None = None


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

def frame_mask(store: Store, frame: Frame, source: str = "best") -> np.ndarray | None:
    """(H, W) bool mask of one frame from `source`, or None when that source has none."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if source in ("corrected", "best"):
        mask = current_mask(store, frame.id)
        if mask is not None or source == "corrected":
            return mask
    prediction = latest_prediction(store, frame.id)
    return None if prediction is None else load_prediction(store, prediction) >= THRESHOLD


def _film_masks(store: Store, film: Film, source: str) -> Iterator[tuple[Frame, int, np.ndarray | None]]:
    frames = film_frames(store, film)
    numbers = [f.number for f in frames]
    unique = len(set(numbers)) == len(numbers)
    for frame in frames:
        yield frame, frame.number if unique else frame.index, frame_mask(store, frame, source)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "film"


def coco_json(store: Store, film: Film, source: str = "best", compressed: bool = False) -> dict[str, Any]:
    """COCO-style dict: one image per frame that has a mask, one "defect" annotation (iscrowd=1, RLE)
    per image whose mask is not empty. compressed=True writes COCO's compressed string counts."""
    images, annotations = [], []
    stem = _safe_name(film.name)
    for frame, number, mask in _film_masks(store, film, source):
        if mask is None:
            continue
        images.append({"id": frame.index + 1, "file_name": f"{stem}.{number:06d}.png", "width": film.width,
                       "height": film.height, "frame_index": frame.index, "frame_number": frame.number})
        if not mask.any():
            continue
        rle = rle_encode(mask)
        if compressed:
            rle["counts"] = rle_counts_to_string(rle["counts"])
        ys, xs = np.nonzero(mask)
        bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        annotations.append({"id": len(annotations) + 1, "image_id": frame.index + 1, "category_id": 1,
                            "segmentation": rle, "area": int(mask.sum()), "bbox": bbox, "iscrowd": 1})
    return {
        "info": {"description": f"Correl-Net Studio defect masks of film {film.name!r} (source: {source})"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "defect", "supercategory": "film_defect"}],
    }


def export_film(store: Store, film: Film, out_dir: str | Path, fmt: str = "png", source: str = "best",
                coco: bool = True) -> ExportResult:
    """Write one matte per frame (single channel, uint8 0/255) to `out_dir`, plus `<film>.coco.json`."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {tuple(FORMATS)}, got {fmt!r}")
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = _safe_name(film.name)
    result = ExportResult(out_dir=out_dir)
    for _frame, number, mask in _film_masks(store, film, source):
        if mask is None:
            result.missing.append(number)
            continue
        ok, buf = cv2.imencode(FORMATS[fmt], mask.astype(np.uint8) * 255)
        if not ok:
            raise OSError(f"could not encode the matte of frame {number} as {fmt}")
        path = out_dir / f"{stem}.{number:06d}{FORMATS[fmt]}"
        atomic_write_bytes(path, buf.tobytes())
        result.written.append(path)
    if not coco:
        return result
    coco_path = out_dir / f"{stem}.coco.json"
    atomic_write_bytes(coco_path, json.dumps(coco_json(store, film, source)).encode())
    return ExportResult(out_dir, result.written, result.missing, coco_path)
