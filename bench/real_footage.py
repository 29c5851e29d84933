"""Share of pixels a model flags on real 1903/1906 footage (no ground truth): a false-positive gauge.

    .venv/bin/python bench/real_footage.py [--model CKPT] [--frames 24] [--threads 2]

The clips in ../shared/data/real_film (README there) carry real dust, blotches, scratches, flicker
and grain, but no defect masks. Their real defects cover a small fraction of a percent of the
pixels, so most of a high flagged share is scene flagged by mistake (edges, moving people, trams):
a lower figure is better as long as the visible dust is still found (look at the pictures written
with --pictures). Each clip's first --frames frames are read as the importer reads them and get
their neighbours from `correlnet.neighbours.analyse_sequence` (the 1906 clip has duplicated
frames), then `correlnet.prediction.detect_frames` predicts them at native resolution.
Prints one Markdown row per clip: frames, flagged share at the threshold, flagged connected
components per frame, and CPU seconds per frame.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from correlnet import DEFECT_THRESHOLD
from correlnet.checkpoint import load_detector
from correlnet.data import shared_data_dir
from correlnet.default_model import default_model_path
from correlnet.frames import list_frame_files, read_image, to_gray_float
from correlnet.neighbours import analyse_sequence, thumbnail
from correlnet.prediction import detect_frames
from correlnet.real_eval import REAL_FILM_CLIPS
from correlnet.tiling import TilingConfig

CLIPS = tuple(REAL_FILM_CLIPS)


def flagged(model: torch.nn.Module, folder: Path, n_frames: int, threshold: float,
            pictures: Path | None) -> dict:
    """{"frames", "share", "components", "cpu_s"} of `model` on the first n_frames of `folder`."""
    files = list_frame_files(folder)[:n_frames]
    gray = np.stack([to_gray_float(read_image(f)) for f in files])
    analysis = analyse_sequence(np.stack([thumbnail(g) for g in gray]))
    flagged_px = components = 0
    t = time.process_time()
    for i, probs in detect_frames(model, lambda j: gray[j], analysis.neighbours, TilingConfig(),
                                  torch.device("cpu")):
        mask = (probs >= threshold).astype(np.uint8)
        flagged_px += int(mask.sum())
        components += cv2.connectedComponents(mask, connectivity=8)[0] - 1
        if pictures is not None:
            pictures.mkdir(parents=True, exist_ok=True)
            rgb = np.repeat(np.rint(gray[i] * 255).astype(np.uint8)[..., None], 3, axis=2)
            rgb[mask > 0] = (0, 0, 255)  # BGR red: what the model calls a defect
            cv2.imwrite(str(pictures / f"{folder.name}_{i:03d}.png"), rgb)
    cpu = time.process_time() - t
    return {"frames": len(files), "share": flagged_px / gray.size, "components": components / len(files),
            "cpu_s": cpu / len(files)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, metavar="SPEC", help="checkpoint or sdi-p (default: the shipped model)")
    ap.add_argument("--frames", type=int, default=24, help="first N frames of each clip (default 24)")
    ap.add_argument("--threshold", type=float, default=DEFECT_THRESHOLD)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pictures", default=None, metavar="DIR", help="write each frame with its flagged pixels in red")
    args = ap.parse_args()
    real_film = shared_data_dir() / "real_film"
    if not real_film.is_dir():
        raise SystemExit(f"real footage not found at {real_film} (see the brief: it lives in shared/, not in the repo)")
    torch.set_num_threads(args.threads)
    model_path = args.model or default_model_path()
    model = load_detector(model_path)
    print(f"model {model_path}, threshold {args.threshold}, first {args.frames} frames per clip")
    print("| clip | frames | flagged pixels | flagged components per frame | CPU s per frame |")
    print("|---|---:|---:|---:|---:|")
    for clip in CLIPS:
        r = flagged(model, real_film / clip, args.frames, args.threshold,
                    Path(args.pictures) if args.pictures else None)
        print(f"| {clip} | {r['frames']} | {100 * r['share']:.2f} % | {r['components']:.1f} | {r['cpu_s']:.2f} |")


if __name__ == "__main__":
    main()
