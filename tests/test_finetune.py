"""Fine-tuning: what counts as evidence, the fixed validation split of edited frames, the crops, the
gate (pixels and blobs, bootstrap, ties, too few frames) and that an erased false positive is unlearnt."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sqlalchemy import select
from torch.utils.data import DataLoader

from correlnet.checkpoint import load_model, save_checkpoint
from correlnet.job_context import CallbackJob, JobCancelled, JobContext, NullJob
from correlnet.metrics import PixelCounts
from correlnet.prediction import predict_triplet_tiled
from correlnet.tiling import TilingConfig
from correlnet.train import TrainConfig, train
from db.models import Film, Frame, ModelVersion
from db.store import Store
from studio import finetune, jobs
from studio.corrections import accept_prediction, reset_to_prediction, save_correction
from studio.crop_sampler import CorrectionCrops, TrainFrame
from studio.detection import detect_film
from studio.versions import active_model_version, load_version_model
from studio.evidence import ACCEPTED, EDITED, assign_validation, film_evidence, hash_unit
from studio.films import film_frames, import_film
from studio.finetune import FinetuneConfig, run_finetune
from correlnet.metrics import count_blobs
from studio.publish_gate import FrameScore, PublishGateConfig, decide
from studio.settings import Settings
from tests.model_fixtures import tiny_model
from tests.worker_fixtures import make_tiny_film


def validation_indices(store, film_id: int) -> set[int]:
    with store.session() as s:
        return set(s.execute(select(Frame.index).where(Frame.film_id == film_id, Frame.is_validation)).scalars())


def predicted_tiny_film(tmp_path: Path):
    """The tiny film with the start model's proposals stored, nothing corrected yet."""
    tf = make_tiny_film(tmp_path, corrected=())
    detect_film(tf.store, tf.film, model_version=active_model_version(tf.store, tf.film, tf.model_path), device="cpu")
    return tf


def test_validation_split_is_fixed_and_new_frames_are_assigned_once(tmp_path: Path) -> None:
    tf = make_tiny_film(tmp_path, corrected=(0, 1, 2))
    split = assign_validation(tf.store, tf.film.id, fraction=0.2, min_frames=3)
    # topped up towards 3 validation frames, but one edited frame is always left to train on
    assert len(split.validation) == 2 and len(split.train_edited) == 1
    first = validation_indices(tf.store, tf.film.id)
    assert {e.frame.index for e in split.validation} == first
    # a second call (the next retrain) keeps the split; with more corrections it only grows
    assign_validation(tf.store, tf.film.id, fraction=0.2, min_frames=3)
    assert validation_indices(tf.store, tf.film.id) == first
    for i in (3, 4, 5, 6, 7):
        save_correction(tf.store, tf.frames[i].id, tf.masks[i], author="test")
    split2 = assign_validation(tf.store, tf.film.id, fraction=0.2, min_frames=3)
    assert first <= {e.frame.index for e in split2.validation} and len(split2.validation) >= 3
    assert {e.frame.index for e in split2.train_edited}.isdisjoint(first)
    # frames whose hash falls under the fraction validate in any store: a pure function of (film, index)
    hashed = {i for i in range(8) if hash_unit(tf.film.id, i) < 0.2}
    fresh = make_tiny_film(tmp_path / "again", corrected=tuple(range(8)))
    with fresh.store.write() as s:  # same film id in a fresh store
        assert s.get(Film, fresh.film.id).id == tf.film.id
    split3 = assign_validation(fresh.store, fresh.film.id, fraction=0.2, min_frames=3)
    assert hashed <= {e.frame.index for e in split3.validation} and hashed <= {e.frame.index for e in split2.validation}


def test_accepted_frames_never_validate(tmp_path: Path) -> None:
    tf = predicted_tiny_film(tmp_path)
    for frame in tf.frames:  # every frame accepted as is: the model's own proposal
        accept_prediction(tf.store, frame.id, author="test")
    split = assign_validation(tf.store, tf.film.id, fraction=0.5, min_frames=3)
    assert split.validation == [] and split.train_edited == [] and validation_indices(tf.store, tf.film.id) == set()
    assert len(split.train_accepted) == len(tf.frames)
    job = jobs.queue_training(tf.store, tf.film.id)
    outcome = run_finetune(tf.store, job, torch.device("cpu"), FinetuneConfig.cpu(steps=2, crop=32),
                           CallbackJob(lambda **kw: pytest.fail("must not train")), tf.model_path)
    assert outcome.published is None and outcome.gate is None
    assert "not trained" in outcome.message and "needs 3 edited validation frames" in outcome.message
    assert "has 0" in outcome.message and f"{len(tf.frames)} accepted-as-is frame(s)" in outcome.message
    # Edits make frames evidence: an "accept" of an edited mask stays EDITED (its kind is not what counts)
    for i in (1, 2, 3, 4):
        save_correction(tf.store, tf.frames[i].id, tf.masks[i], author="test")
    save_correction(tf.store, tf.frames[2].id, tf.masks[2], author="test", kind="accept")
    with tf.store.session() as s:
        kinds = {e.frame.index: e.kind for e in film_evidence(s, tf.film.id)}
    assert [i for i, k in kinds.items() if k == EDITED] == [1, 2, 3, 4]
    split = assign_validation(tf.store, tf.film.id, fraction=0.5, min_frames=3)
    assert {e.frame.index for e in split.validation} <= {1, 2, 3, 4} and len(split.validation) == 3
    # a validation frame reset to the proposal leaves validation (and does not train either)
    gone = split.validation[0].frame
    reset_to_prediction(tf.store, gone.id, author="test")
    split = assign_validation(tf.store, tf.film.id, fraction=0.5, min_frames=3)
    assert gone.index not in {e.frame.index for e in split.validation + split.train_accepted + split.train_edited}
    assert [e.kind for e in split.unused] == [ACCEPTED] and all(e.kind == EDITED for e in split.validation)


def _crops_film(h: int = 200, w: int = 300):
    rng = np.random.default_rng(1)
    frames = {i: rng.random((h, w)).astype(np.float16) for i in range(3)}
    target = np.zeros((h, w), bool)
    target[20:24, 20:24] = True  # a defect the model found (kept)
    target[150:153, 250:253] = True  # a miss the restorer added
    proposal = np.zeros((h, w), bool)
    proposal[20:24, 20:24] = True
    proposal[100:110, 140:142] = True  # a false positive the restorer erased
    return frames, target, proposal


def test_disagreement_crops_cover_the_disagreement_at_the_documented_rate() -> None:
    frames, target, proposal = _crops_film()
    cfg = FinetuneConfig(crop=64, disagreement_crop_fraction=0.5, defect_crop_fraction=0.25)
    crops = CorrectionCrops(frames, [TrainFrame((0, 1, 2), target, True, proposal)], length=2000, cfg=cfg)
    erased, added = proposal & ~target, target & ~proposal
    kinds = {"disagreement": 0, "defect": 0, "elsewhere": 0}
    sides = [0, 0]
    for i in range(2000):
        win = crops.window(i)
        kinds[win.kind] += 1
        rows, cols = slice(win.y, win.y + 64), slice(win.x, win.x + 64)
        if win.kind == "disagreement":
            hit = erased[rows, cols].any(), added[rows, cols].any()
            assert any(hit)  # every disagreement crop covers disagreement pixels
            sides[0] += hit[0]
            sides[1] += hit[1]
        elif win.kind == "defect":
            assert target[rows, cols].any()
    # binomial: 2000 draws at p = 0.5 and 0.25 have sd 0.011 and 0.010; 4 sd of slack
    assert abs(kinds["disagreement"] / 2000 - 0.5) < 0.045 and abs(kinds["defect"] / 2000 - 0.25) < 0.04
    assert abs(sides[0] / kinds["disagreement"] - 0.5) < 0.07  # erased and added share the disagreement crops
    item = crops[5]
    assert item["frames"].shape == (3, 64, 64) and item["mask"].shape == (1, 64, 64)
    assert torch.equal(item["frames"], crops[5]["frames"]) and torch.equal(item["mask"], crops[5]["mask"])
    # without a stored proposal, the disagreement share goes to defect crops
    no_proposal = CorrectionCrops(frames, [TrainFrame((0, 1, 2), target, True)], length=400, cfg=cfg)
    assert {no_proposal.window(i).kind for i in range(400)} == {"defect", "elsewhere"}


def test_synthetic_crops_add_labelled_defects_to_the_film_and_keep_the_restorers_mask() -> None:
    frames, target, proposal = _crops_film()
    cfg = FinetuneConfig(crop=64, disagreement_crop_fraction=0.0, defect_crop_fraction=0.0, synthetic_crop_fraction=0.6)
    crops = CorrectionCrops(frames, [TrainFrame((0, 1, 2), target, True, proposal)], length=400, cfg=cfg)
    kinds = [crops.window(i).kind for i in range(400)]
    assert abs(kinds.count("synthetic") / 400 - 0.6) < 0.1 and set(kinds) == {"synthetic", "elsewhere"}
    added = 0
    for i in [i for i, k in enumerate(kinds) if k == "synthetic"][:40]:
        win, item = crops.window(i), crops[i]
        rows, cols = slice(win.y, win.y + 64), slice(win.x, win.x + 64)
        orig = np.stack([frames[j][rows, cols] for j in (0, 1, 2)]).astype(np.float32)
        mid, mask = item["frames"][1].numpy(), item["mask"][0].numpy() > 0.5
        # the crop is flipped at random: find the flip under which it is the film's own crop off the marks
        for flip in (lambda a: a, lambda a: a[:, ::-1], lambda a: a[::-1], lambda a: a[::-1, ::-1]):
            if np.array_equal(mid[~mask], flip(orig[1])[~mask]):
                break
        else:
            raise AssertionError(f"crop {i}: pixels off the mask differ from the film's frame")
        assert (flip(target[rows, cols]) <= mask).all()  # the restorer's defects stay targets
        added += int(mask.sum() - target[rows, cols].sum())
        assert np.abs(mid - flip(orig[1]))[mask & ~flip(target[rows, cols])].min(initial=1.0) >= 0.05 - 1e-6
    assert added > 0  # synthetic defects were drawn and labelled
    with pytest.raises(ValueError, match="synthetic_crop_fraction"):
        FinetuneConfig(disagreement_crop_fraction=0.5, defect_crop_fraction=0.25, synthetic_crop_fraction=0.5)


def test_accepted_frames_give_only_unmarked_crops() -> None:
    frames, target, proposal = _crops_film()
    accepted = proposal.copy()
    accepted[:, 150:152] = True  # marks of the model nobody checked: never inside an accepted crop
    cfg = FinetuneConfig(crop=64, disagreement_crop_fraction=0.0, defect_crop_fraction=0.0)
    samples = [TrainFrame((0, 1, 2), target, True, proposal), TrainFrame((0, 1, 2), accepted, False)]
    crops = CorrectionCrops(frames, samples, length=400, cfg=cfg)
    from_accepted = 0
    for i in range(400):
        win = crops.window(i)
        if win.frame == 1:
            from_accepted += 1
            assert not accepted[win.y:win.y + 64, win.x:win.x + 64].any()
            assert crops[i]["mask"].sum() == 0
    assert 120 < from_accepted < 280  # "elsewhere" crops: a frame drawn uniformly
    with pytest.raises(ValueError, match="edited"):
        CorrectionCrops(frames, [TrainFrame((0, 1, 2), accepted, False)], length=4, cfg=cfg)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        FinetuneConfig(validation_fraction=1.0)
    with pytest.raises(ValueError):
        FinetuneConfig(steps=0)
    with pytest.raises(ValueError):
        FinetuneConfig(disagreement_crop_fraction=0.8, defect_crop_fraction=0.3)
    with pytest.raises(ValueError):
        PublishGateConfig(min_frames=1)
    assert FinetuneConfig().lr == 1e-6 and FinetuneConfig.cpu().lr == 5e-5
    assert FinetuneConfig().synthetic_crop_fraction == 0.0 and FinetuneConfig.cpu().synthetic_crop_fraction == 0.2
    assert FinetuneConfig.for_device(torch.device("cpu")) == FinetuneConfig.cpu()


def _score(tp: int, fp: int, fn: int, blobs: tuple[int, int, int] = (1, 0, 0)) -> FrameScore:
    return FrameScore(PixelCounts(tp, fp, fn), PixelCounts(*blobs))


def test_blob_counts() -> None:
    true = np.zeros((20, 20), bool)
    true[2:4, 2:4] = True  # found
    true[10:12, 10:12] = True  # missed
    pred = np.zeros((20, 20), bool)
    pred[3:6, 3:6] = True  # touches the first
    pred[15, 15] = True  # a false alarm
    assert count_blobs(pred, true) == PixelCounts(1, 1, 1)
    assert count_blobs(np.zeros_like(pred), np.zeros_like(true)) == PixelCounts(0, 0, 0)


def test_gate_decides_with_frame_count_and_uncertainty() -> None:
    before = [_score(80, 40, 20), _score(50, 30, 10), _score(60, 10, 30)]
    better = [_score(90, 10, 10), _score(55, 5, 5), _score(80, 5, 10)]
    result = decide(before, better)
    assert result.decided and result.publish and result.p_better == 1.0 and result.gain > 0
    assert result.interval[0] > 0 and result.interval[0] <= result.gain <= result.interval[1]
    text = result.summary()
    assert "on 3 edited validation frame(s)" in text and "90% interval" in text and "better in 100%" in text
    metrics = result.metrics()
    assert metrics["val_frames"] == 3 and metrics["val_gain_low"] <= metrics["val_gain"] <= metrics["val_gain_high"]
    # a tie does not publish, "0.000 -> 0.000" included
    nothing = [_score(0, 0, 10, (0, 0, 1))] * 3
    tie = decide(nothing, nothing)
    assert tie.decided and not tie.publish and "tie" in tie.reason and "0.000 -> 0.000" in tie.summary()
    assert not decide(before, before).publish
    # one frame much better, two a little worse: not sure enough
    mixed = decide(before, [_score(100, 0, 0), _score(48, 32, 12), _score(58, 12, 32)])
    assert not mixed.publish and (mixed.gain < 0 or mixed.p_better < 0.8)
    # too few frames: no decision, and it says how many there are
    few = decide(before[:2], better[:2])
    assert not few.decided and not few.publish and "2, the gate needs 3" in few.reason


def test_too_few_edited_validation_frames_does_not_train_and_says_so(tmp_path: Path) -> None:
    tf = make_tiny_film(tmp_path, corrected=(3, 5))
    job = jobs.queue_training(tf.store, tf.film.id)
    outcome = run_finetune(tf.store, job, torch.device("cpu"), FinetuneConfig.cpu(steps=2, crop=32),
                           CallbackJob(lambda **kw: pytest.fail("must not train")), tf.model_path)
    assert outcome.published is None and outcome.steps == 0
    assert "not trained" in outcome.message and "needs 3 edited validation frames" in outcome.message
    assert "has 1 (2 edited frame(s)" in outcome.message and "2 more frame(s)" in outcome.message


@pytest.mark.parametrize("force", [False, True])
def test_tie_and_drop_are_not_published_unless_forced(tmp_path: Path, monkeypatch, force: bool) -> None:
    tf = make_tiny_film(tmp_path)
    same = [_score(10, 5, 5), _score(8, 2, 4), _score(9, 3, 3)]
    monkeypatch.setattr(finetune, "validation_scores", lambda *a, **k: list(same))
    job = jobs.queue_training(tf.store, tf.film.id, force=force)
    calls = []
    outcome = run_finetune(tf.store, job, torch.device("cpu"), FinetuneConfig.cpu(steps=2, batch_size=2, crop=32),
                           CallbackJob(lambda **kw: calls.append(kw)), tf.model_path)
    assert outcome.f1_before == outcome.f1_after and not outcome.gate.publish and "tie" in outcome.gate.reason
    assert calls[0]["done"] == 0 and calls[0]["val_f1"] == outcome.f1_before
    assert [c["done"] for c in calls if "done" in c] == [0, 1, 2] and calls[-1] == {"val_f1": outcome.f1_after}
    with tf.store.session() as s:
        film_versions = s.execute(select(ModelVersion).where(ModelVersion.film_id == tf.film.id)).scalars().all()
        active = s.get(Film, tf.film.id).active_model_version_id
    if force:
        assert outcome.published is not None and active == outcome.published.id
        assert "forced: a tie" in outcome.message and "on 3 edited validation frame(s)" in outcome.message
        assert outcome.published.metrics["val_frames"] == 3 and "val_gain_low" in outcome.published.metrics
    else:
        assert outcome.published is None and outcome.message.startswith("not published: a tie")
        assert "on 3 edited validation frame(s)" in outcome.message and "interval" in outcome.message
        assert film_versions == [] and active is None
        assert not (tf.store.data_dir / "models").exists()  # no model file either


# ---- learning: an erased false positive is unlearnt on the film's other frames ----------------

BAR_H, BAR_W, BAR_FRAMES = 32, 64, 10


def _bar_film(folder: Path) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """A panning texture with a bright vertical bar in the scene (it moves with the picture, so it is
    no defect) and one dark blotch per frame away from the bar. Returns (clip, defect masks, bar masks)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    base = cv2.GaussianBlur(rng.random((BAR_H + 40, BAR_W + 40)).astype(np.float32), (0, 0), 3)
    base = (base - base.min()) / (base.max() - base.min()) * 0.5 + 0.3
    base[:, 30:33] = 0.95
    clip, defects, bars = [], [], []
    for i in range(BAR_FRAMES):
        img = base[i:i + BAR_H, i:i + BAR_W].copy()
        bar = np.zeros((BAR_H, BAR_W), bool)
        bar[:, 30 - i:33 - i] = True
        mask = np.zeros((BAR_H, BAR_W), bool)
        cy, cx = rng.integers(6, BAR_H - 6), rng.integers(8, BAR_W - 8)
        while abs(cx - (31 - i)) < 8:
            cx = rng.integers(8, BAR_W - 8)
        cv2.circle(mask.view(np.uint8), (int(cx), int(cy)), 4, 1, -1)
        img[mask] = 0.05
        cv2.imwrite(str(folder / f"frame_{i + 1:03d}.png"), np.round(img * 255).astype(np.uint8))
        clip.append(np.round(img * 255) / 255)
        defects.append(mask)
        bars.append(bar)
    return np.stack(clip).astype(np.float32), defects, bars


def _bar_start_model(clip: np.ndarray, defects: list[np.ndarray], bars: list[np.ndarray], path: Path) -> Path:
    """A start model that took the bar for a defect: 30 steps of lr 3e-2 on masks = blotch + bar (seed 0;
    other seeds may not learn the bar in 30 steps)."""
    torch.manual_seed(0)
    model = tiny_model("efficient-correlnet")
    n = len(clip)
    items = [{"frames": torch.from_numpy(clip[[max(i - 1, 0), i, min(i + 1, n - 1)]]),
              "mask": torch.from_numpy((defects[i] | bars[i])[None].astype(np.float32))} for i in range(n)]
    train(model, DataLoader(items, batch_size=5, shuffle=True),
          TrainConfig(steps=30, lr=3e-2, warmup_steps=0, checkpoint_every=30), torch.device("cpu"))
    return save_checkpoint(path, model)


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from a second thread, and on a loaded machine two threads spin against
    other processes (measured: 5 s with one thread, 36-88 s with two while a training run held the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_an_erased_false_positive_is_unlearnt_on_a_held_out_frame(tmp_path: Path, one_thread) -> None:
    clip, defects, bars = _bar_film(tmp_path / "src")
    start = _bar_start_model(clip, defects, bars, tmp_path / "start.pt")
    settings = Settings(data_dir=tmp_path / "data", device="cpu", default_model=start, retrain_after=0)
    store = Store.open(settings)
    film = import_film(store, tmp_path / "src", name="bar")
    frames = film_frames(store, film)
    detect_film(store, film, model_version=active_model_version(store, film, start), device="cpu")
    held = frames[8]  # never corrected

    def probs_at(model) -> tuple[float, float]:
        triplet = clip[[held.prev_index, held.index, held.next_index]]
        probs = predict_triplet_tiled(model.eval(), triplet, TilingConfig(), torch.device("cpu"))
        return float(probs[bars[8]].mean()), float(probs[defects[8]].mean())

    bar_before, defect_before = probs_at(load_model(start))
    assert bar_before > 0.6  # the start model flags the bar (the setting of this test)
    for i in range(6):  # the restorer erases the bar and keeps the blotch
        save_correction(store, frames[i].id, defects[i], author="restorer")
    for i in (6, 7):  # and waves two frames through: their marks (the bar included) must not teach it back
        accept_prediction(store, frames[i].id, author="restorer")
    job = jobs.queue_training(store, film.id)
    cfg = FinetuneConfig.cpu(steps=10, batch_size=4, crop=32, lr=3e-3, warmup_steps=0, validations=1)
    outcome = run_finetune(store, job, torch.device("cpu"), cfg, NullJob(), start)
    assert outcome.published is not None, outcome.message
    assert "trained on 3 edited + 2 accepted frame(s)" in outcome.message
    bar_after, defect_after = probs_at(load_version_model(store, outcome.published))
    # measured: bar 0.73 -> 0.22, blotch 0.50 -> 0.86
    assert bar_after < 0.5 and bar_after < bar_before - 0.25
    assert defect_after > bar_after + 0.2  # the true defect of that frame is still found
    store.close()


def _speck_training_data(keep_speck: bool):
    """A static textured scene (three frames equal up to noise) with a bright 4x4 speck in the middle
    frame only: the sure one-frame rule marks it. The restorer's edited mask keeps it or erases it."""
    rng = np.random.default_rng(3)
    scene = cv2.GaussianBlur(rng.random((96, 128)).astype(np.float32), (0, 0), 3) * 0.6 + 0.2
    frames = {i: np.clip(scene + rng.normal(0, 0.004, scene.shape), 0, 1).astype(np.float16) for i in range(3)}
    mid = frames[1].astype(np.float32)
    mid[40:44, 60:64] += 0.3
    frames[1] = mid.astype(np.float16)
    target = np.zeros(scene.shape, bool)
    if keep_speck:
        target[40:44, 60:64] = True
    train = [TrainFrame((0, 1, 2), target, True)]
    return finetune._TrainingData(frames, train, [], [])


@pytest.mark.parametrize("keep_speck, expected", [(False, 0.0), (True, 0.09)])
def test_the_film_version_chooses_its_sure_marks_from_the_edited_frames(keep_speck, expected):
    torch.manual_seed(0)
    model = tiny_model("efficient-correlnet", temporal_gate=0.03, sure_marks=0.09).eval()
    with torch.no_grad():
        model.decoder.logits.bias.fill_(-30.0)  # the network flags nothing: only the rule marks the speck
    data = _speck_training_data(keep_speck)
    cfg = FinetuneConfig()
    # The rule does mark the speck, so erasing it is a false positive the weights could never unlearn.
    probs = predict_triplet_tiled(model, np.stack([data.frames[i] for i in range(3)]).astype(np.float32),
                                  TilingConfig(), torch.device("cpu"))
    assert (probs >= 0.5)[40:44, 60:64].all() and (probs >= 0.5).sum() <= 30
    assert finetune.choose_film_rules(model, data, torch.device("cpu"), cfg)["sure_marks"] == expected
    assert finetune.choose_film_rules(model, finetune._TrainingData(data.frames, [], [], []),
                                     torch.device("cpu"), cfg) is None  # no edited frame: keep the model's


@pytest.mark.parametrize("rim_is_dirt", [True, False])
def test_the_film_version_chooses_the_marks_extent_from_the_edited_frames(rim_is_dirt):
    """A speck with a faint rim (+0.08: visible, below the sure rule's 0.09): the sure mark covers the
    core, the extent the rim (its corners are two 4-connected steps away: 2 px). A restorer who keeps the rim gets the extent; one who erases it
    (e.g. a film whose mattes are the cores only) gets none."""
    torch.manual_seed(0)
    model = tiny_model("efficient-correlnet", temporal_gate=0.03, sure_marks=0.09, mark_extent=1).eval()
    with torch.no_grad():
        model.decoder.logits.bias.fill_(-30.0)  # the network flags nothing: only the rules mark
    data = _speck_training_data(keep_speck=True)
    mid = data.frames[1].astype(np.float32)
    rim = np.zeros(mid.shape, bool)
    rim[39:45, 59:65] = True
    rim[40:44, 60:64] = False
    mid[rim] += 0.08
    data.frames[1] = mid.astype(np.float16)
    if rim_is_dirt:
        data.train[0].target[rim] = True
    chosen = finetune.choose_film_rules(model, data, torch.device("cpu"), FinetuneConfig())
    assert chosen["mark_extent"] == (2 if rim_is_dirt else 0)
    assert chosen["sure_marks"] == 0.09 and chosen["temporal_gate"] == 0.03
    note = finetune._rules_note({"temporal_gate": 0.03, "sure_marks": 0.09, "mark_extent": 1, "mark_extent_fraction": 0.0}, chosen)
    assert note == f"; mark extent {'2 px' if rim_is_dirt else 'off'} (was 1 px) for this film, chosen on the edited training frames"


def test_a_film_of_hard_edged_blotches_chooses_the_extent_share_and_keeps_its_specks_rims():
    """Two defects the restorer marks as they are: a faint speck (core +0.2) whose soft rim (+0.08,
    0.4 of its core) belongs to it, and a strong hard-edged blotch (+0.6) with a +0.1 fringe around it
    that is not dirt (a sixth of the blotch: the flow's fringe). Extent 1 px covers the speck's rim but
    also marks the fringe; no extent loses the rim (recall); growing only into pixels with at least
    0.3 or 0.5 of the mark's own score keeps the rim and drops the fringe."""
    torch.manual_seed(0)
    model = tiny_model("efficient-correlnet", temporal_gate=0.03, sure_marks=0.09, mark_extent=1).eval()
    with torch.no_grad():
        model.decoder.logits.bias.fill_(-30.0)  # only the rules mark
    data = _speck_training_data(keep_speck=False)
    mid = data.frames[0].astype(np.float32).copy()
    target = np.zeros(mid.shape, bool)
    for (y, x), core, rim in (((30, 30), 0.2, 0.08), ((60, 90), 0.6, 0.1)):
        ring = np.zeros(mid.shape, bool)
        ring[y - 1 : y + 5, x - 1 : x + 5] = True
        ring[y : y + 4, x : x + 4] = False
        mid[y : y + 4, x : x + 4] += core
        mid[ring] += rim
        target[y : y + 4, x : x + 4] = True
        if core < 0.5:
            target[ring] = True  # the speck's rim is part of it
    data.frames[1] = np.clip(mid, 0, 1).astype(np.float16)
    data.train[0] = TrainFrame((0, 1, 2), target, True)
    chosen = finetune.choose_film_rules(model, data, torch.device("cpu"), FinetuneConfig())
    assert chosen["mark_extent"] >= 1 and chosen["mark_extent_fraction"] in (0.3, 0.5)
    film = tiny_model("efficient-correlnet", **chosen).eval()
    film.load_state_dict(model.state_dict())
    triplet = np.stack([data.frames[i] for i in range(3)]).astype(np.float32)
    marked = predict_triplet_tiled(film, triplet, TilingConfig(), torch.device("cpu")) >= 0.5
    assert marked[target].mean() > 0.9  # both cores and the speck's rim
    assert marked[~target].sum() <= 4  # not the blotch's fringe (20 pixels)
    film.config = dataclasses.replace(film.config, mark_extent_fraction=0.0)  # the same rules without the share
    plain = predict_triplet_tiled(film, triplet, TilingConfig(), torch.device("cpu")) >= 0.5
    assert plain[~target].sum() >= 12  # it grows into the fringe


def test_the_rules_recall_floor_is_the_start_one_for_every_step(monkeypatch):
    monkeypatch.setattr(finetune, "RULE_RECALL_SLACK", 0.02)  # the figures below are written for 0.02
    from correlnet.metrics import PixelCounts
    from studio.publish_gate import FrameScore

    def frame(tp, fp, fn):
        return FrameScore(PixelCounts(tp, fp, fn), PixelCounts(tp // 10, fp // 10, fn // 10))

    # After an earlier step lost 0.015 of recall (0.80 -> 0.785), a value losing 0.015 more is within
    # 0.02 of the step's current value but not of the start (0.80): refused against the start's floor.
    scores = {"now": [frame(785, 100, 215)], "stricter": [frame(770, 10, 230)]}
    assert finetune.pick_rule_value(scores, "now") == "stricter"
    assert finetune.pick_rule_value(scores, "now", floors=(0.80, 0.80)) == "now"


class CancelWhen(JobContext):
    """Keeps every report; cancelled from the first report for which `when(fields)` holds."""

    def __init__(self, when):
        self.when, self.reports, self._cancelled = when, [], False

    def _record(self, fields) -> None:
        self.reports.append(fields)
        self._cancelled = self._cancelled or self.when(fields)

    @property
    def cancelled(self) -> bool:
        return self._cancelled


@pytest.mark.parametrize("cancel_at,message,dones", [
    (0, "cancelled before training started", [0]),
    (1, "cancelled at step 1 of 2", [0, 1]),
    (2, r"cancelled after training \(2 steps\)", [0, 1, 2]),  # training is complete: the gate's turn
])
def test_a_cancel_publishes_nothing_at_any_stage(tmp_path: Path, cancel_at: int, message: str, dones: list) -> None:
    tf = make_tiny_film(tmp_path)
    job = jobs.queue_training(tf.store, tf.film.id, force=True)  # would publish whatever the gate says
    context = CancelWhen(lambda f: f.get("done") == cancel_at)
    with pytest.raises(JobCancelled, match=message + ".*nothing was published"):
        run_finetune(tf.store, job, torch.device("cpu"), FinetuneConfig.cpu(steps=2, batch_size=2, crop=32),
                     context, tf.model_path)
    assert [r["done"] for r in context.reports if "done" in r] == dones
    with tf.store.session() as s:
        assert s.execute(select(ModelVersion).where(ModelVersion.film_id == tf.film.id)).scalars().all() == []
        assert s.get(Film, tf.film.id).active_model_version_id is None
    assert not (tf.store.data_dir / "models").exists()


def test_a_cancel_while_the_film_rules_are_chosen_publishes_nothing(tmp_path: Path) -> None:
    tf = make_tiny_film(tmp_path)
    job = jobs.queue_training(tf.store, tf.film.id, force=True)
    context = CancelWhen(lambda f: False)
    context._cancelled = True  # cancelled as the job starts: the rule choice is the first long step
    with pytest.raises(JobCancelled, match="while choosing the film's detection rules; nothing was published"):
        run_finetune(tf.store, job, torch.device("cpu"), FinetuneConfig.cpu(steps=2, batch_size=2, crop=32),
                     context, tf.model_path)
    assert context.reports == []  # no training step was reported
    with tf.store.session() as s:
        assert s.execute(select(ModelVersion).where(ModelVersion.film_id == tf.film.id)).scalars().all() == []
    assert not (tf.store.data_dir / "models").exists()


def test_the_sure_marks_choice_keeps_the_recall_of_the_edited_frames(monkeypatch):
    monkeypatch.setattr(finetune, "RULE_RECALL_SLACK", 0.02)  # the figures below are written for 0.02
    from correlnet.metrics import PixelCounts
    from studio.publish_gate import FrameScore

    def frame(tp, fp, fn):  # pixels and blobs alike (blob counts = pixel counts / 10)
        return FrameScore(PixelCounts(tp, fp, fn), PixelCounts(tp // 10, fp // 10, fn // 10))

    # 0.09: recall 100/120 = 0.833 with 80 false-positive pixels. 0.16 removes 70 of them but loses 10
    # true pixels (recall 0.75, -0.083): best F1 (0.80 vs 0.69), refused. 0.12 loses 2 (0.817, -0.017): kept
    # (its defects: 9 of 11 found, 10 of 12 at 0.09: -0.015).
    scores = {0.09: [frame(100, 80, 20)], 0.12: [frame(98, 50, 22)], 0.16: [frame(90, 10, 30)], 0.0: [frame(40, 0, 80)]}
    assert finetune.pick_rule_value(scores, 0.09) == 0.12
    del scores[0.12]
    assert finetune.pick_rule_value(scores, 0.09) == 0.09  # nothing admissible beats the current setting
    # Frames with no true defect (the restorer erased everything): recall puts no floor, the best score wins.
    empty = {0.09: [frame(0, 80, 0)], 0.16: [frame(0, 10, 0)], 0.0: [frame(0, 0, 0)]}
    assert finetune.pick_rule_value(empty, 0.09) == 0.0
    # A faint defect lost whole: pixel recall barely moves (200/210 -> 198/210), defect recall 3/4 -> 2/4.
    def counts(px, blobs):
        return FrameScore(PixelCounts(*px), PixelCounts(*blobs))

    faint = {0.09: [counts((200, 80, 10), (3, 4, 1))], 0.16: [counts((198, 10, 12), (2, 1, 2))]}
    assert finetune.pick_rule_value(faint, 0.09) == 0.09


def test_train_only_freezes_the_other_parts():
    model = tiny_model("efficient-correlnet")
    assert finetune.train_only(model, ()) is model and all(p.requires_grad for p in model.parameters())
    finetune.train_only(model, ("decoder",))
    assert all(p.requires_grad for p in model.decoder.parameters())
    assert not any(p.requires_grad for name, c in model.named_children() if name != "decoder" for p in c.parameters())
    with pytest.raises(ValueError, match="encoder.*not parts of this model"):
        finetune.train_only(model, ("encoder",))


def test_the_kept_weights_keep_the_start_recall_and_may_be_the_start_ones():
    """The best validation pass is the best score among the passes within RULE_RECALL_SLACK of the start
    detector's recall (pixels and defects); the start weights (under the film's rules) are a pass of
    their own, so weights that buy precision with the film's defects are not kept."""
    from correlnet.metrics import PixelCounts
    from studio.publish_gate import FrameScore, pooled

    def frame(tp, fp, fn):
        return FrameScore(PixelCounts(tp, fp, fn), PixelCounts(tp // 10, fp // 10, fn // 10))

    before = [frame(900, 400, 100)]  # the start detector with the start rules: recall 0.90
    runs = {
        # start weights under the film's rules (fewer marks, recall 0.89), then a pass that gains
        # precision but loses 0.05 of recall, then one within the slack but below the start's score
        "start wins": ([frame(890, 150, 110), frame(850, 10, 150), frame(885, 300, 115)], -1),
        # a trained pass within the slack with a better score than the start weights
        "trained wins": ([frame(890, 150, 110), frame(850, 10, 150), frame(890, 60, 110)], 1),
        # nothing keeps the recall: the best score of all (the publish gate judges it)
        "none keeps it": ([frame(700, 150, 300), frame(850, 10, 150), frame(600, 0, 400)], 0),
        # a tie with the start weights keeps the trained ones (a forced publish gets what was trained)
        "tie": ([frame(890, 150, 110), frame(890, 150, 110), frame(880, 300, 120)], 0),
    }
    for name, (passes, expected) in runs.items():
        queue = list(passes)
        keep = finetune._KeepBest(lambda model: [queue.pop(0)], before)
        model = torch.nn.Linear(1, 1)
        keep.start(model)
        for _ in passes[1:]:
            keep(model)
        keep.choose()
        assert keep.best_pass == expected, name
        assert keep.scores == [passes[expected + 1]], name
    assert pooled([frame(850, 10, 150)])[2] > pooled([frame(890, 60, 110)])[2]  # the refused pass scored best
