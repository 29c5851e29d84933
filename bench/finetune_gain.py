"""Fine-tuning gain (issues 6 and 13): does learning a film from a few corrected frames help?

Scenario 1, new defect kinds. Footage the start model never saw (The Great Train Robbery, 1903,
48 frames at 480x368, from ../shared/data/real_film) is degraded with defects the pre-training
generator does not make (ring-shaped blotches, textured stains, bright fibre loops; `novel_defects`
below). The ground
truth plays the restorer: it corrects K frames chosen by our active learning
(studio.active.next_frames_to_review) and, separately, at random. Each case fine-tunes through
the real worker code path (store + queued job + run_worker) and we report pixel F1 on the frames
nobody corrected, with the start model's and the new active model's stored predictions.
Caveat: the footage also has real dust and blotches that are not in the ground truth; they count
as false positives for every model alike.

Scenario 2, false-positive rejection (issue 13): a clean-video validation clip with real motion
(`FP_CLIP`, ../shared/data/clean_video, no defects of its own, so the ground truth is exact) with
the paper's synthetic blotches added; whatever the start model flags beyond them is scene taken for a
defect. The ground truth corrects K frames chosen by active learning, which erases those false
positives and adds the misses; reported: false-positive pixels and recall on the uncorrected frames
(`fp_pixels_before`, `fp_pixels_after`, `recall_before`, `recall_after`), and the false-positive
pixels split by where they lie: on a true defect's outline (within OUTLINE_PX of it: the mark a
little wider than the blotch, `fp_outline_pixels_*`) or on the scene (farther: scene structure taken
for a defect, `fp_scene_pixels_*`). Skipped (None) when the clip is absent; `--fp-ks` with no value
skips it.

Start model: the shipped default (correlnet.default_model) when present, else --start-model, else
a fallback pre-trained here for --fallback-steps on the demo clips (cached under runs/).

Timing: one fine-tune + re-predict cycle at 1920x1080 (20 corrected frames, --timing-frames
uncorrected ones, extrapolated linearly to 100 when fewer; the output says so).

    .venv/bin/python bench/finetune_gain.py [--json] [--dry-run]
The last line of output is a JSON object (f1_before, f1_after, f1_after_random, fp_pixels_before, ...).
--dry-run: 12 frames, K = 5, two fine-tuning steps, no timing: every code path in a minute or two.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from correlnet import DEFECT_THRESHOLD  # noqa: E402
from db.models import Frame, Prediction, TrainingJob  # noqa: E402
from db.store import Store  # noqa: E402
from studio import jobs  # noqa: E402
from studio.settings import Settings  # noqa: E402

FOOTAGE = ROOT.parent / "shared" / "data" / "real_film" / "the_great_train_robbery"
FP_CLIP = "sam2_bedroom"  # one of correlnet.data.CLEAN_VIDEO_VALIDATION: a room, hand-held drift
FP_MAX_WIDTH = 480  # the scale of the film scans, and CPU time
WORK = ROOT / "runs" / "finetune_gain"  # --work overrides it


# ---- defects the pre-training generator does not make ------------------------------------------

def _ring(shape, rng):
    h, w = shape
    r = rng.uniform(5, 16)
    thick = rng.uniform(1.5, 3.5)
    cy, cx = rng.uniform(r + 2, h - r - 2), rng.uniform(r + 2, w - r - 2)
    yy, xx = np.mgrid[:h, :w]
    d = np.hypot(yy - cy, xx - cx)
    alpha = np.clip(1.0 - np.abs(d - r) / thick, 0, 1) * rng.uniform(0.7, 0.95)
    return alpha, (rng.uniform(0.0, 0.12) if rng.random() < 0.5 else rng.uniform(0.88, 1.0))


def _stain(shape, rng):
    h, w = shape
    ry, rx = rng.uniform(6, 18, size=2)
    cy, cx = rng.uniform(ry + 2, h - ry - 2), rng.uniform(rx + 2, w - rx - 2)
    yy, xx = np.mgrid[:h, :w]
    theta = rng.uniform(0, np.pi)
    u = (yy - cy) * np.cos(theta) + (xx - cx) * np.sin(theta)
    v = -(yy - cy) * np.sin(theta) + (xx - cx) * np.cos(theta)
    blob = np.clip((1.0 - (u / ry) ** 2 - (v / rx) ** 2) * 3, 0, 1)
    stripes = 0.5 + 0.5 * np.sin(u * rng.uniform(0.8, 1.6) + rng.uniform(0, 6.3))
    colour = rng.uniform(0.05, 0.3) + 0.6 * stripes  # a striped, mid-grey stain
    return blob * rng.uniform(0.75, 0.95), colour


def _loop(shape, rng):
    h, w = shape
    r = rng.uniform(8, 24)
    cy, cx = rng.uniform(r + 4, h - r - 4), rng.uniform(r + 4, w - r - 4)
    t = np.linspace(0, 2 * np.pi, 200)
    wobble = 1 + 0.25 * np.sin(2 * t + rng.uniform(0, 6.3)) + 0.1 * np.sin(3 * t + rng.uniform(0, 6.3))
    pts = np.stack([cx + r * wobble * np.cos(t) * rng.uniform(0.6, 1.4), cy + r * wobble * np.sin(t)], 1)
    canvas = np.zeros(shape, np.uint8)
    cv2.polylines(canvas, [np.round(pts).astype(np.int32)], True, 255, thickness=int(rng.integers(1, 3)),
                  lineType=cv2.LINE_AA)
    return canvas.astype(np.float32) / 255.0 * rng.uniform(0.8, 1.0), rng.uniform(0.92, 1.0)


def novel_defects(frame: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """frame (H, W) float32 in [0, 1] -> (degraded (H, W), mask (H, W) bool). Per frame, independent
    (a temporal impulse, as real dirt): 2-4 rings, 1-3 textured stains, 1-2 fibre loops. `scale`
    enlarges them for 1080p frames. Mask = pixels moved by >= 0.05 (13/255), as the synth generator."""
    out = frame.copy()
    small = (int(frame.shape[0] / scale), int(frame.shape[1] / scale))
    for make, count in ((_ring, rng.integers(2, 5)), (_stain, rng.integers(1, 4)), (_loop, rng.integers(1, 3))):
        for _ in range(int(count)):
            alpha, colour = make(small, rng)
            if scale != 1.0:
                alpha = cv2.resize(alpha, frame.shape[::-1], interpolation=cv2.INTER_LINEAR)
                if np.ndim(colour):
                    colour = cv2.resize(colour.astype(np.float32), frame.shape[::-1])
            out = out + alpha * (colour - out)
    out = np.clip(out, 0, 1).astype(np.float32)
    return out, np.abs(out - frame) >= 0.05


def write_film(frames: np.ndarray, folder: Path, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Degrade (T, H, W) frames into folder/00001.png...; returns the (T, H, W) bool ground truth."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = []
    for i, clean in enumerate(frames):
        degraded, mask = novel_defects(clean, rng, scale)
        cv2.imwrite(str(folder / f"{i + 1:05d}.png"), np.round(degraded * 255).astype(np.uint8))
        truth.append(mask)
    return np.stack(truth)


def write_fp_film(folder: Path, max_frames: int, seed: int) -> np.ndarray | None:
    """Scenario 2's film: FP_CLIP at FP_MAX_WIDTH with the paper's blotches (frame t is the middle
    frame of its degraded triplet); returns the (T, H, W) bool ground truth, None without the clip."""
    from correlnet.data import load_clip, shared_data_dir
    from correlnet.synth import SynthConfig, degrade_triplet

    path = shared_data_dir() / "clean_video" / FP_CLIP
    if not path.exists():
        return None
    clip = load_clip(path, max_frames=max_frames, max_width=FP_MAX_WIDTH)
    rng = np.random.default_rng(seed)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    truth = []
    for t in range(len(clip)):
        triplet = clip[[max(t - 1, 0), t, min(t + 1, len(clip) - 1)]]
        degraded, masks = degrade_triplet(triplet, SynthConfig.paper(), rng)
        cv2.imwrite(str(folder / f"{t + 1:05d}.png"), np.round(degraded[1] * 255).astype(np.uint8))
        truth.append(masks[1])
    return np.stack(truth)


def fp_scenario(model: Path, ks: list[int], frames: int, ft_cfg, seed: int, say) -> dict | None:
    """Scenario 2 (module docstring): one active-learning case per K; None when the clip is absent."""
    truth = write_fp_film(WORK / "fp_frames", frames, seed)
    if truth is None or not ks:
        return None
    base, film_id, start_version = prepare_base(WORK / "fp_frames", model, "cpu", tag="fp_", name="fp_clean_video")
    cases = []
    for k in ks:
        case = run_case(base, film_id, start_version, truth, "active", k, model, "cpu", ft_cfg, seed, tag="fp_")
        say(f"false positives, active K={k:<3} FP px {case['fp_before']} -> {case['fp_after']} (scene "
            f"{case['fp_scene_before']} -> {case['fp_scene_after']}, outline {case['fp_outline_before']} -> "
            f"{case['fp_outline_after']}), recall "
            f"{case['recall_before']:.3f} -> {case['recall_after']:.3f} ({case['job_status']}): {case['job_message']}")
        cases.append(case)
    return {"footage": f"{FP_CLIP} ({len(truth)} frames at width {FP_MAX_WIDTH}, paper blotches)", "cases": cases}


def fp_keys(scenario: dict | None) -> dict:
    """The issue-13 keys from the active K = 10 case (else the first K run), and the scenario itself."""
    cases = (scenario or {}).get("cases") or []
    case = next((c for c in cases if c["k"] == 10), cases[0] if cases else None)
    keys = {"fp_pixels_before": "fp_before", "fp_pixels_after": "fp_after", "recall_before": "recall_before",
            "recall_after": "recall_after", "fp_outline_pixels_before": "fp_outline_before",
            "fp_outline_pixels_after": "fp_outline_after", "fp_scene_pixels_before": "fp_scene_before",
            "fp_scene_pixels_after": "fp_scene_after"}
    out = {key: case[field] if case else None for key, field in keys.items()}
    return {**out, "fp_k": case["k"] if case else None, "fp_scenario": scenario}


def load_footage(max_frames: int) -> np.ndarray:
    files = sorted(FOOTAGE.glob("*.png"))[:max_frames]
    if len(files) < 8:
        sys.exit(f"need the real footage at {FOOTAGE} (see its README): found {len(files)} frames")
    return np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255 for f in files])


# ---- start model --------------------------------------------------------------------------------

def start_model(args: argparse.Namespace) -> tuple[Path, str]:
    from correlnet.default_model import DefaultModelMissing, default_model_path

    if args.start_model:
        return Path(args.start_model), "given --start-model"
    try:
        return default_model_path(), "shipped default model"
    except DefaultModelMissing:
        pass
    path = ROOT / "runs" / "finetune_gain" / f"fallback_start_{args.fallback_steps}.pt"  # cached across runs
    if not path.exists():
        quick_pretrain(path, args.fallback_steps)
    return path, (f"fallback: a small efficient-correlnet ({FALLBACK_ENCODER}) pre-trained here on synthetic "
                  f"defects for {args.fallback_steps} steps")


FALLBACK_ENCODER = "test_efficientnet"  # timm's tiny EfficientNet: trains in minutes on a shared CPU


def quick_pretrain(path: Path, steps: int) -> None:
    """The fallback start model: the full synthetic generator on the demo clips' training spans."""
    import torch
    from torch.utils.data import DataLoader

    from correlnet.checkpoint import save_checkpoint
    from correlnet.data import TripletDataset, load_spans, train_eval_split
    from correlnet.models import build_model
    from correlnet.synth import SynthConfig
    from correlnet.job_context import CallbackJob
    from correlnet.train import TrainConfig, train

    torch.manual_seed(0)
    clips = load_spans(train_eval_split()[0], max_frames=40)
    loader = DataLoader(TripletDataset(clips, SynthConfig(), crop=96, length=steps * 8, seed=0), batch_size=8)
    model = build_model("efficient-correlnet", FALLBACK_ENCODER, max_displacement=4, decoder_channels=(32, 16, 16, 8, 8))
    def show(done: int, loss: float, **_) -> None:
        if done % 20 == 0:
            print(f"  fallback step {done}: loss {loss:.3f}", flush=True)

    train(model, loader, TrainConfig(steps=steps, lr=3e-3, warmup_steps=10, checkpoint_every=steps),
          torch.device("cpu"), job=CallbackJob(show))
    save_checkpoint(path, model, metrics={"steps": steps}, train_config={"note": "bench/finetune_gain fallback"})


# ---- one case through the real store / job / worker -----------------------------------------------

def open_store(data_dir: Path, model: Path) -> tuple[Store, Settings]:
    settings = Settings(data_dir=data_dir, device="cpu", default_model=model, retrain_after=0)
    return Store.open(settings), settings


def predictions(store: Store, film_id: int, version_id: int) -> dict[int, np.ndarray]:
    from studio.detection import load_prediction

    with store.session() as s:
        rows = s.execute(select(Frame.index, Prediction).join(Prediction, Prediction.frame_id == Frame.id)
                         .where(Frame.film_id == film_id, Prediction.model_version_id == version_id)).all()
    return {idx: load_prediction(store, p) >= DEFECT_THRESHOLD for idx, p in rows}


OUTLINE_PX = 3  # a false-positive pixel this close to a true defect is its outline, not scene


def fp_split(preds: dict[int, np.ndarray], truth: np.ndarray, indices: list[int]) -> tuple[int, int]:
    """(outline, scene) false-positive pixels over `indices`: within OUTLINE_PX (chessboard distance)
    of a true defect pixel, and farther."""
    size = 2 * OUTLINE_PX + 1
    outline = scene = 0
    for i in indices:
        fp = preds[i] & ~truth[i]
        near = cv2.dilate(truth[i].astype(np.uint8), np.ones((size, size), np.uint8)) > 0
        outline += int((fp & near).sum())
        scene += int((fp & ~near).sum())
    return outline, scene


def counts_on(preds: dict[int, np.ndarray], truth: np.ndarray, indices: list[int]):
    """PixelCounts summed over `indices`."""
    from correlnet.metrics import PixelCounts, count_pixels

    total = PixelCounts()
    for i in indices:
        total = total + count_pixels(preds[i], truth[i])
    return total


def prepare_base(frames_dir: Path, model: Path, device: str, tag: str = "",
                 name: str = "great_train_robbery_novel") -> tuple[Path, int, int]:
    """Import the degraded film and predict it with the start model (a `predict` job)."""
    from studio.films import import_film
    from studio.worker import run_worker

    data = WORK / f"{tag}base"
    shutil.rmtree(data, ignore_errors=True)
    store, settings = open_store(data, model)
    film = import_film(store, frames_dir, name=name)
    jobs.queue_prediction(store, film.id)
    run_worker(store, settings, once=True, device=device)
    from studio.versions import active_model_version

    start_version = active_model_version(store, film, model).id
    store.close()
    from studio.versions import activate_model_version

    store, _ = open_store(data, model)
    activate_model_version(store, film.id, start_version)  # pinned: a newer shipped file changes nothing
    store.close()
    return data, film.id, start_version


def run_case(base: Path, film_id: int, start_version: int, truth: np.ndarray, strategy: str, k: int,
             model: Path, device: str, ft_cfg, seed: int, tag: str = "") -> dict:
    from studio.active import next_frames_to_review
    from studio.corrections import save_correction
    from studio.films import film_frames, get_film
    from studio.worker import WorkerConfig, run_worker

    data = WORK / f"{tag}case_{strategy}_{k}"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(base, data)
    store, settings = open_store(data, model)
    film = get_film(store, film_id)
    frames = film_frames(store, film)
    if strategy == "active":
        chosen = [f.index for f in next_frames_to_review(store, film, k, session_id="ground-truth")]
    else:
        chosen = sorted(np.random.default_rng(seed).choice(len(frames), size=k, replace=False).tolist())
    for i in chosen:
        save_correction(store, frames[i].id, truth[i], author="ground-truth")
    job = jobs.queue_training(store, film.id)
    t0 = time.perf_counter()
    run_worker(store, settings, once=True, device=device, config=WorkerConfig(finetune=ft_cfg))
    seconds = time.perf_counter() - t0
    row = jobs.get_job(store, job.id)
    others = [i for i in range(len(frames)) if i not in set(chosen)]
    start_preds = predictions(store, film.id, start_version)
    active_id = get_film(store, film.id).active_model_version_id or start_version
    new_preds = predictions(store, film.id, active_id)
    store.close()
    before, after = counts_on(start_preds, truth, others), counts_on(new_preds, truth, others)
    split_before, split_after = fp_split(start_preds, truth, others), fp_split(new_preds, truth, others)
    return {"strategy": strategy, "k": k, "frames": chosen, "f1_before": before.f1, "f1_after": after.f1,
            "fp_before": before.fp, "fp_after": after.fp, "recall_before": before.recall,
            "recall_after": after.recall, "fp_outline_before": split_before[0], "fp_outline_after": split_after[0],
            "fp_scene_before": split_before[1], "fp_scene_after": split_after[1],
            "published": row.result_model_version_id is not None, "job_status": row.status,
            "job_message": row.message, "seconds": round(seconds, 1)}


def timing_cycle(clean: np.ndarray, model: Path, uncorrected: int, device: str, ft_cfg) -> dict:
    """One fine-tune + re-predict cycle at 1920x1080: 20 corrected frames + `uncorrected` others."""
    from studio.corrections import save_correction
    from studio.films import film_frames, import_film
    from studio.worker import WorkerConfig, run_worker

    n = 20 + uncorrected
    big = np.stack([cv2.resize(clean[i % len(clean)], (1920, 1080), interpolation=cv2.INTER_CUBIC)
                    for i in range(n)]).clip(0, 1)
    folder = WORK / "timing_frames"
    shutil.rmtree(folder, ignore_errors=True)
    truth = write_film(big, folder, np.random.default_rng(7), scale=1920 / 480)
    data = WORK / "timing_store"
    shutil.rmtree(data, ignore_errors=True)
    store, settings = open_store(data, model)
    film = import_film(store, folder, name="timing_1080p")
    frames = film_frames(store, film)
    for i in range(0, n, max(1, n // 20))[:20]:
        save_correction(store, frames[i].id, truth[i], author="ground-truth")
    job = jobs.queue_training(store, film.id, force=True)  # force: time the re-predict phase too
    t0 = time.perf_counter()
    run_worker(store, settings, once=True, device=device, config=WorkerConfig(finetune=ft_cfg))
    total = time.perf_counter() - t0
    row = jobs.get_job(store, job.id)
    with store.session() as s:
        stamps = sorted(s.execute(select(Prediction.created_at).where(
            Prediction.model_version_id == row.result_model_version_id)).scalars())
        started = s.get(TrainingJob, job.id).started_at
    store.close()
    if len(stamps) < 2:
        return {"error": f"job {row.status}: {row.message}"}
    per_frame = (stamps[-1] - stamps[0]).total_seconds() / (len(stamps) - 1)
    finetune_s = (stamps[0] - started).total_seconds() - per_frame
    # detect_film predicts every frame of the new version: 100 uncorrected + the 20 corrected ones
    return {"frames_predicted": len(stamps), "finetune_seconds": round(finetune_s, 1),
            "repredict_seconds_per_frame": round(per_frame, 2), "measured_cycle_seconds": round(total, 1),
            "cycle_seconds_for_100": round(finetune_s + per_frame * 120, 1),
            "extrapolated": uncorrected < 100, "job_message": row.message}


def main() -> None:
    global WORK
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--ks", type=int, nargs="*", default=[5, 10, 20])
    p.add_argument("--random-ks", type=int, nargs="*", default=[10])
    p.add_argument("--steps", type=int, default=60, help="fine-tuning steps (FinetuneConfig.cpu(): 60)")
    p.add_argument("--crop", type=int, default=256, help="fine-tuning crop side (FinetuneConfig: 256)")
    p.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default FinetuneConfig.cpu()'s)")
    p.add_argument("--defect-fraction", type=float, default=None,
                   help="share of crops centred on corrected defects (default FinetuneConfig's)")
    p.add_argument("--train-only", nargs="+", default=None, metavar="PART",
                   help="FinetuneConfig.train_only: the model parts that train (e.g. decoder); default all")
    p.add_argument("--validations", type=int, default=None,
                   help="FinetuneConfig.validations (validation passes; the best one's weights are kept)")
    p.add_argument("--synthetic-fraction", type=float, default=None,
                   help="FinetuneConfig.synthetic_crop_fraction (rehearsal crops with synthetic defects)")
    p.add_argument("--disagreement-fraction", type=float, default=None,
                   help="share of crops centred where the correction changed the proposal (default FinetuneConfig's)")
    p.add_argument("--fp-ks", type=int, nargs="*", default=[10], help="scenario 2: K values (none: skip it)")
    p.add_argument("--dry-run", action="store_true", help="12 frames, K = 5, 2 fine-tuning steps, no timing")
    p.add_argument("--start-model", default=None)
    p.add_argument("--fallback-steps", type=int, default=200)
    p.add_argument("--timing-frames", type=int, default=30, help="uncorrected 1080p frames (0: skip timing)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=None, help=f"scratch directory (default {WORK})")
    args = p.parse_args()
    if args.dry_run:
        args.frames, args.ks, args.random_ks, args.fp_ks, args.timing_frames = 12, [5], [], [5], 0
    if args.work:
        WORK = Path(args.work)
    import torch

    from studio.finetune import FinetuneConfig

    torch.set_num_threads(args.threads)
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))
    WORK.mkdir(parents=True, exist_ok=True)
    model, model_note = start_model(args)
    say(f"start model: {model} ({model_note})")
    clean = load_footage(args.frames)
    frames_dir = WORK / "frames"
    shutil.rmtree(frames_dir, ignore_errors=True)
    truth = write_film(clean, frames_dir, np.random.default_rng(args.seed))
    extra = {k: v for k, v in (("lr", args.lr), ("defect_crop_fraction", args.defect_fraction),
                               ("disagreement_crop_fraction", args.disagreement_fraction),
                               ("synthetic_crop_fraction", args.synthetic_fraction),
                               ("validations", args.validations),
                               ("train_only", tuple(args.train_only) if args.train_only else None)) if v is not None}
    ft_cfg = FinetuneConfig.cpu(steps=args.steps, crop=args.crop, seed=args.seed, dry_run=args.dry_run, **extra)
    cases = []
    if args.ks or args.random_ks:
        base, film_id, start_version = prepare_base(frames_dir, model, "cpu")
    for strategy, ks in (("active", args.ks), ("random", args.random_ks)):
        for k in ks:
            case = run_case(base, film_id, start_version, truth, strategy, k, model, "cpu", ft_cfg, args.seed)
            say(f"{strategy:>6} K={k:<3} F1 {case['f1_before']:.3f} -> {case['f1_after']:.3f} "
                f"({case['job_status']}, {case['seconds']} s): {case['job_message']}")
            cases.append(case)
    pick = {(c["strategy"], c["k"]): c for c in cases}
    al10, rnd10 = pick.get(("active", 10)), pick.get(("random", 10))
    result = {"start_model": model_note, "footage": f"{FOOTAGE.name} ({len(clean)} frames, novel defects)",
              "finetune_config": {"lr": ft_cfg.lr, "steps": ft_cfg.steps, "batch_size": ft_cfg.batch_size,
                                  "crop": ft_cfg.crop, "disagreement_crop_fraction": ft_cfg.disagreement_crop_fraction,
                                  "defect_crop_fraction": ft_cfg.defect_crop_fraction,
                                  "synthetic_crop_fraction": ft_cfg.synthetic_crop_fraction, "dry_run": ft_cfg.dry_run},
              "f1_before": al10["f1_before"] if al10 else None, "f1_after": al10["f1_after"] if al10 else None,
              "f1_before_random": rnd10["f1_before"] if rnd10 else None,
              "f1_after_random": rnd10["f1_after"] if rnd10 else None,
              "cases": [{k: v for k, v in c.items() if k != "job_message"} for c in cases]}
    result.update(fp_keys(fp_scenario(model, args.fp_ks, args.frames, ft_cfg, args.seed, say)))
    if args.timing_frames > 0:
        result["timing_1080p"] = timing_cycle(clean, model, args.timing_frames, "cpu", ft_cfg)
        say(f"1080p cycle: {result['timing_1080p']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
