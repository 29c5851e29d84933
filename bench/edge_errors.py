"""Where a model's pixel errors lie on the held-out clip, and how F1 moves with the threshold.

    .venv/bin/python bench/edge_errors.py [--model CKPT ...] [--synth paper|full] [--threads 1]

Same frames, defects and prediction as `correlnet evaluate --source demo --seed 0 --frames 12`
(correlnet.evaluate: held-out bikes 187-249, one generator seed per triplet). Per model it prints
- F1 (precision / recall) at thresholds 0.3 ... 0.7: whether a threshold other than 0.5 would help;
- false positives split by distance to the nearest true defect pixel (1 px, 2 px, further) and
  whether they lie on a defect of a neighbour frame;
- false negatives split into defect edge (the defect's outer pixel ring, 8-connected) and interior.
Session 5 used it to find that nearly all errors of the session-4 model sit on defect edges
(docs/training.md).
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from correlnet import DEFECT_THRESHOLD
from correlnet.checkpoint import load_model
from correlnet.data import load_spans, train_eval_split
from correlnet.default_model import default_model_path
from correlnet.evaluate import centre_frames, triplet_rng
from correlnet.inference import prepare_for_inference
from correlnet.metrics import PixelCounts, count_pixels
from correlnet.prediction import predict_triplet_tiled
from correlnet.synth import SynthConfig, degrade_triplet
from correlnet.tiling import TilingConfig

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
_K3 = np.ones((3, 3), np.uint8)


def ring(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within `width` (chessboard distance) of `mask` but not in it; (H, W) bool."""
    return cv2.dilate(mask.astype(np.uint8), _K3, iterations=width).astype(bool) & ~mask


def edge_errors(model: torch.nn.Module, synth: SynthConfig, seed: int = 0, frames: int = 12) -> dict:
    device = torch.device("cpu")
    model = prepare_for_inference(model, device)
    _, held = train_eval_split()
    counts = {th: PixelCounts() for th in THRESHOLDS}
    out = dict(fp_1px=0, fp_2px=0, fp_far_on_neighbour_defect=0, fp_far=0, fn_edge=0, fn_interior=0)
    for name, clip in load_spans(held).items():
        for t in centre_frames(clip.shape[0], frames):
            clean = np.ascontiguousarray(clip[t - 1 : t + 2], dtype=np.float32)
            degraded, masks = degrade_triplet(clean, synth, triplet_rng(seed, name, t))
            probs = np.asarray(predict_triplet_tiled(model, degraded, TilingConfig(), device))
            true = masks[1].astype(bool)
            for th in THRESHOLDS:
                counts[th] += count_pixels(probs >= th, true)
            pred = probs >= DEFECT_THRESHOLD
            false_pos, false_neg = pred & ~true, ~pred & true
            r1, r2 = ring(true, 1), ring(true, 2)
            far = false_pos & ~r2
            neighbour = (masks[0] | masks[2]).astype(bool)
            out["fp_1px"] += int((false_pos & r1).sum())
            out["fp_2px"] += int((false_pos & r2 & ~r1).sum())
            out["fp_far_on_neighbour_defect"] += int((far & neighbour).sum())
            out["fp_far"] += int((far & ~neighbour).sum())
            interior = cv2.erode(true.astype(np.uint8), _K3).astype(bool)
            out["fn_edge"] += int((false_neg & ~interior).sum())
            out["fn_interior"] += int((false_neg & interior).sum())
    out["by_threshold"] = counts
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=[str(default_model_path())])
    parser.add_argument("--synth", choices=("paper", "full"), default="paper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    synth = SynthConfig.paper() if args.synth == "paper" else SynthConfig()
    print("| model | " + " | ".join(f"F1 (P / R) at {th}" for th in THRESHOLDS)
          + " | FP at 1 px | FP at 2 px | FP further (on a neighbour's defect) | FN on edge | FN inside |")
    print("|---|" + "---|" * len(THRESHOLDS) + "---:|---:|---:|---:|---:|")
    for path in args.model:
        r = edge_errors(load_model(path), synth, args.seed, args.frames)
        cells = [f"{c.f1:.4f} ({c.precision:.3f} / {c.recall:.3f})" for c in r["by_threshold"].values()]
        far = r["fp_far"] + r["fp_far_on_neighbour_defect"]
        print(f"| {path} | " + " | ".join(cells) + f" | {r['fp_1px']} | {r['fp_2px']} | "
              f"{far} ({r['fp_far_on_neighbour_defect']}) | {r['fn_edge']} | {r['fn_interior']} |")


if __name__ == "__main__":
    main()
