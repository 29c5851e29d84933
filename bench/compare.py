"""The paper's comparison (Table 1 / Table 2) reproduced at our scale.

Every network is trained with the same data (the demo clips' training part), the same defect
generator, steps, batch, crop, learning rate and seed, from random weights, then evaluated on the
same held-out frames (correlnet.data.HELD_OUT) with the same seeded defects. Reported: pixel
precision / recall / F1 (TP/FP/FN totals), parameters, CPU milliseconds per evaluated frame and
the false-positive rate on scene blobs (correlnet.scene_trap), the test the paper's argument
rests on: a single-frame or stacked-frame network cannot tell a scene blob from a blotch.
The classical motion-compensated SDI-p detector (correlnet.sdi, no training, its threshold chosen
on the clean-video validation clips) is always the first row: the peer every network must beat.

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

import dataclasses
from pathlib import Path

from correlnet.checkpoint import load_detector, save_checkpoint
from correlnet.data import TripletDataset, clean_video_spans, load_spans, train_eval_split
from correlnet.device import resolve_device
from correlnet.evaluate import EvalConfig, evaluate_sequences
from correlnet.models import build_model
from correlnet.real_eval import PART_NAMES, RealEvalConfig, load_data, run_parts
from correlnet.sdi import SPEC as SDI_SPEC
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
    # Session 13: the motion-compensated evidence (ModelConfig.motion_skip / motion_fusion), the shipped
    # model's input; the fusion exists only where there is a correlation to fuse it with.
    "Correl-Net, d=6 stride2=2, input skip, motion skip + fusion": (
        "efficient-correlnet", {"max_displacement": 6, "stride2": 2, "input_skip": True, "motion_skip": True,
                                "motion_fusion": True}),
    "Tri-Net, input skip, motion skip": ("efficient-trinet", {"input_skip": True, "motion_skip": True}),
    "stacked U-Net, input skip, motion skip": ("efficient-unet", {"input_skip": True, "motion_skip": True}),
}
SDI_ROW = "SDI-p (classical, motion-compensated)"
PAPER_ROWS = ["Correl-Net (efficient)", "Tri-Net (no correlation)", "stacked U-Net", "DeepLab v3+", "NAS-FPN"]


def centre_crop(clip: np.ndarray, size: int | None) -> np.ndarray:
    """(T, H, W) -> (T, min(H, size), min(W, size)) centre crop; None keeps the frame."""
    if size is None:
        return clip
    _, h, w = clip.shape
    y, x = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return np.ascontiguousarray(clip[:, y : y + size, x : x + size])


def run_row(arch: str, overrides: dict, args: argparse.Namespace, clips: dict, held: dict, synth: SynthConfig,
            device: torch.device, eval_synth: SynthConfig) -> dict:
    """Train `arch` on `clips` with `synth`, score it on `held` with `eval_synth`; the trained network
    comes back under "_model" (for the callers' further scores)."""
    torch.manual_seed(args.seed)
    model = build_model(arch, encoder=args.encoder, **overrides).to(device)
    dataset = TripletDataset(clips, synth, crop=args.crop, length=args.steps * args.batch, seed=args.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True, drop_last=True)
    cfg = TrainConfig(steps=args.steps, lr=args.lr, warmup_steps=max(args.steps // 10, 1), seed=args.seed,
                      checkpoint_every=max(args.steps, 1), batch_size=args.batch)
    t0 = time.perf_counter()
    result = train(model, loader, cfg, device)
    train_s = time.perf_counter() - t0
    model.eval()
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
        save_checkpoint(Path(args.save) / f"{arch}.pt", model, extra={"bench": "compare", "args": _plain_args(args)})
    row = {"arch": arch, "overrides": overrides, "params": sum(p.numel() for p in model.parameters()),
           "train_seconds": train_s, "final_loss": result.final_loss}
    return row | eval_row(model, args, held, eval_synth, device) | {"_model": model}


def _plain_args(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))}


def with_gate(model: torch.nn.Module, threshold: float) -> torch.nn.Module:
    """The same network with its temporal gate set (correlnet.temporal_gate; 0 = off)."""
    model.config = dataclasses.replace(model.config, temporal_gate=threshold)
    return model


def real_columns(model: torch.nn.Module, args: argparse.Namespace, data, device: torch.device) -> dict:
    """Parts (b)-(d) of correlnet.real_eval on `model`: moving objects, clean video, real film."""
    if not args.real_parts:
        return {}
    cfg = RealEvalConfig(seed=args.seed, trap_frames=args.eval_frames, clean_frames=args.eval_frames)
    out = run_parts(model, args.real_parts, data, cfg, device)
    res = {PART_NAMES[p]: r.to_dict() for p, r in out.items()}
    cols = {}
    if "moving_trap" in res and "share_flagged" in res["moving_trap"]:
        cols["moving_flagged"] = res["moving_trap"]["share_flagged"]
    if "clean_video" in res and "overall" in res["clean_video"]:
        cols["clean_flagged"] = res["clean_video"]["overall"]["share_flagged"]
    if "real_film" in res and "overall" in res["real_film"]:
        cols["film_flagged"] = res["real_film"]["overall"]["share_flagged"]
        cols["film_one_frame"] = res["real_film"]["overall"].get("one_frame_share")
    return cols


def eval_row(model: torch.nn.Module, args: argparse.Namespace, held: dict, synth: SynthConfig,
             device: torch.device) -> dict:
    """The table's scores of `model` on the held-out frames with the seeded defects."""
    ecfg = EvalConfig(seed=args.seed, triplets_per_sequence=args.eval_frames)
    report = evaluate_sequences(model, held, synth, ecfg, device).to_dict()
    return {
        "precision": report["overall"]["precision"], "recall": report["overall"]["recall"],
        "f1": report["overall"]["f1"], "ms_per_frame": 1000 * report["seconds_per_frame"],
        "scene_fp_rate": report["scene_trap"]["fp_rate"], "scene_blob_fp_rate": report["scene_trap"]["blob_fp_rate"],
    }


def sdi_row(args: argparse.Namespace, held: dict, synth: SynthConfig, device: torch.device) -> dict:
    """The classical peer (correlnet.sdi, threshold chosen on validation): nothing to train."""
    model = load_detector(SDI_SPEC, device)
    row = {"arch": SDI_SPEC, "overrides": {"threshold": model.cfg.threshold}, "params": 0,
           "train_seconds": 0.0, "final_loss": None}
    return row | eval_row(model, args, held, synth, device)


def _pct(r: dict, key: str) -> str:
    return f"{100 * r[key]:.2f} %" if r.get(key) is not None else "n/a"


def markdown(rows: dict[str, dict], args: argparse.Namespace, held: str) -> str:
    sources = "demo" + (" + clean-video" if args.clean_video else "")
    lines = [
        f"Scale: {args.steps} steps, batch {args.batch}, {args.crop}x{args.crop} crops, encoder `{args.encoder}`, "
        f"lr {args.lr}, seed {args.seed}, `{args.synth}` generator on {sources}, {args.threads} CPU thread(s); "
        f"evaluated on up to {args.eval_frames} held-out frames per sequence ({held}, centre "
        f"{args.eval_crop or 'full'} px) with the same seeded defects"
        + (f"; real-footage parts {' '.join(args.real_parts)} of correlnet.real_eval" if args.real_parts else "") + ".",
        "",
        "| network | arch | params | precision | recall | F1 | CPU ms/frame | scene-blob FP rate (pixels / blobs) "
        "| moving objects flagged | clean video flagged | real film flagged | one-frame share |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | `{r['arch']}` | {r['params'] / 1e6:.2f} M | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['f1']:.3f} | {r['ms_per_frame']:.0f} | {r['scene_fp_rate']:.3f} / {r['scene_blob_fp_rate']:.2f} | "
            f"{_pct(r, 'moving_flagged')} | {_pct(r, 'clean_flagged')} | {_pct(r, 'film_flagged')} | "
            f"{_pct(r, 'film_one_frame')} |"
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
    p.add_argument("--synth", choices=("paper", "full", "real"), default="paper",
                   help="training generator; the held-out scores always use the paper's (default paper)")
    p.add_argument("--clean-video", action="store_true",
                   help="also train on the clean-video training clips (correlnet.data.CLEAN_VIDEO_TRAIN)")
    p.add_argument("--real-parts", nargs="*", default=[], choices=["b", "c", "d"],
                   help="also score parts of correlnet.real_eval: b moving objects, c clean video, d real film")
    p.add_argument("--gate", type=float, default=0.0, metavar="T",
                   help="also score each network with its temporal gate at evidence T (a second row each)")
    p.add_argument("--save", default=None, metavar="DIR", help="save each trained network here (<arch>.pt)")
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
    synth = {"paper": SynthConfig.paper, "full": SynthConfig, "real": SynthConfig.real}[args.synth]()
    train_spans, eval_spans = train_eval_split()
    if args.clean_video:
        train_spans = train_spans + clean_video_spans("train")
    clips = load_spans(train_spans, dtype=np.uint8)
    held = {k: centre_crop(v, args.eval_crop or None) for k, v in load_spans(eval_spans).items()}
    # Held-out scores: the full generator's defects for --synth full (as before), else the paper's.
    paper = SynthConfig() if args.synth == "full" else SynthConfig.paper()
    real_data = load_data(args.real_parts, RealEvalConfig(seed=args.seed)) if args.real_parts else None
    rows: dict[str, dict] = {}
    for name in [SDI_ROW, *args.rows]:  # the classical peer beside every network
        if name == SDI_ROW:
            rows[name] = sdi_row(args, held, paper, device)
            model = load_detector(SDI_SPEC, device)
        else:
            rows[name] = run_row(*ROWS[name], args, clips, held, synth, device, paper)
            model = rows[name].pop("_model")
        rows[name] |= real_columns(model, args, real_data, device)
        print(json.dumps({name: rows[name]}), flush=True)
        if args.gate and name != SDI_ROW:
            gated = f"{name} + temporal gate {args.gate}"
            with_gate(model, args.gate)
            rows[gated] = {k: rows[name][k] for k in ("arch", "overrides", "params", "train_seconds", "final_loss")}
            rows[gated] |= eval_row(model, args, held, paper, device) | real_columns(model, args, real_data, device)
            print(json.dumps({gated: rows[gated]}), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "rows": rows}, f, indent=2)
    print(markdown(rows, args, ", ".join(held)))


if __name__ == "__main__":
    main()
