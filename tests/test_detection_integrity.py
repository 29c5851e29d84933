"""Stored predictions and model files stay what their rows say (issue 15): two detections racing on
one frame, and a model file changed after it was registered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import func, select

from correlnet.checkpoint import save_checkpoint
from db.files import sha256_file
from db.models import Prediction
from studio.corrections import save_correction
from studio.detection import (_save_prediction, detect_film, latest_prediction, load_prediction, quantise_probs,
                              register_model_version)
from tests.model_fixtures import tiny_model
from tests.worker_fixtures import H, W, make_tiny_film


def prediction_files(tf, version_id: int) -> list[Path]:
    return sorted((tf.store.data_dir / tf.film.storage_dir / "predictions" / f"v{version_id}").iterdir())


def test_the_loser_of_a_detection_race_leaves_the_winners_file_intact(tmp_path):
    tf = make_tiny_film(tmp_path, corrected=())
    version = register_model_version(tf.store, tf.model_path)
    frame = tf.frames[0]
    rng = np.random.default_rng(0)
    winner, loser = rng.random((H, W)).astype(np.float32), rng.random((H, W)).astype(np.float32)  # e.g. GPU vs CPU
    _save_prediction(tf.store, tf.film, frame, version.id, winner, set_uncertainty=True)
    # The other run wrote its file after the winner's row landed, then found that row.
    _save_prediction(tf.store, tf.film, frame, version.id, loser, set_uncertainty=True)
    row = latest_prediction(tf.store, frame.id)
    assert sha256_file(tf.store.path(row.path)) == row.sha256
    np.testing.assert_array_equal(load_prediction(tf.store, row), quantise_probs(winner) / np.float32(255.0))
    assert prediction_files(tf, version.id) == [tf.store.path(row.path)]  # the loser's file is gone
    save_correction(tf.store, frame.id, np.zeros((H, W), bool), author="test")  # reads the proposal: no error


def test_a_model_file_changed_after_registration_is_refused(tmp_path):
    tf = make_tiny_film(tmp_path, corrected=())
    version = register_model_version(tf.store, tf.model_path)
    torch.manual_seed(1)
    save_checkpoint(tf.model_path, tiny_model("efficient-correlnet"))  # replaced in place
    with pytest.raises(ValueError, match="checksum mismatch") as info:
        detect_film(tf.store, tf.film, version, device="cpu")
    assert str(tf.model_path) in str(info.value) and f"model version {version.id}" in str(info.value)
    with tf.store.session() as s:
        assert s.execute(select(func.count()).select_from(Prediction)).scalar() == 0
