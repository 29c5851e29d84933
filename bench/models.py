"""Size and CPU speed of every network: `python bench/models.py` prints a markdown table.

Columns: parameters; GFLOPs of one 256x256 triplet (torch.utils.flop_counter.FlopCounterMode:
convolutions and matrix products, 2 FLOPs per multiply-add; the correlation counts only if its
implementation uses matrix products, as the blocked one does); CPU forward time (inference mode,
median of --repeats) for a batch of 8 at 256x256 and for one 1920x1080 frame. Everything is
measured in one run so rows compare; absolute times depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from correlnet.models import DEFAULT_ENCODERS, build_model

# (label, arch, encoder, overrides): every arch with its default encoder, then the lighter
# efficient-correlnet variants measured for the shipped default (>= 0.5 frame/s at 1080p).
ROWS = [
    ("correlnet (plain)", "correlnet", None, {}),
    ("efficient-correlnet b0, decoder (128,64,32,16,8)", "efficient-correlnet", None,
     {"decoder_channels": (128, 64, 32, 16, 8)}),
    ("efficient-correlnet b0 (default, decoder (64,32,16,8,8))", "efficient-correlnet", None, {}),
    ("efficient-correlnet b0, depth 4, decoder (64,32,16,8)", "efficient-correlnet", None,
     {"encoder_depth": 4, "decoder_channels": (64, 32, 16, 8)}),
    ("efficient-correlnet b0, stride2=2 (121 displacements)", "efficient-correlnet", None, {"stride2": 2}),
    ("efficient-trinet b0", "efficient-trinet", None, {}),
    ("efficient-unet b0", "efficient-unet", None, {}),
    ("unet (smp, tu-efficientnet_b0)", "unet", None, {}),
    ("deeplabv3plus (smp, tu-efficientnet_b0)", "deeplabv3plus", None, {}),
    ("nasfpn b0 (64 ch, 3 repeats)", "nasfpn", None, {}),
]


def time_forward(model, x: torch.Tensor, repeats: int, warm_up: bool = True) -> float:
    """Median wall time in ms of model(x), after one warm-up call if `warm_up`."""
    with torch.inference_mode():
        if warm_up:
            model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def matmul_gflops(n: int = 1024, repeats: int = 10) -> float:
    """Throughput of a float32 matmul now: shows how loaded the machine was during the run."""
    a = torch.rand(n, n)
    a @ a
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return repeats * 2 * n**3 / (time.perf_counter() - t0) / 1e9


def gflops(model, x: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return counter.get_total_flops() / 1e9


def measure(label: str, arch: str, encoder: str | None, overrides: dict, args) -> str:
    torch.manual_seed(0)
    model = build_model(arch, encoder, **overrides).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    small = torch.rand(1, 3, 256, 256)
    flops = gflops(model, small)
    ms_batch = time_forward(model, torch.rand(args.batch, 3, 256, 256), args.repeats)
    # A 1920x1080 frame pads to 1088x1920, ~32 times a 256x256 crop: estimate before running.
    estimate_s = ms_batch / args.batch * (1088 * 1920) / (256 * 256) / 1000
    if args.skip_1080p:
        hd = "not run (--skip-1080p)"
    elif estimate_s > args.max_seconds:
        hd = f"not run: estimated {estimate_s:,.0f} s > --max-seconds {args.max_seconds}"
    else:
        try:
            # The model is warm from the 256x256 runs; one 1080p run is enough at these durations.
            ms = time_forward(model, torch.rand(1, 3, 1080, 1920), args.repeats_1080p, warm_up=False)
            hd = f"{ms:,.0f} ms ({1000 / ms:.2f} frame/s)"
        except (RuntimeError, MemoryError) as exc:  # out of memory on a small machine: say so
            hd = f"failed: {type(exc).__name__}: {str(exc)[:60]}"
    enc = encoder or DEFAULT_ENCODERS[arch]
    return f"| {label} | {enc} | {params:.2f} | {flops:.1f} | {ms_batch:,.0f} | {hd} |"


def breakdown(arch: str, overrides: dict, height: int = 1080, width: int = 1920) -> str:
    """Wall time of each part of a branch model's forward on one frame, via the streaming API;
    the encoder blocks and decoder are timed by hooks, fusion = head - blocks - decoder."""
    from correlnet.models.padding import InputPadder

    model = build_model(arch, **overrides).eval()
    xp = InputPadder(height, width, model.size_multiple).pad(torch.rand(1, 3, height, width))
    times: dict[str, float] = {}
    for name, module in (("encoder blocks", model.body), ("decoder", model.decoder)):
        module.register_forward_pre_hook(lambda m, a: times.__setitem__("t0", time.perf_counter()))
        module.register_forward_hook(
            lambda m, a, o, name=name: times.__setitem__(name, time.perf_counter() - times.pop("t0")))
    with torch.inference_mode():
        t0 = time.perf_counter()
        feats = [model.stem_features(xp[:, k : k + 1]) for k in range(3)]
        t1 = time.perf_counter()
        corr_p, corr_n = (model.pair_correlation(feats[1], feats[k]) for k in (0, 2))
        t2 = time.perf_counter()
        model.head(feats[1], corr_p, corr_n)
        t3 = time.perf_counter()
    parts = {"stem x3": t1 - t0, "correlation x2": t2 - t1,
             "fusion": t3 - t2 - times["encoder blocks"] - times["decoder"],
             "encoder blocks": times["encoder blocks"], "decoder": times["decoder"]}
    total = t3 - t0
    return ", ".join(f"{k} {v:.1f} s ({100 * v / total:.0f}%)" for k, v in parts.items()) + f"; total {total:.1f} s"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", help="labels containing any of these words")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--repeats-1080p", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=900, help="skip a 1080p run estimated longer")
    p.add_argument("--skip-1080p", action="store_true")
    p.add_argument("--breakdown", action="store_true",
                   help="only time the parts of efficient-correlnet b0 on one 1920x1080 frame")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.breakdown:
        print(f"load indicator: {matmul_gflops():.0f} GFLOP/s on a 1024x1024 matmul")
        print("efficient-correlnet b0, one 1920x1080 frame:", breakdown("efficient-correlnet", {}))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"median of {args.repeats} (1080p: {args.repeats_1080p}); load indicator: "
          f"{matmul_gflops():.0f} GFLOP/s on a 1024x1024 matmul\n")
    print("| model | encoder | params (M) | GFLOPs 256x256 | ms, batch 8 at 256x256 | one 1920x1080 frame |")
    print("|---|---|---|---|---|---|")
    for label, arch, encoder, overrides in ROWS:
        if args.only and not any(w in label for w in args.only):
            continue
        print(measure(label, arch, encoder, overrides, args), flush=True)
    print(f"\nload indicator at the end: {matmul_gflops():.0f} GFLOP/s on a 1024x1024 matmul")


if __name__ == "__main__":
    main()
