"""Film detection at 1920x1080 on this machine: frames/s and distance from the FLOP-bound limit.

    .venv/bin/python bench/film_detect.py [--frames 3] [--threads 2] [--tile 2048 ...] [--profile]

Measures, in one run (so ratios are comparable under the same load):
- naive: each triplet predicted on its own with `predict_triplet_tiled` (3 stems, 2 correlations),
  on the model as loaded;
- streaming before: `detect_frames(..., prepare=False)` (1 stem and 1 correlation per frame, reused
  by neighbours) on the model as loaded;
- streaming: `detect_frames` as shipped, on a `prepare_for_inference` copy (batch norm folded,
  channels_last), so the speed-up of that preparation is measured under the same load;
- FLOPs per streamed frame: torch.utils.flop_counter on the stem and the head, plus the
  correlation's arithmetic counted by hand (it is not a matmul-shaped op);
- the machine's float32 matmul GFLOP/s on the same threads, hence the frames/s the model would
  reach if every FLOP ran at matmul speed.
- eager against accelerated (issue 17): the same frames streamed by `detect_frames` on a prepared
  model with runtime "eager" and with the accelerated runtime (--runtime, default: what auto picks,
  OpenVINO when installed), each after one warm-up pass over two frames (the head is converted once
  per process and compiled once per frame size: that one-off is reported as compile_s), and the
  largest difference of their probabilities.
With --json, the last line is a JSON object with the keys eager_fps, accelerated_fps, end_to_end_fps
(`detect_film` through a temporary store on --film N frames, default 6, after a warm-up on two frames),
max_abs_prob_diff, plus runtime, runtime_fps, sequential_gate_fps (the shipped path with the temporal
gate's flows computed after the network instead of on a thread beside it), compile_s, gflop_per_frame,
matmul_gflops and flop_bound_share (accelerated frames/s over the frames/s at matmul speed).
With --profile, the top operators of one streamed frame by self CPU time.
With --film N, also the whole `correlnet film detect` path on N frames: the frames written as 8-bit
PNGs, imported into a temporary SQLite store, then `studio.detection.detect_film` (PNG reads,
detection, prediction PNGs written atomically, one DB row per frame), timed from the call to its return.

Uses the shipped model when correlnet/weights/default.pt exists, else a randomly initialised
efficient-correlnet/efficientnet_b0 (same architecture and cost) and says so.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from correlnet.default_model import DefaultModelMissing, default_model_path
from correlnet.models import build_model
from correlnet.prediction import default_neighbours, detect_frames, predict_triplet_tiled
from correlnet.tiling import TilingConfig, make_grid

H, W = 1080, 1920


def film(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, H, W) float32: a panning smooth scene with grain, so neighbours differ slightly."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    out = []
    for k in range(n):
        f = 0.5 + 0.2 * np.sin((xx + 4 * k) / 97.0) * np.cos((yy + k) / 61.0) + 0.1 * np.sin((xx + yy) / 23.0)
        out.append(np.clip(f + 0.03 * rng.standard_normal((H, W)), 0, 1))
    return np.stack(out).astype(np.float32)


def load_default(path: str | None = None) -> tuple[torch.nn.Module, str]:
    from correlnet.checkpoint import load_model

    if path:
        return load_model(path), f"model {path}"
    try:
        return load_model(default_model_path()), f"shipped model {default_model_path().name}"
    except DefaultModelMissing:
        torch.manual_seed(0)
        model = build_model("efficient-correlnet", encoder="efficientnet_b0").eval()
        return model, "efficient-correlnet/efficientnet_b0 with RANDOM weights (no shipped checkpoint yet)"


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def flops_per_frame(model: torch.nn.Module, cfg: TilingConfig) -> tuple[float, float]:
    """(network FLOPs, correlation FLOPs) of one streamed frame: all its tiles' stem and head,
    plus one kernel-1 correlation (2*C*D^2 per position) and two patch averages (k^2*D^2)."""
    from torch.utils.flop_counter import FlopCounterMode

    m = model.size_multiple
    grid = make_grid((H + m - 1) // m * m, (W + m - 1) // m * m, cfg, m)
    tile = torch.rand(1, 1, grid.tile_h, grid.tile_w)
    c = model.corr
    D = 2 * (c.max_displacement // c.stride2) + 1
    skip = tile.expand(1, 3, -1, -1) if model.config.input_skip else None
    with torch.inference_mode():
        feats = model.stem_features(tile)
        corr = torch.zeros(1, D * D, *feats.shape[-2:])
        with FlopCounterMode(display=False) as counter:
            model.stem_features(tile)
            model.head(feats, corr, corr, skip)
    positions = feats.shape[-2] * feats.shape[-1]
    corr_flops = positions * D * D * (2 * feats.shape[1] + 2 * c.kernel_size**2)
    return counter.get_total_flops() * len(grid), corr_flops * len(grid)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def time_film_detect(frames: np.ndarray, model_path: str | None, warm: bool = False) -> float:
    """Seconds per frame of `studio.detection.detect_film` on `frames` imported into a temporary store.
    warm: first predict two frames (conversion and compilation of an accelerated runtime happen
    once per process; the timed call then runs as on every film after the first)."""
    import tempfile
    from pathlib import Path

    import cv2

    from db.testing import temporary_store
    from studio.detection import detect_film
    from studio.versions import register_model_version
    from studio.films import import_film

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "frames"
        src.mkdir()
        for i, f in enumerate(frames):
            cv2.imwrite(str(src / f"frame_{i:04d}.png"), np.rint(f * 255).astype(np.uint8))
        with temporary_store(Path(tmp) / "store") as store:
            film = import_film(store, src, name="bench")
            version = register_model_version(store, model_path or default_model_path())
            if warm:
                detect_film(store, film, version, device="cpu", frame_indices=[0, 1])
                frames = frames[2:]
            t = time.perf_counter()
            result = detect_film(store, film, version, device="cpu")
            seconds = time.perf_counter() - t
    assert result.predicted == len(frames), result
    return seconds / len(frames)


def _stream_fps(model, frames: np.ndarray, cfg: TilingConfig, device, runtime: str, overlap_gate: bool = True
                ) -> tuple[float, float, np.ndarray, str]:
    """(frames/s, warm-up seconds, probs (n, H, W), runtime used) of `detect_frames` on a prepared model,
    timed after a warm-up pass over two frames."""
    from correlnet.inference import prepare_for_inference

    prepared = prepare_for_inference(model, device, runtime)

    def stream(nb):
        return detect_frames(prepared, lambda i: frames[i], nb, cfg, device, overlap_gate=overlap_gate)

    warm = timed(lambda: list(stream(default_neighbours(2))))
    result: list[np.ndarray] = []
    t = timed(lambda: result.extend(p for _, p in stream(default_neighbours(len(frames)))))
    return len(frames) / t, warm, np.stack(result), getattr(prepared, "runtime_used", runtime)


def compare_runtimes(model, frames: np.ndarray, cfg: TilingConfig, device, runtime: str | None) -> dict:
    """eager as before issue 17 against the shipped path, and every runtime, on the same frames.

    eager_fps: eager PyTorch with glibc's default memory behaviour (CORRELNET_KEEP_MEMORY=0) and the
    gate's flows computed after the network (`overlap_gate=False`), as before issue 17;
    runtime_fps[name]: each installed runtime with freed memory kept (`keep_freed_memory`);
    accelerated_fps: the one `resolve_runtime` picks (or --runtime), memory kept: the shipped default."""
    import os

    from correlnet.runtime import MEMORY_ENV_VAR, available, keep_freed_memory, release_freed_memory, resolve_runtime

    os.environ[MEMORY_ENV_VAR] = "0"
    release_freed_memory()
    eager_fps, _, reference, _ = _stream_fps(model, frames, cfg, device, "eager", overlap_gate=False)
    os.environ[MEMORY_ENV_VAR] = "1"
    keep_freed_memory()
    chosen = resolve_runtime(device, runtime)
    out: dict = {"eager_fps": eager_fps, "runtime": chosen, "runtime_fps": {}, "compile_s": 0.0, "max_abs_prob_diff": 0.0}
    # The same shipped path with the gate after the network: what the overlap alone gives.
    out["sequential_gate_fps"] = _stream_fps(model, frames, cfg, device, chosen, overlap_gate=False)[0]
    for name in ("eager", "openvino", "onnxruntime"):
        if not available(name):
            continue
        fps, warm, probs, used = _stream_fps(model, frames, cfg, device, name)
        out["runtime_fps"][name] = fps
        out["max_abs_prob_diff"] = max(out["max_abs_prob_diff"], float(np.abs(probs - reference).max()))
        if name == chosen:
            out["accelerated_fps"], out["runtime"] = fps, used
            # The warm-up's time over two streamed frames: conversion and compilation, once per process.
            out["compile_s"] = max(0.0, warm - 2 / fps)
    return out


def profile_one_frame(model, frames, cfg, device) -> str:
    from torch.profiler import ProfilerActivity, profile

    nb = default_neighbours(len(frames))
    it = detect_frames(model, lambda i: frames[i], nb, cfg, device)
    next(it)  # frame 0 computes its pair with frame 1 and both stems: profile frame 1, the steady state
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        next(it)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tile", type=int, nargs="+", default=[TilingConfig().tile])
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--film", type=int, default=0, metavar="N",
                    help="also time `detect_film` end to end on N frames (PNG import, prediction PNGs, DB rows)")
    ap.add_argument("--model", default=None, metavar="CKPT", help="checkpoint to time (default: the shipped model)")
    ap.add_argument("--runtime", default=None, help="accelerated runtime to compare with eager (default: auto's choice)")
    ap.add_argument("--json", action="store_true", help="end with one JSON line (keys in the module docstring)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    # The table below measures the paths as they were before issue 17 (glibc's default memory
    # behaviour); --json's comparison switches the kept memory on for the shipped path.
    import os

    from correlnet.runtime import MEMORY_ENV_VAR

    os.environ.setdefault(MEMORY_ENV_VAR, "0")
    model, what = load_default(args.model)
    frames = film(args.frames, np.random.default_rng(0))
    nb = default_neighbours(args.frames)
    gflops_machine = matmul_gflops()
    print(f"model: {what}; {args.threads} threads; {args.frames} frames of {W}x{H}")
    print(f"float32 matmul: {gflops_machine:.1f} GFLOP/s")
    rows = []
    for tile in args.tile:
        cfg = TilingConfig.for_tile(tile)
        n_tiles = len(make_grid((H + 31) // 32 * 32, (W + 31) // 32 * 32, cfg, model.size_multiple))
        net, corr = flops_per_frame(model, cfg)
        t_naive = timed(lambda: [predict_triplet_tiled(model, frames[[p, i, q]], cfg, device, prepare=False)
                                 for i, (p, q) in enumerate(nb)])
        t_before = timed(lambda: list(detect_frames(model, lambda i: frames[i], nb, cfg, device, prepare=False)))
        t_stream = timed(lambda: list(detect_frames(model, lambda i: frames[i], nb, cfg, device, runtime="eager")))
        bound = gflops_machine * 1e9 / (net + corr)
        rows.append((tile, n_tiles, args.frames / t_naive, args.frames / t_before, args.frames / t_stream,
                     (net + corr) / 1e9, corr / 1e9, bound))
        print(f"tile {tile}: {n_tiles} tiles, naive {t_naive / args.frames:.1f} s/frame, streaming before "
              f"{t_before / args.frames:.1f} s/frame, streaming prepared {t_stream / args.frames:.1f} s/frame, "
              f"{(net + corr) / 1e9:.1f} GFLOP/frame "
              f"({corr / 1e9:.1f} in the correlation)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB")
    print("\n| tile | tiles | naive frames/s | streaming frames/s before | streaming frames/s prepared | "
          "GFLOP/frame (corr.) | frames/s at matmul speed | achieved / bound |")
    print("|---|---|---|---|---|---|---|---|")
    for tile, n, fn, fb, fs, g, gc, b in rows:
        print(f"| {tile} | {n} | {fn:.3f} | {fb:.3f} | {fs:.3f} | {g:.1f} ({gc:.1f}) | {b:.2f} | {fs / b:.2f} |")
    summary = None
    if args.json:
        cfg = TilingConfig.for_tile(args.tile[0])
        summary = compare_runtimes(model, frames, cfg, device, args.runtime)
        net, corr = flops_per_frame(model, cfg)
        bound = gflops_machine * 1e9 / (net + corr)
        summary.update(gflop_per_frame=(net + corr) / 1e9, matmul_gflops=gflops_machine,
                       flop_bound_share=summary["accelerated_fps"] / bound, frames=args.frames)
        print(f"\neager as before: {summary['eager_fps']:.3f} frames/s; memory kept: "
              + ", ".join(f"{k} {v:.3f}" for k, v in summary["runtime_fps"].items())
              + f" frames/s (gate after the network: {summary['sequential_gate_fps']:.3f})"
              + f"; shipped path ({summary['runtime']}) {summary['accelerated_fps']:.3f} frames/s "
              f"({summary['accelerated_fps'] / summary['eager_fps']:.2f}x), compile {summary['compile_s']:.1f} s, "
              f"max |prob difference| {summary['max_abs_prob_diff']:.2e}")
        if not args.film:
            args.film = 6
        if args.runtime:  # the end-to-end path reads the runtime from the environment, as the CLI does
            os.environ["CORRELNET_RUNTIME"] = args.runtime
    if args.film:
        per_frame = time_film_detect(film(args.film + (2 if args.json else 0), np.random.default_rng(1)), args.model,
                                     warm=args.json)
        print(f"\nend to end (detect_film, {args.film} frames, default tiling): {per_frame:.2f} s/frame, "
              f"{1 / per_frame:.3f} frames/s")
        if summary is not None:
            summary["end_to_end_fps"] = 1 / per_frame
    if args.profile:
        cfg = TilingConfig.for_tile(args.tile[0])
        print(profile_one_frame(model, frames, cfg, device))
    if summary is not None:
        import json

        keys = ("eager_fps", "accelerated_fps", "end_to_end_fps", "max_abs_prob_diff", "runtime", "runtime_fps",
                "sequential_gate_fps", "compile_s", "gflop_per_frame", "matmul_gflops", "flop_bound_share", "frames")
        rounded = {k: round(v, 6) if isinstance(v, float) else v for k, v in ((k, summary[k]) for k in keys)}
        rounded["runtime_fps"] = {k: round(v, 4) for k, v in summary["runtime_fps"].items()}
        print(json.dumps(rounded))


if __name__ == "__main__":
    main()
