"""Per-film fine-tuning on a restorer's corrections (paper Sec. 4.5: pre-train on synthetic
defects, then fine-tune on the film).

One job: start from the film's active model (the shipped default for a new film); split the film's
corrected frames by evidence (`studio.evidence`: edited frames are ground truth, accepted-as-is
frames only give negatives and never validate); train on crops where the restorer disagreed with
the proposal, on corrected defects and elsewhere (`studio.crop_sampler`); validate a few times
along the way and keep the best checkpoint; publish a new ModelVersion (parent = the previous
active one) only when the gate (`studio.publish_gate`: pixels and blobs on the fixed edited validation
frames, with a bootstrap over them) finds it better, or the restorer forced it; then the worker
re-predicts the film's uncorrected frames with it. With too few edited validation frames the job
does not train and says how many more are needed. The model file is written atomically before its
row exists, and the film's active model changes only in that final write.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from sqlalchemy import select
from torch import nn
from torch.utils.data import DataLoader

from correlnet import DEFECT_THRESHOLD
from correlnet.inference import prepare_for_inference
from correlnet.job_context import JobCancelled, JobContext, job_or_null
from correlnet.metrics import PixelCounts
from correlnet.prediction import predict_triplet_tiled
from correlnet.tiling import TilingConfig
from correlnet.train import TrainConfig, total_steps, train
from db.models import Film, Frame, ModelVersion, Prediction
from studio.corrections import load_correction
from studio.crop_sampler import CorrectionCrops, TrainFrame
from studio.detection import THRESHOLD, load_prediction
from studio.evidence import EvidenceSplit, FrameEvidence, assign_validation
from studio.films import frame_gray
from studio.publish_gate import FrameScore, PublishGateConfig, PublishGateResult, decide, frame_score, pooled
from studio.versions import active_model_version, load_version_model, publish_version


class FinetuneDataError(ValueError):
    """The film's corrections cannot make a training set; the message says what to do."""


@dataclass(frozen=True)
class FinetuneConfig:
    """How one fine-tuning job trains.

    lr: 1e-6 is the paper's fine-tuning rate (Sec. 4.5, on a GPU over many epochs); on a CPU with
        a bounded budget that barely moves the weights, so `FinetuneConfig.cpu()` uses 5e-5
        (measured in bench/finetune_gain.py; docs/benchmarks.md "Fine-tuning gain").
    steps, batch_size, crop: optimizer steps and batches of crop x crop triplets.
    disagreement_crop_fraction, defect_crop_fraction: shares of crops centred on a pixel where the
        restorer changed the proposal (erased or added) and on a corrected defect;
        synthetic_crop_fraction: share of edited-frame crops with synthetic defects composited onto
        them (rehearsal); the rest are cut elsewhere (`studio.crop_sampler`; docs/training.md
        "Per-film fine-tuning: evidence").
    validation_fraction: share of edited frames held out for validation (hash of the frame index);
        topped up to gate.min_frames while more than one edited frame is left to train on.
    validations: validation passes during training (evenly spaced, the last at the end); the best
        one's weights are kept.
    gate: the publish gate (`studio.publish_gate.PublishGateConfig`).
    """

    steps: int = 200
    lr: float = 1e-6
    batch_size: int = 4
    crop: int = 256
    disagreement_crop_fraction: float = 0.5
    defect_crop_fraction: float = 0.25
    synthetic_crop_fraction: float = 0.0
    train_only: tuple[str, ...] = ()  # top-level modules that train (e.g. ("decoder",)); () = all
    validation_fraction: float = 0.2
    validations: int = 3
    threshold: float = DEFECT_THRESHOLD
    bce_weight: float = 0.5  # as in pre-training (correlnet.train.TrainConfig)
    warmup_steps: int = 10
    grad_clip: float = 1.0
    amp: bool = True  # CUDA only; the CPU path runs in float32
    seed: int = 0
    tile: int = 1024  # tiling of the full validation frames
    gate: PublishGateConfig = field(default_factory=PublishGateConfig)
    dry_run: bool = False  # two steps: every code path, cheaply

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.crop < 32 or self.validations < 1:
            raise ValueError(f"FinetuneConfig needs steps, batch_size, validations >= 1 and crop >= 32; got {self}")
        shares = (self.disagreement_crop_fraction, self.defect_crop_fraction, self.synthetic_crop_fraction)
        if not (0 < self.validation_fraction < 1 and min(shares) >= 0 and sum(shares) <= 1 and self.lr > 0):
            raise ValueError("validation_fraction must lie in (0, 1), disagreement_crop_fraction, "
                             "defect_crop_fraction and synthetic_crop_fraction in [0, 1] with a sum <= 1, lr > 0")

    @classmethod
    def cpu(cls, **overrides: Any) -> "FinetuneConfig":
        """The faster CPU setting: lr 5e-5 and 60 steps of 4 crops, a fifth of them rehearsal crops with
        synthetic defects (about a minute on 2 cores with the default model, plus four validation
        passes). At lr 1e-4 the false-positive benchmark lost 0.065 of recall on the frames nobody
        corrected; see docs/benchmarks.md "Fine-tuning gain" for the variants measured."""
        return replace(cls(steps=60, lr=5e-5, synthetic_crop_fraction=0.2), **overrides)

    @classmethod
    def for_device(cls, device: torch.device) -> "FinetuneConfig":
        return cls() if device.type == "cuda" else cls.cpu()

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, lr=self.lr, warmup_steps=min(self.warmup_steps, self.steps // 5),
                           batch_size=self.batch_size, seed=self.seed, checkpoint_every=self.steps,
                           bce_weight=self.bce_weight, grad_clip=self.grad_clip, amp=self.amp,
                           dry_run=self.dry_run, min_lr_ratio=0.1, validations=self.validations)


@dataclass(frozen=True)
class FinetuneOutcome:
    published: ModelVersion | None
    f1_before: float  # pixel F1 on the validation frames (1.0 with none)
    f1_after: float
    train_frames: int  # edited + accepted frames trained on
    val_frames: int
    steps: int
    message: str
    gate: PublishGateResult | None = None  # None: the job did not train


class _FilmFrames:
    """Gray float16 copies of the film's frames, loaded once each (a triplet shares its neighbours)."""

    def __init__(self, store: Any, film_id: int):
        with store.session() as s:
            self._rows = {f.index: f for f in s.execute(select(Frame).where(Frame.film_id == film_id)).scalars()}
        self._store, self.cache = store, {}

    def gray(self, index: int) -> np.ndarray:
        if index not in self.cache:
            self.cache[index] = frame_gray(self._store, self._rows[index]).astype(np.float16)
        return self.cache[index]

    def indices(self, frame: Frame) -> tuple[int, int, int]:
        """The stored neighbours (frame_prev, frame_mid, frame_next), loaded."""
        out = (frame.prev_index, frame.index, frame.next_index)
        for i in out:
            self.gray(i)
        return out

    def triplet(self, frame: Frame) -> np.ndarray:
        """(3, H, W) float32: frame_prev, frame_mid, frame_next."""
        return np.stack([self.gray(i) for i in self.indices(frame)]).astype(np.float32)


def _load_mask(store: Any, e: FrameEvidence, shape: tuple[int, int]) -> np.ndarray:
    mask = load_correction(store, e.correction)
    if mask.shape != shape:
        raise FinetuneDataError(f"the correction of frame {e.frame.index} is {mask.shape}, the frame is {shape}: "
                                "save the correction again at the frame's full resolution")
    return mask


def _proposal(store: Any, e: FrameEvidence, shape: tuple[int, int]) -> np.ndarray | None:
    """The proposal the correction started from (probs >= THRESHOLD, as corrections store it), if kept."""
    if e.correction.prediction_id is None:
        return None
    with store.session() as s:
        prediction = s.get(Prediction, e.correction.prediction_id)
    if prediction is None:
        return None
    probs = load_prediction(store, prediction)
    return probs >= THRESHOLD if probs.shape == shape else None


@dataclass
class _TrainingData:
    frames: dict[int, np.ndarray]  # film frame index -> (H, W) float16 gray
    train: list[TrainFrame]
    val_triplets: list[np.ndarray]  # (3, H, W) float32 each
    val_masks: list[np.ndarray]  # (H, W) bool each


def load_training_data(store: Any, film: Film, split: EvidenceSplit) -> _TrainingData:
    """Triplets, masks and proposals of the split's frames. Raises FinetuneDataError naming the frame
    for a mask of the wrong size, ValueError naming an unreadable file."""
    frames = _FilmFrames(store, film.id)
    shape = (film.height, film.width)
    train = [TrainFrame(frames.indices(e.frame), _load_mask(store, e, shape), True, _proposal(store, e, shape))
             for e in split.train_edited]
    train += [TrainFrame(frames.indices(e.frame), _load_mask(store, e, shape), False) for e in split.train_accepted]
    return _TrainingData(frames.cache, train, [frames.triplet(e.frame) for e in split.validation],
                         [_load_mask(store, e, shape) for e in split.validation])


def validation_scores(model: nn.Module, triplets: list[np.ndarray], masks: list[np.ndarray], device: torch.device,
                      cfg: FinetuneConfig) -> list[FrameScore]:
    """Pixel and blob counts per validation frame at full resolution (tiled), threshold cfg.threshold."""
    if not triplets:
        return []
    # One batch-norm-folded eval copy for all frames; the model being fine-tuned is left untouched.
    inference_model = prepare_for_inference(model, device)
    tiling = TilingConfig.for_tile(cfg.tile)
    return [frame_score(predict_triplet_tiled(inference_model, t, tiling, device) >= cfg.threshold, m)
            for t, m in zip(triplets, masks)]


# The film's detection rules: the `ModelConfig` fields applied after the network
# (`correlnet.temporal_gate`: the gate's evidence threshold, the sure one-frame marks, the marks'
# extent) and the values a film's version may take. Not weights: a restorer's erasures cannot train
# them away, so the job chooses them (`choose_film_rules`).
RULE_CANDIDATES: dict[str, tuple[float, ...]] = {
    "temporal_gate": (0.03, 0.05, 0.07, 0.1),  # the shipped lenient veto, and stricter ones
    "sure_marks": (0.0, 0.09, 0.12, 0.16, 0.2, 0.25),  # off, SDI-p's validated threshold, stricter ones
    "mark_extent": (0, 1, 2),  # px
    "mark_extent_fraction": (0.0, 0.3, 0.5),  # off, then a grown pixel needs this share of its mark's peak
}
RULE_NAMES = {"sure_marks": "sure one-frame marks", "temporal_gate": "temporal gate", "mark_extent": "mark extent",
              "mark_extent_fraction": "mark extent's share of the mark's contrast"}


# The film's rules may not lose more than this share of the true defects (pixels, and blobs) on the
# edited training frames, against the start model's rules, nor the kept weights more on the validation
# frames, against the start detector (`_KeepBest`): "without losing what the model already found",
# issue 13's allowance. A stricter rule chosen by F1 alone drops faint true defects together with the
# erased marks. Measured (docs/benchmarks.md "Session 12"): scenario 2 lost 0.008 of recall on the
# uncorrected frames (session 11, without the weights' floor: 0.026 at 0.02, 0.018 at 0.01).
RULE_RECALL_SLACK = 0.02


def _recalls(frames: list[FrameScore]) -> tuple[float, float]:
    """Pooled recall of pixels and of defects (blobs). The true pixels and blobs are the same for every
    rule: frames with no true defect give recall 1 everywhere, so no floor."""
    return (sum((f.pixels for f in frames), PixelCounts()).recall,
            sum((f.blobs for f in frames), PixelCounts()).recall)


def pick_rule_value(scores: dict[Any, list[FrameScore]], current: Any,
                    floors: tuple[float, float] | None = None) -> Any:
    """The value of `scores` ({value: per-frame scores on the edited frames}) with the best gate score
    (`pooled`) among those whose pooled recall, of pixels and of defects (blobs) alike, is at most
    RULE_RECALL_SLACK below `floors` (default: the recalls at `current`; a faint defect lost whole is a
    loss even when it has few pixels); `current` wins ties."""
    floors = _recalls(scores[current]) if floors is None else floors
    best, best_score = current, pooled(scores[current])[2]
    for value, frames in scores.items():
        if value == current or not all(r >= f - RULE_RECALL_SLACK for r, f in zip(_recalls(frames), floors)):
            continue
        if (score := pooled(frames)[2]) > best_score:
            best, best_score = value, score
    return best


def choose_film_rules(model: nn.Module, data: _TrainingData, device: torch.device,
                      cfg: FinetuneConfig, job: JobContext | None = None) -> dict[str, float] | None:
    """The film's detection rules ({`RULE_CANDIDATES` field: value}), chosen on its edited training
    frames, or None to keep the model's (no edited frame, or a model without the rules).

    One rule at a time, in `RULE_CANDIDATES` order, the others at their values so far: the value with
    the best gate score whose recall stays within RULE_RECALL_SLACK of the start model's rules
    (`pick_rule_value`, the floor fixed at the start, so the steps cannot add up to a larger loss).
    One rule at a time keeps the choice to 16 settings, not 216: cheaper at 2K, and less room to fit the
    few edited frames' noise.

    Why: the rules apply after the network, so fine-tuning cannot remove what they add (issue 13
    scenario 2: on a real clip with synthetic blotches the sure marks were 75 % of the false-positive
    pixels, and 60 steps left them all), nor the network's weak-evidence marks the lenient gate lets
    through. The choice is made on training frames, never on the validation frames, so the publish
    gate still judges the result on frames it did not see."""
    config = getattr(model, "config", None)
    edited = [f for f in data.train if f.edited]
    if config is None or not all(hasattr(config, name) for name in RULE_CANDIDATES) or not edited:
        return None
    from types import SimpleNamespace

    from correlnet.sdi import compensate_triplet
    from correlnet.temporal_gate import GateConfig, gate_config_of, gate_probs

    job = job_or_null(job)
    stop = "cancelled while choosing the film's detection rules; nothing was published"
    inference_model = prepare_for_inference(model, device)
    tiling = TilingConfig.for_tile(cfg.tile)
    triplets = [np.stack([data.frames[i] for i in f.indices]).astype(np.float32) for f in edited]
    raw, flows = [], []
    for t in triplets:  # at 2K a few seconds a frame: a cancel is heard between frames
        job.raise_if_cancelled(stop)
        raw.append(predict_triplet_tiled(inference_model, t, tiling, device, gate=False))
        flows.append(compensate_triplet(*t, GateConfig().flow))  # one flow serves every rule
    cache: dict[tuple, list[FrameScore]] = {}

    def frames_at(rules: dict[str, float]) -> list[FrameScore]:
        key = tuple(sorted(rules.items()))
        if key not in cache:
            job.raise_if_cancelled(stop)
            gate = gate_config_of(SimpleNamespace(config=replace(config, **rules)))
            cache[key] = [frame_score(gate_probs(p, *t, gate, compensation=c) >= cfg.threshold, f.target)
                          for p, t, c, f in zip(raw, triplets, flows, edited)]
        return cache[key]

    chosen = {name: getattr(config, name) for name in RULE_CANDIDATES}
    floors = _recalls(frames_at(chosen))
    for name, values in RULE_CANDIDATES.items():
        options = {v: frames_at({**chosen, name: v}) for v in dict.fromkeys((chosen[name], *values))}
        chosen[name] = pick_rule_value(options, chosen[name], floors)
    return chosen


def _rules_note(start: dict[str, float], chosen: dict[str, float]) -> str:
    """'; temporal gate at 0.05 (was 0.03), ... chosen on the edited training frames' ('' if unchanged)."""
    def say(name: str, value: float) -> str:
        return "off" if not value else (f"{value:g} px" if name == "mark_extent" else f"at {value:g}")

    changed = [f"{RULE_NAMES[n]} {say(n, v)} (was {say(n, start[n])})" for n, v in chosen.items() if v != start[n]]
    return f"; {', '.join(changed)} for this film, chosen on the edited training frames" if changed else ""


def train_only(model: nn.Module, parts: tuple[str, ...]) -> nn.Module:
    """Freeze every parameter outside the top-level modules named in `parts` (all train when empty).
    Raises ValueError naming an unknown part and the model's parts."""
    if not parts:
        return model
    children = dict(model.named_children())
    unknown = [p for p in parts if p not in children]
    if unknown:
        raise ValueError(f"train_only names {unknown}, not parts of this model: {sorted(children)}")
    for name, child in children.items():
        for param in child.parameters():
            param.requires_grad_(name in parts)
    return model


def keep_norm_statistics(model: nn.Module) -> nn.Module:
    """Freeze the batch-norm running statistics (momentum 0): a few crops of one film, most of them
    centred on defects, would otherwise overwrite the statistics learned over the whole pre-training
    set and shift every prediction at inference. Weights and biases still train."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0
    return model


def _evidence_counts(split: EvidenceSplit) -> str:
    return (f"{split.edited} edited frame(s), {len(split.validation)} of them for validation; "
            f"{len(split.train_accepted) + len(split.unused)} accepted-as-is frame(s), which never validate "
            "(their mask is the model's own proposal)")


def _too_few(film: Film, split: EvidenceSplit, cfg: FinetuneConfig) -> FinetuneOutcome:
    need = cfg.gate.min_frames - len(split.validation) + (0 if split.train_edited else 1)
    message = (f"not trained: the gate needs {cfg.gate.min_frames} edited validation frames and film {film.name!r} "
               f"has {len(split.validation)} ({_evidence_counts(split)}). Correct the model's mistakes on {need} "
               "more frame(s), or queue with force to train and publish without a gate decision")
    n_train = len(split.train_edited) + len(split.train_accepted)
    return FinetuneOutcome(None, float("nan"), float("nan"), n_train, len(split.validation), 0, message)


def run_finetune(store: Any, job_row: Any, device: torch.device, cfg: FinetuneConfig, job: JobContext,
                 default_model: Any = None) -> FinetuneOutcome:
    """Fine-tune job_row.film_id's active model on its corrections and publish when the gate says so.

    job: the job context (`correlnet.job_context`): training reports to it (done/total steps, loss,
    val_f1, eta), and a cancel stops the job at the next step, or before publishing, with JobCancelled.
    default_model: checkpoint a film with no model of its own starts from (None: the shipped one).
    Raises JobCancelled, FinetuneDataError (no edited frame to train on, bad masks), correlnet's
    TrainingDiverged (NaN loss) or CheckpointError; the active model is unchanged in all those cases.
    """
    with store.session() as s:
        film = s.get(Film, job_row.film_id)
    split = assign_validation(store, film.id, cfg.validation_fraction, cfg.gate.min_frames)
    if len(split.validation) < cfg.gate.min_frames and not job_row.force_publish:
        return _too_few(film, split, cfg)
    if not split.train_edited:
        raise FinetuneDataError(f"film {film.name!r} has no edited frame left to train on ({_evidence_counts(split)}): "
                                "correct the model's mistakes on a few more frames and queue training again")
    start = active_model_version(store, film, default_model)
    data = load_training_data(store, film, split)
    model = train_only(keep_norm_statistics(load_version_model(store, start, device)), cfg.train_only)
    # The film's rules are chosen with the start weights, which have not seen the edited frames: their
    # recall there predicts the recall on the film's other frames (after training on those frames the
    # network finds their defects by heart, and a rule that drops faint defects would look free).
    # The training then validates, and keeps its best weights, with the rules in place.
    config = getattr(model, "config", None)
    rules = choose_film_rules(model, data, device, cfg, job)
    start_rules = None if rules is None else {name: getattr(config, name) for name in rules}
    before = validation_scores(model, data.val_triplets, data.val_masks, device, cfg)  # the start detector
    if rules is not None and rules != start_rules:
        model.config = replace(model.config, **rules)
    after, best_step, result = _train(model, data, cfg, device, job, before)
    gate = decide(before, after, cfg.gate)
    job.report(val_f1=gate.after[0])
    n_train, n_val = len(data.train), len(data.val_masks)
    rules_note = "" if rules is None else _rules_note(start_rules, rules)
    summary = (f"{gate.summary()}; weights of step {best_step} of {result.steps_done} (best validation); trained on "
               f"{len(split.train_edited)} edited + {len(split.train_accepted)} accepted frame(s){rules_note}")
    if not gate.publish and not job_row.force_publish:
        return FinetuneOutcome(None, gate.before[0], gate.after[0], n_train, n_val, result.steps_done,
                               f"not published: {gate.reason}; {summary}; the film keeps model version {start.id} "
                               "(queue again with force to publish anyway)", gate)
    metrics = {**gate.metrics(), "train_frames": n_train, "train_edited_frames": len(split.train_edited),
               "train_accepted_frames": len(split.train_accepted), "steps": result.steps_done,
               "best_step": best_step, "final_loss": result.final_loss}
    job.raise_if_cancelled(f"cancelled after training ({result.steps_done} steps); nothing was published")
    version = publish_version(store, film, start, model, metrics, asdict(cfg), job_row.id, job_row.worker_id)
    forced = "" if gate.publish else f" (forced: {gate.reason})"
    return FinetuneOutcome(version, gate.before[0], gate.after[0], n_train, n_val, result.steps_done,
                           f"published model version {version.id}{forced}: {summary}", gate)


class _KeepBest:
    """train()'s val_fn: scores the model on the validation frames and keeps the weights of the best
    pass (of the last one when there are no validation frames).

    Best: the highest gate score among the passes whose validation recall, of pixels and of defects
    alike, stays within RULE_RECALL_SLACK of the start detector's (`before`: "without losing what the
    model already found"); only when no pass does, the highest score of all (the gate then judges it).
    `start(model)` scores the start weights (under the film's rules) before training, and `choose()`
    after it keeps them (pass -1, step 0) when they rank strictly above every trained pass: a
    fine-tune whose weights lose more than they gain leaves them unchanged, and a tie keeps the
    trained weights (the publish gate refuses a tie anyway; a forced publish gets what was trained).
    Measured (docs/benchmarks.md, "Session 12"): in issue 13's scenario 2 the weights of step 20 had
    cost 0.015 of recall on the uncorrected frames for 7 % fewer false-positive pixels."""

    def __init__(self, scores: Any, before: list[FrameScore]):
        self._scores, self.scores = scores, before
        self._floors = _recalls(before) if before else None
        self.best, self.weights, self.passes, self.best_pass = (False, -math.inf), None, 0, None
        self._start: tuple | None = None

    def start(self, model: nn.Module) -> None:
        current = self._scores(model)
        self._start = (self._rank(current), current, self._copy(model))

    def __call__(self, model: nn.Module) -> dict[str, float]:
        current = self._scores(model)
        rank = self._rank(current)
        if rank > self.best or not current:
            self.best, self.scores, self.best_pass, self.weights = rank, current, self.passes, self._copy(model)
        self.passes += 1
        return {"f1": pooled(current)[0]} if current else {}

    def choose(self) -> None:
        """After training: the start weights instead of the best trained pass when they rank above it."""
        if self._start is not None and (self.weights is None or self._start[0] > self.best):
            self.best, self.scores, self.weights = self._start
            self.best_pass = -1

    def _rank(self, current: list[FrameScore]) -> tuple[bool, float]:
        kept = self._floors is None or (bool(current) and all(
            r >= f - RULE_RECALL_SLACK for r, f in zip(_recalls(current), self._floors)))
        return kept, (pooled(current)[2] if current else 0.0)

    @staticmethod
    def _copy(model: nn.Module) -> dict:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _train(model: nn.Module, data: _TrainingData, cfg: FinetuneConfig, device: torch.device,
           job: JobContext, before: list[FrameScore]) -> tuple[list[FrameScore], int, Any]:
    """Train with progress, cancellation and `cfg.validations` validation passes, and leave `model`
    holding the best pass's weights: (scores of the kept weights, their step, TrainResult). `before`:
    the start detector's validation scores (reported as the starting val_f1). Raises JobCancelled when
    `job` is cancelled before or during training."""
    tcfg = cfg.train_config()

    def scores(m: nn.Module) -> list[FrameScore]:
        return validation_scores(m, data.val_triplets, data.val_masks, device, cfg)

    job.report(done=0, total=total_steps(tcfg, None), unit="step", **({"val_f1": pooled(before)[0]} if before else {}))
    job.raise_if_cancelled("cancelled before training started; nothing was published")
    keep = _KeepBest(scores, before)
    if before:
        keep.start(model)
    crops = CorrectionCrops(data.frames, data.train, tcfg.steps * cfg.batch_size, cfg)
    loader = DataLoader(crops, batch_size=cfg.batch_size, shuffle=False, num_workers=0)
    result = train(model, loader, tcfg, device, job=job, val_fn=keep)
    if result.stopped:
        raise JobCancelled(f"cancelled at step {result.steps_done} of {result.total_steps}; nothing was published")
    keep.choose()
    if keep.weights is not None:
        model.load_state_dict(keep.weights)
    # train() records one val_history entry per val_fn pass, in order: the best pass's step
    best_step = 0 if keep.best_pass in (None, -1) else result.val_history[keep.best_pass][0]
    return keep.scores, best_step, result


