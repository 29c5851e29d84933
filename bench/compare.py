"""The paper's comparison (Table 1 / Table 2) reproduced at our scale.

Every network is trained with the same data (the demo clips' training part), the same defect
generator, steps, batch, crop, learning rate and seed, from random weights, then evaluated on the
same held-out frames (correlnet.data.HELD_OUT) with the same seeded defects. Reported: pixel
precision / recall / F1 (TP/FP/FN totals), parameters, CPU milliseconds per evaluated frame and
the false-positive rate on scene blobs (correlnet.scene_trap), the test the paper's argument
rests on: a single-frame or stacked-frame network cannot tell a scene blob from a blotch.

    OMP_NUM_THREADS=2 python bench/compare.py --steps 300 --crop 128 --encoder tinynet_e --json out.json

Prints a Markdown table for docs/benchmarks.md. Scale is tiny on purpose (CPU only); say so
wherever the numbers are quoted.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from correlnet.data import TripletDataset, load_spans, train_eval_split
from correlnet.device import resolve_device
from correlnet.evaluate import EvalConfig, evaluate_sequences
from correlnet.models import build_model
from correlnet.synth import SynthConfig
from correlnet.train import TrainConfig, train

# Paper names -> (our arch, ModelConfig overrides). "stacked U-Net" is Table 2's first row: the same
# encoder on stacked frames. The last two rows are Correl-Net with the shipped model's cheaper
# correlation (d = 6 every second displacement: 49 channels instead of the paper's 441), without and
# with the decoder's full-resolution input skip.
ROWS: dict[str, tuple[str, dict]] = {
    "Correl-Net (efficient)": ("efficient-correlnet", {}),
    "Tri-Net (no correlation)": ("efficient-trinet", {}),
    "stacked U-Net": ("efficient-unet", {}),
    "DeepLab v3+": ("deeplabv3plus", {}),
    "NAS-FPN": ("nasfpn", {}),
    "Correl-Net, d=6 stride2=2": ("efficient-correlnet", {"max_displacement": 6, "stride2": 2}),
    "Correl-Net, d=6 stride2=2, input skip": (
        "efficient-correlnet", {"max_displacement": 6, "stride2": 2, "input_skip": True}),
    "Tri-Net, input skip": ("efficient-trinet", {"input_skip": True}),
}
PAPER_ROWS = ["Correl-Net (efficient)", "Tri-Net (no correlation)", "stacked U-Net", "DeepLab v3+", "NAS-FPN"]


def centre_crop(clip: np.ndarray, size: int | None) -> np.ndarray:
    """(T, H, W) -> (T, min(H, size), min(W, size)) centre crop; None keeps the frame."""
    if size is None:
        return clip
    _, h, w = clip.shape
    y, x = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return np.ascontiguousarray(clip[:, y : y + size, x : x + size])


def run_row(arch: str, overrides: dict, args: argparse.Namespace, clips: dict, held: dict, synth: SynthConfig,
            device: torch.device) -> dict:
    torch.manual_seed(args.seed)
    model = build_model(arch, encoder=args.encoder, **overrides).to(device)
    dataset = TripletDataset(clips, synth, crop=args.crop, length=args.steps * args.batch, seed=args.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True, drop_last=True)
    cfg = TrainConfig(steps=args.steps, lr=args.lr, warmup_steps=max(args.steps // 10, 1), seed=args.seed,
                      checkpoint_every=max(args.steps, 1), batch_size=args.batch)
    t0 = time.perf_counter()
    result = train(model, loader, cfg, device)
    train_s = time.perf_counter() - t0
    ecfg = EvalConfig(seed=args.seed, triplets_per_sequence=args.eval_frames)
    report = evaluate_sequences(model, held, synth, ecfg, device).to_dict()
    return {
        "arch": arch, "overrides": overrides, "params": sum(p.numel() for p in model.parameters()),
        "train_seconds": train_s, "final_loss": result.final_loss,
        "precision": report["overall"]["precision"], "recall": report["overall"]["recall"],
        "f1": report["overall"]["f1"], "ms_per_frame": 1000 * report["seconds_per_frame"],
        "scene_fp_rate": report["scene_trap"]["fp_rate"], "scene_blob_fp_rate": report["scene_trap"]["blob_fp_rate"],
    }


def markdown(rows: dict[str, dict], args: argparse.Namespace, held: str) -> str:
    lines = [
        f"Scale: {args.steps} steps, batch {args.batch}, {args.crop}x{args.crop} crops, encoder `{args.encoder}`, "
        f"lr {args.lr}, seed {args.seed}, `{args.synth}` generator, {args.threads} CPU thread(s); evaluated on up to "
        f"{args.eval_frames} held-out frames per sequence ({held}, centre {args.eval_crop or 'full'} px) with the "
        "same seeded defects.",
        "",
        "| network | arch | params | precision | recall | F1 | CPU ms/frame | scene-blob FP rate (pixels / blobs) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | `{r['arch']}` | {r['params'] / 1e6:.2f} M | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['f1']:.3f} | {r['ms_per_frame']:.0f} | {r['scene_fp_rate']:.3f} / {r['scene_blob_fp_rate']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder", default="tinynet_e")
    p.add_argument("--synth", choices=("paper", "full"), default="paper")
    p.add_argument("--eval-frames", type=int, default=6)
    p.add_argument("--eval-crop", type=int, default=256, help="centre crop of the held-out frames (0 = full)")
    p.add_argument("--rows", nargs="+", default=PAPER_ROWS, choices=list(ROWS),
                   help="default: the paper's five networks")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the raw results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    synth = SynthConfig.paper() if args.synth == "paper" else SynthConfig()
    train_spans, eval_spans = train_eval_split()
    clips = load_spans(train_spans, dtype=np.uint8)
    held = {k: centre_crop(v, args.eval_crop or None) for k, v in load_spans(eval_spans).items()}
    rows = {}
    for name in args.rows:
        rows[name] = run_row(*ROWS[name], args, clips, held, synth, device)
        print(json.dumps({name: rows[name]}), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "rows": rows}, f, indent=2)
    print(markdown(rows, args, ", ".join(held)))


if __name__ == "__main__":
    main()
