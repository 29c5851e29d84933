"""Speed of the synthetic defect generator vs one training step: `python bench/synth.py`.

Prints a markdown table: triplets per second of `degrade_triplet` at 256x256 for the paper's
generator, the full generator and each family alone, and of `TripletDataset[i]` on the demo
clips (crop + flips + full generator); then the time of one training step (forward, backward,
Adam) of efficient-correlnet (efficientnet_b0) on a batch, and the share of a step the data of
one batch would take without DataLoader workers. Single-threaded (numpy, OpenCV and torch set to
1 thread) so the rows compare; absolute times depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch start their thread pools

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from correlnet.synth.noise import fractal_perlin  # noqa: E402
from correlnet.synth import SynthConfig, degrade_triplet  # noqa: E402


def clean_triplet(size: int) -> np.ndarray:
    """A smooth scene shifted by 2 px per frame, (3, size, size) float32 in [0, 1]."""
    field = fractal_perlin((size, size + 4), res=(4, 4), octaves=3, rng=np.random.default_rng(0))
    scene = 0.5 + 0.4 * field
    return np.stack([scene[:, 2 * t : 2 * t + size] for t in range(3)]).astype(np.float32)


def interleaved_rates(fns: list, n: int, rounds: int) -> list[float]:
    """Calls per second of each fn(i): `rounds` round-robin passes of n // rounds calls each, the
    median over rounds, so a change of machine load during the run hits every row alike."""
    per_round = max(n // rounds, 1)
    rates: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        fn(0)  # warm-up
    for r in range(rounds):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            for i in range(per_round):
                fn(1 + r * per_round + i)
            rates[k].append(per_round / (time.perf_counter() - start))
    return [statistics.median(r) for r in rates]


def generator_rows(size: int, n: int, rounds: int) -> list[tuple[str, float]]:
    clean = clean_triplet(size)
    configs = [("paper (Sec. 4.1)", SynthConfig.paper()), ("full (default)", SynthConfig())]
    full = SynthConfig()
    for family in ("blotches", "dust", "hairs", "scratches", "grain", "flicker", "blur"):
        configs.append((f"{family} only", full.only(**{family: True})))
    fns = [lambda i, c=cfg: degrade_triplet(clean, c, np.random.default_rng(i)) for _, cfg in configs]
    labels = [label for label, _ in configs]
    dataset = demo_dataset(size, n)
    if dataset is not None:
        labels.append("TripletDataset[i], demo clips, full")
        fns.append(lambda i: dataset[i])
    return list(zip(labels, interleaved_rates(fns, n, rounds)))


def demo_dataset(size: int, n: int):
    try:
        from correlnet.data import TripletDataset, load_spans, train_eval_split

        train, _ = train_eval_split()
    except FileNotFoundError:
        return None
    clips = load_spans(train, max_frames=40, dtype=np.uint8)
    return TripletDataset(clips, SynthConfig(), crop=size, length=n + 1, seed=0)


def train_step_seconds(size: int, batch: int, steps: int) -> float | None:
    """Median seconds of one Adam step of efficient-correlnet b0, or None if models are missing."""
    import torch

    try:
        from correlnet.losses import soft_dice_loss
        from correlnet.models import build_model
    except ImportError:
        return None
    torch.manual_seed(0)
    model = build_model("efficient-correlnet")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size)
    target = (torch.rand(batch, 1, size, size) > 0.97).float()
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = soft_dice_loss(model(x), target)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # the first step warms up allocators


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--n", type=int, default=60, help="triplets per row")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="round-robin passes over the rows")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps (median)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    import torch

    torch.set_num_threads(1)
    rows = generator_rows(args.size, args.n, args.rounds)
    step = train_step_seconds(args.size, args.batch, args.steps)
    print(f"{args.size}x{args.size}, 1 thread, {args.n} triplets per row, {args.rounds} interleaved rounds\n")
    print("| generator | triplets/s | ms/triplet | one batch of %d, %% of a training step |" % args.batch)
    print("|---|---:|---:|---:|")
    for label, per_s in rows:
        share = f"{100 * args.batch / per_s / step:.0f} %" if step else "n/a"
        print(f"| {label} | {per_s:.1f} | {1000 / per_s:.1f} | {share} |")
    if step:
        print(f"\nTraining step (efficient-correlnet b0, batch {args.batch}, forward+backward+Adam): "
              f"{step:.2f} s (median of {args.steps}).")


if __name__ == "__main__":
    main()
