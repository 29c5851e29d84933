"""Fine-tuning: the fixed validation split, the crops, and the publish-only-if-F1-holds rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select

from db.models import Film, Frame, ModelVersion
from studio import finetune, jobs
from studio.corrections import save_correction
from studio.finetune import CorrectionCrops, FinetuneConfig, assign_validation, run_finetune
from tests.worker_fixtures import make_tiny_film


def validation_indices(store, film_id: int) -> set[int]:
    with store.session() as s:
        return set(s.execute(select(Frame.index).where(Frame.film_id == film_id, Frame.is_validation)).scalars())


def test_validation_split_is_fixed_and_new_frames_are_assigned_once(tmp_path: Path) -> None:
    tf = make_tiny_film(tmp_path, corrected=(0, 1, 2))
    train, val = assign_validation(tf.store, tf.film.id, fraction=0.2)
    assert len(val) >= 1 and len(train) + len(val) == 3
    first = validation_indices(tf.store, tf.film.id)
    assert {f.index for f in val} == first
    # a second call (the next retrain) keeps the split; with more corrections it only grows
    assign_validation(tf.store, tf.film.id, fraction=0.2)
    assert validation_indices(tf.store, tf.film.id) == first
    for i in (3, 4, 5, 6, 7):
        save_correction(tf.store, tf.frames[i].id, tf.masks[i], author="test")
    train2, val2 = assign_validation(tf.store, tf.film.id, fraction=0.2)
    assert first <= {f.index for f in val2}
    assert {f.index for f in train2}.isdisjoint(first)
    # the side of a newly corrected frame is a pure function of (film, index): same as a fresh store
    fresh = make_tiny_film(tmp_path / "again", corrected=(0, 1, 2, 3, 4, 5, 6, 7))
    with fresh.store.write() as s:  # same film id in a fresh store
        assert s.get(Film, fresh.film.id).id == tf.film.id
    _, val3 = assign_validation(fresh.store, fresh.film.id, fraction=0.2)
    hashed = {i for i in range(8) if finetune._hash_unit(tf.film.id, i) < 0.2}
    assert hashed <= {f.index for f in val3} and hashed <= {f.index for f in val2}


def test_crops_are_centred_on_defects_and_deterministic() -> None:
    rng = np.random.default_rng(1)
    h, w = 200, 300
    triplet = rng.random((3, h, w)).astype(np.float32)
    mask = np.zeros((h, w), bool)
    mask[150:154, 250:254] = True  # one small defect far from the centre
    cfg = FinetuneConfig(crop=64, defect_crop_fraction=1.0)
    crops = CorrectionCrops([triplet], [mask], length=20, cfg=cfg)
    for i in range(20):
        item = crops[i]
        assert item["frames"].shape == (3, 64, 64) and item["mask"].shape == (1, 64, 64)
        assert item["mask"].sum() == 16  # the whole defect lies inside every defect-centred crop
        assert torch.equal(item["frames"], crops[i]["frames"])
    uniform = CorrectionCrops([triplet], [mask], length=200, cfg=FinetuneConfig(crop=64, defect_crop_fraction=0.0))
    hits = sum(bool(uniform[i]["mask"].any()) for i in range(200))
    assert hits < 60  # uniform crops mostly miss a defect covering 0.03% of the frame


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        FinetuneConfig(validation_fraction=1.0)
    with pytest.raises(ValueError):
        FinetuneConfig(steps=0)
    assert FinetuneConfig().lr == 1e-6 and FinetuneConfig.cpu().lr == 1e-4
    assert FinetuneConfig.for_device(torch.device("cpu")) == FinetuneConfig.cpu()


def test_too_few_corrections_is_a_readable_error(tmp_path: Path) -> None:
    tf = make_tiny_film(tmp_path, corrected=(3,))
    job = jobs.queue_training(tf.store, tf.film.id)
    with pytest.raises(finetune.FinetuneDataError, match="at least 2"):
        run_finetune(tf.store, job, torch.device("cpu"), FinetuneConfig.cpu(steps=2, crop=32),
                     lambda **kw: False, tf.model_path)


@pytest.mark.parametrize("force", [False, True])
def test_publishes_only_when_validation_f1_holds(tmp_path: Path, monkeypatch, force: bool) -> None:
    tf = make_tiny_film(tmp_path)
    scores = iter([0.8, 0.5, 0.5])  # before training, after training (train's val_fn), spare
    monkeypatch.setattr(finetune, "validation_f1", lambda *a, **k: next(scores))
    job = jobs.queue_training(tf.store, tf.film.id, force=force)
    calls = []
    outcome = run_finetune(tf.store, job, torch.device("cpu"), FinetuneConfig.cpu(steps=2, batch_size=2, crop=32),
                           lambda **kw: calls.append(kw) or False, tf.model_path)
    assert (outcome.f1_before, outcome.f1_after) == (0.8, 0.5)
    assert calls[0]["step"] == 0 and calls[0]["val_f1"] == 0.8 and calls[-1]["step"] == 2
    with tf.store.session() as s:
        film_versions = s.execute(select(ModelVersion).where(ModelVersion.film_id == tf.film.id)).scalars().all()
        active = s.get(Film, tf.film.id).active_model_version_id
    if force:
        assert outcome.published is not None and active == outcome.published.id
        assert [v.id for v in film_versions] == [outcome.published.id]
    else:
        assert outcome.published is None and "not published" in outcome.message and "0.800 -> 0.500" in outcome.message
        assert film_versions == [] and active is None
        assert not (tf.store.data_dir / "models").exists()  # no model file either
