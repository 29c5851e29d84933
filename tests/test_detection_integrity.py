"""Stored predictions and model files stay what their rows say (issue 15): two detections racing on
one frame (also when the other's row lands between our check and our insert, on SQLite and PostgreSQL),
and a model file changed after it was registered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import event, func, insert, select

from correlnet.checkpoint import save_checkpoint
from db.files import sha256_file
from db.models import Film, Frame, ModelVersion, Prediction
from db.testing import temporary_store
from studio.corrections import save_correction
from studio.detection import _save_prediction, detect_film, latest_prediction, load_prediction, quantise_probs
from studio.versions import register_model_version
from tests.model_fixtures import tiny_model
from tests.test_jobs import make_film
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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    with temporary_store(tmp_path, url) as s:
        yield s


def _race_in(store, winner: dict):
    """Make the other run's prediction `winner` land after our check and before our insert. PostgreSQL
    (READ COMMITTED): inserted and committed from another connection just before our INSERT runs.
    SQLite cannot interleave so (BEGIN IMMEDIATE holds the write lock from the check to the insert):
    the row is committed first and our check is made blind to it, the same state at our INSERT.
    Returns the listener to remove."""
    fired: list[bool] = []
    if store.engine.dialect.name == "postgresql":
        def hook(conn, cursor, statement, params, context, executemany):
            if statement.startswith("INSERT INTO predictions") and not fired:
                fired.append(True)
                with store.engine.begin() as other:
                    other.execute(insert(Prediction).values(**winner))
            return statement, params
    else:
        with store.write() as s:
            s.execute(insert(Prediction).values(**winner))

        def hook(conn, cursor, statement, params, context, executemany):
            if statement.startswith("SELECT predictions.id") and not fired:
                fired.append(True)
                return statement + " AND 0 = 1", params
            return statement, params
    event.listen(store.engine, "before_cursor_execute", hook, retval=True)
    return hook, fired


def test_a_row_landing_between_the_check_and_the_insert_is_a_race_lost(store):
    film_id = make_film(store, frames=2)
    with store.write() as s:
        version = ModelVersion(path="/m.pt", sha256="0" * 64, arch="tiny", encoder=None, config={}, metrics={})
        s.add(version)
        s.flush()
        film, frame = s.get(Film, film_id), s.scalars(select(Frame).where(Frame.film_id == film_id,
                                                                          Frame.index == 0)).one()
    winner = dict(frame_id=frame.id, model_version_id=version.id, path="winner.png", sha256="1" * 64,
                  defect_pixels=3, uncertainty=0.25)
    hook, fired = _race_in(store, winner)
    try:
        _save_prediction(store, film, frame, version.id, np.full((H, W), 0.9, np.float32), set_uncertainty=True)
    finally:
        event.remove(store.engine, "before_cursor_execute", hook)
    assert fired == [True]
    with store.session() as s:
        rows = s.execute(select(Prediction.path, Prediction.sha256).where(Prediction.frame_id == frame.id)).all()
        assert [tuple(r) for r in rows] == [("winner.png", "1" * 64)]  # the other run's row stands
        assert s.get(Frame, frame.id).uncertainty is None  # ours was not copied to the frame either
    folder = store.data_dir / film.storage_dir / "predictions" / f"v{version.id}"
    assert list(folder.iterdir()) == []  # the file we wrote for the lost row is gone


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
