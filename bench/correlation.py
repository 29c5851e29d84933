"""Benchmark of the correlation layer: naive loop vs unfold vs correlnet's tiled GEMMs (forward + backward).

    .venv/bin/python bench/correlation.py            # B=4, C=64, H=W=128, d=10, kernel 1 and 3

Each (method, kernel) runs in its own subprocess so that its memory is measured alone. Time: for our
layer one untimed warm-up, then the median of --repeats forward+backward passes; the baselines run
--baseline-repeats times (default once; the naive loop's time moves a lot between passes, mostly
page faults of its multi-GB autograd buffers, so use 3 where a ratio is quoted as a target).
Speed-ups use CPU time (time.process_time: user + system, so page faults count), which a machine
shared with other jobs disturbs far less than wall time; wall time is printed too. Use --threads 1 on
a loaded machine: with more threads, OpenMP barriers wait for descheduled threads and the wall time
mostly measures the other jobs. Peak extra memory: the process's peak resident set (VmHWM in
/proc/self/status, reset through /proc/self/clear_refs just before the timed passes) minus its resident
set at that moment, when the inputs and the output gradient already exist. RSS counts every page
torch's CPU allocator touches, which tracemalloc cannot see.
The unfold baseline runs one sample at a time (gradients accumulate): batching it would need B times
its peak, (2d+1)^2 * C * H * W floats = 1.85 GB per sample at the default size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

METHODS = ("naive", "unfold", "ours", "ours+contiguous")


def _status_mb(key: str) -> float:
    text = open("/proc/self/status").read()
    return int(re.search(rf"{key}:\s+(\d+)", text).group(1)) / 1024


def _naive(a, b, d, k):
    """The per-displacement loop: (2d+1)^2 products of the whole maps."""
    import torch
    import torch.nn.functional as F

    B, C, H, W = a.shape
    bp = F.pad(b, (d, d, d, d))
    D = 2 * d + 1
    maps = [(a * bp[:, :, i : i + H, j : j + W]).sum(1, keepdim=True) for i in range(D) for j in range(D)]
    corr = torch.cat(maps, 1)
    if k > 1:
        corr = F.avg_pool2d(corr, k, stride=1, padding=k // 2, count_include_pad=True)
    return corr / C


def _unfold(a, b, d, k):
    """im2col of b over the (2d+1)^2 neighbourhood, then a channel dot product: (B, C*(2d+1)^2, H*W)."""
    import torch.nn.functional as F

    B, C, H, W = a.shape
    D = 2 * d + 1
    cols = F.unfold(b, D, padding=d).view(B, C, D * D, H * W)
    corr = (a.reshape(B, C, 1, H * W) * cols).sum(1).view(B, D * D, H, W)
    if k > 1:
        corr = F.avg_pool2d(corr, k, stride=1, padding=k // 2, count_include_pad=True)
    return corr / C


def _worker(args: argparse.Namespace) -> dict:
    import torch

    from correlnet.correlation import local_correlation

    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, args.channels, args.size, args.size)
    a = torch.randn(shape, generator=gen).requires_grad_(True)
    b = torch.randn(shape, generator=gen).requires_grad_(True)
    d, k = args.max_displacement, args.kernel

    def forward(x, y):
        if args.worker == "naive":
            return _naive(x, y, d, k)
        if args.worker == "unfold":
            return _unfold(x, y, d, k)
        if args.worker == "ours":
            return local_correlation(x, y, d, k)
        return local_correlation(x, y, d, k).contiguous()  # what an NCHW-only consumer would pay

    def step(grad):
        a.grad = b.grad = None
        if args.worker != "unfold":
            forward(a, b).backward(grad)
            return
        for i in range(args.batch):  # one sample at a time, see the module docstring
            _unfold(a[i : i + 1], b[i : i + 1], d, k).backward(grad[i : i + 1])

    with torch.no_grad():
        like = forward(a[:1], b[:1])  # the output's shape and memory format, cheaply
    # the output gradient in the output's memory format, as a consumer of that output would produce it
    channels_last = like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous()
    grad = torch.randn((args.batch, *like.shape[1:]), generator=gen)
    grad = grad.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    # the first backward with an explicit gradient imports sympy (seconds): keep that out of every timing
    torch.ones(1, requires_grad=True).mul(2).backward(torch.ones(1))
    if args.worker.startswith("ours"):
        step(grad)  # warm-up; the baselines take tens of seconds per pass, one call's set-up is noise there
    a.grad = b.grad = None
    open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM
    base = _status_mb("VmRSS")
    wall, cpu = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        step(grad)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"ms": 1000 * statistics.median(wall), "cpu_ms": 1000 * statistics.median(cpu),
            "peak_mb": _status_mb("VmHWM") - base}


def _run(method: str, kernel: int, args: argparse.Namespace) -> dict:
    repeats = args.repeats if method.startswith("ours") else args.baseline_repeats
    cmd = [sys.executable, __file__, "--worker", method, "--kernel", str(kernel), "--repeats", str(repeats),
           "--batch", str(args.batch), "--channels", str(args.channels), "--size", str(args.size),
           "--max-displacement", str(args.max_displacement), "--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"benchmark worker {method} (kernel {kernel}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=128, help="H = W")
    parser.add_argument("--max-displacement", type=int, default=10)
    parser.add_argument("--kernels", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of our layer (median)")
    parser.add_argument("--baseline-repeats", type=int, default=1,
                        help="timed passes of naive and unfold (median; each takes tens of seconds)")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--kernel", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args)))
        return

    import torch

    load = os.getloadavg()
    D = 2 * args.max_displacement + 1
    out_mb = args.batch * D * D * args.size * args.size * 4 / 2**20
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, {args.threads} threads, "
          f"load average before: {load[0]:.1f}; B={args.batch}, C={args.channels}, H=W={args.size}, "
          f"d={args.max_displacement}, float32; output {out_mb:.0f} MB\n")
    print("| kernel | method | fwd+bwd CPU ms | fwd+bwd wall ms | peak extra MB | speed-up vs naive (CPU) |")
    print("|---|---|---|---|---|---|")
    for kernel in args.kernels:
        results = {m: _run(m, kernel, args) for m in args.methods}
        naive_ms = results.get("naive", {}).get("cpu_ms")
        for method, res in results.items():
            ratio = f"{naive_ms / res['cpu_ms']:.1f}x" if naive_ms else "-"
            print(f"| {kernel} | {method} | {res['cpu_ms']:.0f} | {res['ms']:.0f} | {res['peak_mb']:.0f} | {ratio} |",
                  flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
