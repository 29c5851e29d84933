"""Training loop: one function reporting to a job context (minGPT's trainer, not a class of hooks).

`train` is shared by `correlnet pretrain` (synthetic defects on clean clips) and the per-film
fine-tuning worker (a restorer's corrected masks): it takes any DataLoader of
{"frames": (B, 3, H, W) float in [0, 1], "mask": (B, 1, H, W) or (B, H, W) in {0, 1}} batches.

Determinism and resuming. The run is cut into segments of `checkpoint_every` steps. At the start
of each segment the global torch / numpy / python RNGs are seeded from (seed, segment) and a fresh
loader iterator is made, so the data a segment sees does not depend on what came before. A
checkpoint (written atomically with `correlnet.checkpoint.save_checkpoint`) holds the model, the
optimizer, the AMP scaler, the step and the RNG states; a killed run resumed from it re-seeds its
segment, skips the batches that segment had already used and restores the RNG states, so on a
deterministic device it ends with the same weights as an uninterrupted run.

Progress and cancellation go through one `correlnet.job_context.JobContext`: a report after every
step, and a cancelled context ends the run after the step in progress (checkpoint written).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterator

import numpy as np
import torch
from torch import nn

from correlnet.job_context import JobContext, job_or_null
from correlnet.losses import small_defect_weights, soft_dice_loss
from correlnet.train_state import resume_training, rng_state, save_training, set_rng_state, train_state_path


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says at which step and what to try."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train. `steps` counts optimizer steps; `epochs`, when set, overrides it as
    epochs * len(loader). Paper (Sec. 4.2): Adam, lr 1e-5, 150 epochs of DAVIS on a GPU; on CPU
    a larger lr with a short cosine schedule converges in the budget we have (docs/training.md)."""

    steps: int = 2000
    epochs: int | None = None
    lr: float = 1e-3
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.0
    batch_size: int = 8  # recorded for the checkpoint; the loader decides the real batch
    seed: int = 0
    checkpoint_every: int = 100
    bce_weight: float = 0.5  # Sec. 3.2 uses Dice alone; a little BCE helps early on empty crops
    # > 0: pixels of a defect of a < small_defect_area px weigh small_defect_area / a (at most
    # small_defect_max_weight) in the loss, so dust counts by number, not area (losses.small_defect_weights).
    small_defect_area: float = 0.0
    small_defect_max_weight: float = 16.0
    grad_clip: float | None = 1.0
    amp: bool = True  # used on CUDA only
    dry_run: bool = False  # stop after 2 steps: every code path, cheaply
    validations: int | None = None  # val_fn passes, evenly spaced, the last at the end; None: at every checkpoint

    def __post_init__(self) -> None:
        if self.steps < 1 and self.epochs is None:
            raise ValueError(f"steps must be >= 1 (got {self.steps}); or set epochs")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1 (got {self.epochs})")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0 (got {self.lr}); the CPU default is 1e-3")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1 (got {self.checkpoint_every})")
        if self.small_defect_area < 0 or self.small_defect_max_weight < 1:
            raise ValueError(f"small_defect_area must be >= 0 and small_defect_max_weight >= 1 (got "
                             f"{self.small_defect_area}, {self.small_defect_max_weight})")
        if self.validations is not None and self.validations < 1:
            raise ValueError(f"validations must be >= 1 or None (got {self.validations})")


@dataclass
class TrainResult:
    steps_done: int
    total_steps: int
    final_loss: float  # mean of the last (up to) 50 step losses
    loss_history: list[tuple[int, float]] = field(default_factory=list)  # (step, mean loss of the window)
    val_history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    seconds: float = 0.0
    stopped: bool = False  # the job was cancelled before the last step
    resumed_from: int = 0


def total_steps(cfg: TrainConfig, loader: Any) -> int:
    """Number of optimizer steps the run will do (2 for a dry run)."""
    if cfg.dry_run:
        return 2
    if cfg.epochs is not None:
        try:
            per_epoch = len(loader)
        except TypeError as exc:
            raise ValueError("epochs needs a loader with a length; use steps for an endless loader") from exc
        return max(1, cfg.epochs * per_epoch)
    return cfg.steps


def validation_steps(total: int, validations: int) -> set[int]:
    """The steps (1-based) after which validation runs: `validations` evenly spaced, the last at `total`."""
    return {max(1, round(total * (i + 1) / validations)) for i in range(validations)}


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """Linear warm-up then cosine decay to lr * min_lr_ratio; `step` is 0-based."""
    warm = min(cfg.warmup_steps, max(total - 1, 0))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    span = max(total - warm, 1)
    cos = 0.5 * (1 + math.cos(math.pi * min(step - warm, span) / span))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _batches(loader: Any, cfg: TrainConfig, segment: int, skip: int) -> Iterator[Any]:
    """Endless batches for one segment, seeded from (seed, segment), with the first `skip` drawn
    and dropped now (not lazily), so that RNG states restored afterwards are not disturbed."""
    _seed_everything(cfg.seed * 1_000_003 + segment)
    batches = _cycle(loader, iter(loader))
    for _ in range(skip):
        next(batches)
    return batches


def _cycle(loader: Any, it: Iterator[Any]) -> Iterator[Any]:
    while True:
        empty = True
        for batch in it:
            empty = False
            yield batch
        if empty:
            raise ValueError("the training loader yields no batches: give it more frames or a smaller batch size")
        it = iter(loader)


def _unpack(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, dict) or "frames" not in batch or "mask" not in batch:
        raise ValueError("train() needs batches as dicts with 'frames' (B, 3, H, W) and 'mask' (B, 1, H, W)")
    frames = batch["frames"].to(device, non_blocking=True).float()
    mask = batch["mask"].to(device, non_blocking=True).float()
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if frames.dim() != 4 or frames.shape[1] != 3 or mask.shape != (frames.shape[0], 1, *frames.shape[2:]):
        raise ValueError(
            f"batch shapes: frames {tuple(frames.shape)}, mask {tuple(mask.shape)}; expected frames "
            "(B, 3, H, W) (previous, current, next frame) and mask (B, 1, H, W) of the current frame"
        )
    return frames, mask


def _check_loss(loss: torch.Tensor, step: int, lr: float) -> float:
    value = float(loss.detach())
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"the training loss became {value} at step {step + 1} (lr {lr:.3g}): lower the learning rate "
            "(--lr), keep gradient clipping on, and check that the input frames hold no NaN or inf values"
        )
    return value


def train(
    model: nn.Module,
    loader: Any,
    cfg: TrainConfig,
    device: torch.device,
    job: JobContext | None = None,
    val_fn: Callable[[nn.Module], dict[str, float]] | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    provenance: dict[str, Any] | None = None,
) -> TrainResult:
    """Train `model` (already on `device`) with Adam on the soft Dice loss (Sec. 3.2, + cfg.bce_weight * BCE).

    loader: batches {"frames": (B, 3, H, W) float in [0, 1], "mask": (B, 1, H, W) or (B, H, W) in {0, 1}}.
    job: gets report(done, total, unit="step", loss, lr, eta_seconds[, val_f1]) after every step; once it
    is cancelled the run ends after the step in progress, writes its checkpoint and returns with
    `stopped` set (a cancel seen at the last step changes nothing: the run is complete).
    val_fn(model) -> metrics runs (in eval mode, no grad) after the steps `validation_steps(total,
    cfg.validations)`, or at every regular checkpoint and at the end when cfg.validations is None (not at
    a cancel's stop: nothing is chosen from a cancelled run); its "f1" is reported as val_f1. With checkpoint_path, an atomic checkpoint is written every cfg.checkpoint_every
    steps, at the end and when cancelled; resume=True continues from it when it exists.
    provenance: plain data recorded in every checkpoint's `extra["data"]` (sources, generator, crop:
    what the model was trained on, which TrainConfig does not describe).
    Raises TrainingDiverged when the loss is NaN/inf, ValueError for malformed batches, and
    FileNotFoundError on resume when the checkpoint exists without its training-state file.
    """
    job = job_or_null(job)
    total = total_steps(cfg, loader)
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    start, rng = 0, None
    if resume and path is not None and (path.exists() or train_state_path(path).exists()):
        state = resume_training(path, model, opt, scaler)  # raises naming the file if the state is missing
        start, rng = int(state["step"]), state.get("rng")
    result = TrainResult(steps_done=start, total_steps=total, final_loss=float("nan"), resumed_from=start)
    val_steps = None if cfg.validations is None else validation_steps(total, cfg.validations)
    losses: list[float] = []
    t0 = time.perf_counter()
    model.train()
    batches: Iterator[Any] | None = None
    for step in range(start, total):
        if batches is None or step % cfg.checkpoint_every == 0:
            batches = _batches(loader, cfg, step // cfg.checkpoint_every, skip=step % cfg.checkpoint_every)
            if rng is not None and step % cfg.checkpoint_every:
                set_rng_state(rng)  # resumed mid-segment: continue the RNG streams where they stopped
            rng = None
        lr = learning_rate(cfg, step, total)
        value = _train_step(model, opt, scaler, next(batches), cfg, lr, step, device)
        losses.append(value)
        done = result.steps_done = step + 1
        avg = sum(losses[-50:]) / len(losses[-50:])
        val = _validate_if_due(model, val_fn, val_steps, cfg, done, total, result)
        eta = (time.perf_counter() - t0) / (done - start) * (total - done)
        job.report(done=done, total=total, unit="step", loss=avg, lr=lr, eta_seconds=eta,
                   **({"val_f1": val["f1"]} if val and "f1" in val else {}))
        stop = done < total and job.cancelled
        _end_of_step(model, opt, scaler, cfg, result, done, total, avg, stop, val, path, provenance)
        if stop:
            result.stopped = True
            break
    model.eval()
    result.seconds = time.perf_counter() - t0
    if losses:
        result.final_loss = sum(losses[-50:]) / len(losses[-50:])
    return result


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, scaler: Any, batch: Any, cfg: TrainConfig,
                lr: float, step: int, device: torch.device) -> float:
    """One optimizer step on one batch; returns the loss."""
    frames, mask = _unpack(batch, device)
    for group in opt.param_groups:
        group["lr"] = lr
    use_amp = scaler is not None
    with torch.autocast(device_type=device.type, enabled=use_amp):
        logits = model(frames)
    weight = (small_defect_weights(mask, cfg.small_defect_area, cfg.small_defect_max_weight)
              if cfg.small_defect_area > 0 else None)
    loss = soft_dice_loss(logits.float(), mask, bce_weight=cfg.bce_weight, weight=weight)
    value = _check_loss(loss, step, lr)
    _optimizer_step(model, opt, scaler, loss, cfg.grad_clip)
    return value


def _at_checkpoint(cfg: TrainConfig, done: int, total: int) -> bool:
    """Whether step `done` of `total` ends with a regular checkpoint (every cfg.checkpoint_every, and the last)."""
    return done % cfg.checkpoint_every == 0 or done == total


def _validate_if_due(model: nn.Module, val_fn: Any, val_steps: Collection[int] | None, cfg: TrainConfig,
                     done: int, total: int, result: TrainResult) -> dict[str, float] | None:
    """val_fn's metrics after step `done` when validation is due then (recorded in val_history), else None."""
    due = done in val_steps if val_steps is not None else _at_checkpoint(cfg, done, total)
    if val_fn is None or not due:
        return None
    val = _validate(model, val_fn)
    result.val_history.append((done, val))
    return val


def _end_of_step(model: nn.Module, opt: torch.optim.Optimizer, scaler: Any, cfg: TrainConfig, result: TrainResult,
                 done: int, total: int, avg: float, stop: bool, val: dict[str, float] | None, path: Path | None,
                 provenance: dict[str, Any] | None = None) -> None:
    """Loss history and the checkpoint (with this step's validation metrics, if any) when due."""
    if done % 50 == 0 or done == total or stop:
        result.loss_history.append((done, avg))
    if path is not None and (_at_checkpoint(cfg, done, total) or stop):
        state = {"step": done, "optimizer": opt.state_dict(), "rng": rng_state(),
                 "scaler": scaler.state_dict() if scaler is not None else None}
        save_training(path, model, asdict(cfg), state, {"loss": avg, "step": done, **(val or {})}, provenance)


def _optimizer_step(model: nn.Module, opt: torch.optim.Optimizer, scaler: Any, loss: torch.Tensor,
                    grad_clip: float | None) -> None:
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
    else:
        loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()


def _validate(model: nn.Module, val_fn: Callable[[nn.Module], dict[str, float]]) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        val = {k: float(v) for k, v in val_fn(model).items()}
    model.train()
    return val
