"""Per-film fine-tuning on a restorer's corrections (paper Sec. 4.5: pre-train on synthetic
defects, then fine-tune on the film).

One job: start from the film's active model (the shipped default for a new film), train on the
triplets whose centre frame has a correction (crops around corrected defects and elsewhere),
measure F1 on the film's fixed validation frames before and after, publish a new ModelVersion
(parent = the previous active one) only if validation F1 did not drop (or the restorer forced it),
then re-predict the film's uncorrected frames with it. The model file is written atomically
before its row exists, and the film's active model changes only in that final write.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
import torch
from sqlalchemy import exists, select
from torch import nn
from torch.utils.data import DataLoader, Dataset

from correlnet.checkpoint import load_model, save_checkpoint
from correlnet.metrics import PixelCounts, count_pixels
from correlnet.inference import prepare_for_inference
from correlnet.tiling import TilingConfig, predict_triplet_tiled
from correlnet.train import TrainConfig, TrainProgress, train
from db.files import sha256_file
from db.models import Correction, Film, Frame, ModelVersion
from studio.corrections import current_mask
from studio.detection import active_model_version
from studio.films import frame_gray


class JobCancelled(Exception):
    """The restorer cancelled the job; nothing was published."""


class FinetuneDataError(ValueError):
    """The film's corrections cannot make a training set; the message says what to do."""


@dataclass(frozen=True)
class FinetuneConfig:
    """How one fine-tuning job trains.

    lr: 1e-6 is the paper's fine-tuning rate (Sec. 4.5, on a GPU over many epochs); on a CPU with
        a bounded budget that barely moves the weights, so `FinetuneConfig.cpu()` uses 1e-4
        (measured in bench/finetune_gain.py; docs/benchmarks.md "Fine-tuning gain").
    steps, batch_size, crop: optimizer steps and batches of crop x crop triplets.
    defect_crop_fraction: share of crops centred (with jitter) on a corrected defect pixel; the rest
        are uniform, so the model also sees what the restorer left unmarked.
    validation_fraction: share of corrected frames held out for validation (at least one).
    """

    steps: int = 200
    lr: float = 1e-6
    batch_size: int = 4
    crop: int = 256
    defect_crop_fraction: float = 0.6
    validation_fraction: float = 0.2
    threshold: float = 0.5
    bce_weight: float = 0.5  # as in pre-training (correlnet.train.TrainConfig)
    warmup_steps: int = 10
    grad_clip: float = 1.0
    amp: bool = True  # CUDA only; the CPU path runs in float32
    seed: int = 0
    tile: int = 1024  # tiling of the full validation frames
    dry_run: bool = False  # two steps: every code path, cheaply

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.crop < 32:
            raise ValueError(f"FinetuneConfig needs steps >= 1, batch_size >= 1 and crop >= 32; got {self}")
        if not (0 < self.validation_fraction < 1 and 0 <= self.defect_crop_fraction <= 1 and self.lr > 0):
            raise ValueError("validation_fraction must lie in (0, 1), defect_crop_fraction in [0, 1], lr > 0")

    @classmethod
    def cpu(cls, **overrides: Any) -> "FinetuneConfig":
        """The faster CPU setting: lr 1e-4 and 60 steps of 4 crops (about a minute on 2 cores with
        the default model); see docs/benchmarks.md for the gain it gives."""
        return replace(cls(steps=60, lr=1e-4), **overrides)

    @classmethod
    def for_device(cls, device: torch.device) -> "FinetuneConfig":
        return cls() if device.type == "cuda" else cls.cpu()

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, lr=self.lr, warmup_steps=min(self.warmup_steps, self.steps // 5),
                           batch_size=self.batch_size, seed=self.seed, checkpoint_every=self.steps,
                           bce_weight=self.bce_weight, grad_clip=self.grad_clip, amp=self.amp,
                           dry_run=self.dry_run, min_lr_ratio=0.1)


@dataclass(frozen=True)
class FinetuneOutcome:
    published: ModelVersion | None
    f1_before: float
    f1_after: float
    train_frames: int
    val_frames: int
    steps: int
    message: str


Progress = Callable[..., bool]  # progress(step=, total_steps=, loss=, val_f1=, eta_seconds=) -> cancel?


def _hash_unit(film_id: int, index: int) -> float:
    digest = hashlib.sha256(f"correlnet-validation:{film_id}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_validation(store: Any, film_id: int, fraction: float) -> tuple[list[Frame], list[Frame]]:
    """Split the film's corrected frames into (train, validation), fixing the split in the store.

    A frame's side is a pure function of (film, frame index), so it never changes across retrains
    (a reshuffled split would inflate scores: MONAI Label issue 1752). When no corrected frame is on
    the validation side yet, the one with the smallest hash is moved there, once. Frames already
    marked is_validation stay so.
    """
    with store.write() as s:
        frames = s.execute(select(Frame).where(
            Frame.film_id == film_id, exists().where(Correction.frame_id == Frame.id)).order_by(Frame.index)
        ).scalars().all()
        for f in frames:
            if not f.is_validation and _hash_unit(film_id, f.index) < fraction:
                f.is_validation = True
        if frames and not any(f.is_validation for f in frames) and len(frames) >= 2:
            min(frames, key=lambda f: _hash_unit(film_id, f.index)).is_validation = True
        s.flush()
        return [f for f in frames if not f.is_validation], [f for f in frames if f.is_validation]


class _FilmFrames:
    """Gray float16 copies of the film's frames, loaded once each (a triplet shares its neighbours)."""

    def __init__(self, store: Any, film_id: int):
        with store.session() as s:
            self._rows = {f.index: f for f in s.execute(select(Frame).where(Frame.film_id == film_id)).scalars()}
        self._store, self._cache = store, {}

    def gray(self, index: int) -> np.ndarray:
        if index not in self._cache:
            self._cache[index] = frame_gray(self._store, self._rows[index]).astype(np.float16)
        return self._cache[index]

    def triplet(self, frame: Frame) -> np.ndarray:
        """(3, H, W) float32: frame_prev, frame_mid, frame_next (the stored neighbours)."""
        return np.stack([self.gray(frame.prev_index), self.gray(frame.index), self.gray(frame.next_index)]).astype(
            np.float32)


def _load_mask(store: Any, frame: Frame, shape: tuple[int, int]) -> np.ndarray:
    mask = current_mask(store, frame.id)
    if mask is None:
        raise FinetuneDataError(f"frame {frame.index} has a correction row but no readable mask")
    mask = np.asarray(mask) > 0
    if mask.shape != shape:
        raise FinetuneDataError(f"the correction of frame {frame.index} is {mask.shape}, the frame is {shape}: "
                                "save the correction again at the frame's full resolution")
    return mask


class CorrectionCrops(Dataset):
    """Random crops of corrected triplets: item i is {"frames": (3, c, c), "mask": (1, c, c)}.

    Deterministic per (seed, i). A `defect_crop_fraction` share is centred near a defect pixel
    of the corrected mask (when it has any), the rest uniform; random horizontal/vertical flips.
    """

    def __init__(self, triplets: list[np.ndarray], masks: list[np.ndarray], length: int, cfg: FinetuneConfig):
        self.triplets = [t.astype(np.float16) for t in triplets]
        self.masks, self.length, self.cfg = masks, length, cfg
        self.defects = [np.argwhere(m) for m in masks]
        h, w = masks[0].shape
        self.ch, self.cw = min(cfg.crop, h), min(cfg.crop, w)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.cfg.seed, i])
        k = int(rng.integers(len(self.triplets)))
        h, w = self.masks[k].shape
        if len(self.defects[k]) and rng.random() < self.cfg.defect_crop_fraction:
            cy, cx = self.defects[k][rng.integers(len(self.defects[k]))]
            y = int(np.clip(cy - self.ch // 2 + rng.integers(-self.ch // 4, self.ch // 4 + 1), 0, h - self.ch))
            x = int(np.clip(cx - self.cw // 2 + rng.integers(-self.cw // 4, self.cw // 4 + 1), 0, w - self.cw))
        else:
            y, x = int(rng.integers(h - self.ch + 1)), int(rng.integers(w - self.cw + 1))
        frames = self.triplets[k][:, y:y + self.ch, x:x + self.cw].astype(np.float32)
        mask = self.masks[k][None, y:y + self.ch, x:x + self.cw].astype(np.float32)
        if rng.random() < 0.5:
            frames, mask = frames[:, :, ::-1], mask[:, :, ::-1]
        if rng.random() < 0.5:
            frames, mask = frames[:, ::-1], mask[:, ::-1]
        return {"frames": torch.from_numpy(frames.copy()), "mask": torch.from_numpy(mask.copy())}


def validation_f1(model: nn.Module, triplets: list[np.ndarray], masks: list[np.ndarray], device: torch.device,
                  cfg: FinetuneConfig) -> float:
    """Pixel F1 over the validation frames at full resolution (tiled), threshold cfg.threshold."""
    model.eval()
    # One batch-norm-folded copy for all validation frames (predict_triplet_tiled reuses it as is);
    # the model being fine-tuned is left untouched.
    inference_model = prepare_for_inference(model, device)
    tiling = TilingConfig(tile=cfg.tile, overlap=min(192, cfg.tile // 4 - 1))
    total = PixelCounts(0, 0, 0)
    for triplet, mask in zip(triplets, masks):
        probs = predict_triplet_tiled(inference_model, triplet, tiling, device)
        total = total + count_pixels(probs >= cfg.threshold, mask)
    return float(total.f1)


@dataclass
class _TrainingData:
    train_triplets: list[np.ndarray]  # (3, H, W) float32 each
    train_masks: list[np.ndarray]  # (H, W) bool each
    val_triplets: list[np.ndarray]
    val_masks: list[np.ndarray]


def load_training_data(store: Any, film: Film, cfg: FinetuneConfig) -> _TrainingData:
    """The film's corrected triplets and masks, split by `assign_validation`. Raises
    FinetuneDataError when there are too few corrections, ValueError naming an unreadable file."""
    train_rows, val_rows = assign_validation(store, film.id, cfg.validation_fraction)
    if not train_rows or not val_rows:
        raise FinetuneDataError(
            f"film {film.name!r} has {len(train_rows) + len(val_rows)} corrected frame(s); fine-tuning needs at "
            "least 2 (one is kept for validation): correct a few more frames and queue training again")
    frames = _FilmFrames(store, film.id)
    shape = (film.height, film.width)
    return _TrainingData([frames.triplet(f) for f in train_rows], [_load_mask(store, f, shape) for f in train_rows],
                         [frames.triplet(f) for f in val_rows], [_load_mask(store, f, shape) for f in val_rows])


def keep_norm_statistics(model: nn.Module) -> nn.Module:
    """Freeze the batch-norm running statistics (momentum 0): a few crops of one film, most of them
    centred on defects, would otherwise overwrite the statistics learned over the whole pre-training
    set and shift every prediction at inference. Weights and biases still train."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0
    return model


def run_finetune(store: Any, job: Any, device: torch.device, cfg: FinetuneConfig, progress: Progress,
                 default_model: Any = None) -> FinetuneOutcome:
    """Fine-tune job.film_id's active model on its corrections and publish when validation F1 holds.

    progress(**fields) writes the job row and returns True when cancellation was asked.
    default_model: checkpoint a film with no model of its own starts from (None: the shipped one).
    Raises JobCancelled, FinetuneDataError (too few corrections, bad masks), correlnet's
    TrainingDiverged (NaN loss) or CheckpointError; the active model is unchanged in all those cases.
    """
    with store.session() as s:
        film = s.get(Film, job.film_id)
    start = active_model_version(store, film, default_model)
    data = load_training_data(store, film, cfg)
    model = keep_norm_statistics(load_model(store.path(start.path), device=device))
    f1_before, steps, final_loss, f1_after = _train(model, data, cfg, device, progress)
    n_train, n_val = len(data.train_masks), len(data.val_masks)
    summary = (f"validation F1 {f1_before:.3f} -> {f1_after:.3f} on {n_val} frame(s), "
               f"trained on {n_train} corrected frame(s) for {steps} steps")
    if f1_after < f1_before and not job.force_publish:
        return FinetuneOutcome(None, f1_before, f1_after, n_train, n_val, steps,
                               f"not published: {summary}; the film keeps model version {start.id} "
                               "(queue again with force to publish anyway)")
    metrics = {"val_f1": f1_after, "val_f1_parent": f1_before, "train_frames": n_train, "val_frames": n_val,
               "steps": steps, "final_loss": final_loss}
    version = publish_version(store, film, start, model, metrics, asdict(cfg), job.id)
    return FinetuneOutcome(version, f1_before, f1_after, n_train, n_val, steps,
                           f"published model version {version.id}: {summary}")


def _train(model: nn.Module, data: _TrainingData, cfg: FinetuneConfig, device: torch.device,
           progress: Progress) -> tuple[float, int, float, float]:
    """Validate, train with progress and cancellation, validate again: (f1_before, steps, loss, f1_after)."""
    tcfg = cfg.train_config()

    def val_f1(m: nn.Module) -> float:
        return validation_f1(m, data.val_triplets, data.val_masks, device, cfg)

    f1_before = val_f1(model)
    state = {"cancel": progress(step=0, total_steps=2 if cfg.dry_run else cfg.steps, val_f1=f1_before)}
    if state["cancel"]:
        raise JobCancelled("cancelled before training started; nothing was published")

    def on_progress(p: TrainProgress) -> None:
        state["cancel"] = progress(step=p.step, total_steps=p.total, loss=p.loss_avg, eta_seconds=p.eta_seconds,
                                   val_f1=p.val.get("f1") if p.val else None)

    crops = CorrectionCrops(data.train_triplets, data.train_masks, tcfg.steps * cfg.batch_size, cfg)
    loader = DataLoader(crops, batch_size=cfg.batch_size, shuffle=False, num_workers=0)
    result = train(model, loader, tcfg, device, on_progress=on_progress, val_fn=lambda m: {"f1": val_f1(m)},
                   should_stop=lambda: bool(state["cancel"]))
    if result.stopped:
        raise JobCancelled(f"cancelled at step {result.steps_done} of {result.total_steps}; nothing was published")
    f1_after = result.val_history[-1][1]["f1"] if result.val_history else val_f1(model)
    return f1_before, result.steps_done, result.final_loss, f1_after


def publish_version(store: Any, film: Film, parent: ModelVersion, model: nn.Module, metrics: dict[str, Any],
                    finetune_config: dict[str, Any], job_id: int) -> ModelVersion:
    """Write the checkpoint atomically, then (only then) insert its ModelVersion and make it active."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    relative = f"models/film_{film.id}/finetune_job{job_id}_{stamp}.pt"
    path = store.path(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model, metrics=metrics, train_config=finetune_config,
                    extra={"film_id": film.id, "parent_model_version_id": parent.id, "job_id": job_id})
    cfg = getattr(model, "config", None)
    with store.write() as s:
        version = ModelVersion(film_id=film.id, parent_id=parent.id, path=relative, sha256=sha256_file(path),
                               arch=parent.arch, encoder=parent.encoder,
                               config=asdict(cfg) if cfg is not None else dict(parent.config or {}),
                               metrics=metrics, note=f"fine-tuned by job {job_id}")
        s.add(version)
        s.flush()
        s.get(Film, film.id).active_model_version_id = version.id
        return version
