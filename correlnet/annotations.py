"""Defect masks drawn by hand on real-film frames: the ground truth of evaluation part (e).

The project commits them at ``data/annotations/real_film/<clip>/<number:05d>.png`` (`ANNOTATIONS_DIR`):
one single-channel PNG per annotated frame, the same size as the frame, nonzero = defect. `number`
is the frame's number in its file name (00012.png in ../shared/data/real_film/<clip>/ is annotated
by <clip>/00012.png), so a mask and its frame share a name. The frames themselves stay in shared/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from correlnet.frames import read_image

# The repository's data/annotations/real_film (beside correlnet/, like the shipped weights inside it).
ANNOTATIONS_DIR = Path(__file__).resolve().parents[1] / "data" / "annotations" / "real_film"


def annotation_path(clip: str, number: int, root: Path | None = None) -> Path:
    """Where the mask of frame `number` (as in 00012.png) of `clip` lives under `root` (default ANNOTATIONS_DIR)."""
    return (ANNOTATIONS_DIR if root is None else Path(root)) / clip / f"{int(number):05d}.png"


def annotated_numbers(clip: str, root: Path | None = None) -> list[int]:
    """Frame numbers of `clip` that have a mask under `root`, sorted; [] when there is none."""
    folder = (ANNOTATIONS_DIR if root is None else Path(root)) / clip
    if not folder.is_dir():
        return []
    return sorted(int(p.stem) for p in folder.glob("*.png") if p.stem.isdigit())


def load_annotation(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """The mask at `path` as (H, W) bool (nonzero = defect), checked to be (H, W) = `shape`.

    Raises ValueError naming the file when it is not single-channel or not the frame's size, and
    correlnet.frames.FrameReadError when it cannot be read.
    """
    mask = read_image(path)
    if mask.ndim != 2:
        raise ValueError(f"{path}: an annotation must be a single-channel PNG (nonzero = defect); got "
                         f"{mask.shape[2]} channels: save it as grayscale")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{path}: annotation is {mask.shape[1]}x{mask.shape[0]} but its frame is "
                         f"{shape[1]}x{shape[0]} (W x H): draw it on the frame at full resolution")
    return mask != 0
