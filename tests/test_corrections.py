"""Corrections are an append-only history: save, current mask, undo, accept, reset, two writers."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from db.engine import make_engine
from db.files import sha256_file
from db.models import ModelVersion, Prediction
from db.store import Store
from db.testing import temporary_store
from studio.corrections import (
    NothingToUndo,
    accept_prediction,
    current_mask,
    history,
    load_correction,
    reset_to_prediction,
    save_correction,
    undo,
)
from studio.detection import _save_prediction, latest_prediction, load_prediction
from studio.films import film_frames, import_film

import cv2

H, W = 12, 16


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    with temporary_store(tmp_path / "data", url) as s:
        yield s


def make_film(store: Store, tmp_path, with_prediction=True):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"f{i}.png"), rng.integers(0, 256, (H, W), dtype=np.uint8))
    film = import_film(store, src)
    frame = film_frames(store, film)[1]
    probs = np.zeros((H, W), np.float32)
    probs[2:5, 3:9] = 0.9
    probs[8, 8] = 0.51  # stored as 130/255 >= 0.5: a defect
    probs[9, 9] = 0.49  # stored as 125/255: not one
    if with_prediction:
        with store.write() as s:
            version = ModelVersion(path="/m.pt", sha256="0" * 64, arch="efficient-correlnet", encoder=None)
            s.add(version)
        _save_prediction(store, film, frame, version.id, probs, set_uncertainty=True)
    return film, frame, probs >= 0.5


def mask_with(*boxes) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    for y0, y1, x0, x1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


def snapshot(store: Store, frame_id: int) -> list[tuple]:
    return [(c.id, c.path, c.sha256, c.parent_id, c.kind, c.author) for c in history(store, frame_id)]


def test_save_and_current_mask(store, tmp_path):
    film, frame, proposal = make_film(store, tmp_path)
    assert current_mask(store, frame.id) is None
    prediction = latest_prediction(store, frame.id)
    pred_sha = sha256_file(store.path(prediction.path))
    edited = proposal.copy()
    edited[0:2, 0:2] = True  # adds 4 pixels to the 19 proposed
    row = save_correction(store, frame.id, edited.astype(np.uint8) * 255, "ana")
    assert np.array_equal(current_mask(store, frame.id), edited)
    assert row.kind == "edit" and row.parent_id is None and row.prediction_id == prediction.id
    assert row.defect_pixels == 23 and row.dice_vs_prediction == pytest.approx(2 * 19 / (19 + 23))
    # The proposal is untouched and still loads as the model gave it.
    assert sha256_file(store.path(prediction.path)) == pred_sha
    assert np.array_equal(load_prediction(store, prediction) >= 0.5, proposal)


def test_undo_walks_back_to_the_proposal(store, tmp_path):
    film, frame, proposal = make_film(store, tmp_path)
    a, b, c = mask_with((0, 2, 0, 2)), mask_with((3, 6, 3, 6)), mask_with((8, 12, 0, 4))
    for m in (a, b, c):
        save_correction(store, frame.id, m, "ana")
    before = snapshot(store, frame.id)
    expected = [b, a, proposal]
    kinds = ["undo", "undo", "reset"]
    for mask, kind in zip(expected, kinds):
        row = undo(store, frame.id, "ben")
        assert row.kind == kind and np.array_equal(current_mask(store, frame.id), mask)
    with pytest.raises(NothingToUndo):
        undo(store, frame.id, "ben")
    rows = snapshot(store, frame.id)
    assert rows[:3] == before  # earlier rows never change
    assert len(rows) == 6 and [r[4] for r in rows] == ["edit", "edit", "edit", "undo", "undo", "reset"]


def test_accept_and_reset(store, tmp_path):
    film, frame, proposal = make_film(store, tmp_path)
    accepted = accept_prediction(store, frame.id, "ana")
    assert accepted.kind == "accept" and accepted.dice_vs_prediction == 1.0
    assert np.array_equal(load_correction(store, accepted), proposal)
    edit = mask_with((0, 3, 0, 3))
    save_correction(store, frame.id, edit, "ana")
    reset = reset_to_prediction(store, frame.id, "ana")
    assert reset.kind == "reset" and np.array_equal(current_mask(store, frame.id), proposal)
    undo(store, frame.id, "ana")  # undoing the reset brings the edit back
    assert np.array_equal(current_mask(store, frame.id), edit)


def test_bad_input_and_missing_prediction(store, tmp_path):
    film, frame, _ = make_film(store, tmp_path, with_prediction=False)
    with pytest.raises(ValueError, match=r"\(12, 16\)"):
        save_correction(store, frame.id, np.zeros((H + 1, W), bool), "ana")
    with pytest.raises(ValueError, match="author"):
        save_correction(store, frame.id, np.zeros((H, W), bool), "")
    with pytest.raises(ValueError, match="kind"):
        save_correction(store, frame.id, np.zeros((H, W), bool), "ana", kind="delete")
    with pytest.raises(LookupError, match="no prediction"):
        accept_prediction(store, frame.id, "ana")
    with pytest.raises(NothingToUndo):
        undo(store, frame.id, "ana")
    row = save_correction(store, frame.id, mask_with((1, 2, 1, 2)), "ana")
    assert row.dice_vs_prediction is None and row.prediction_id is None
    with pytest.raises(NothingToUndo):  # before the first edit there was nothing to restore
        undo(store, frame.id, "ana")
    assert len(history(store, frame.id)) == 1


def test_two_writers_both_kept_latest_wins(store, tmp_path):
    film, frame, _ = make_film(store, tmp_path)
    # A second writer with its own engine and connections, as another process would have.
    other = Store(make_engine(store.engine.url.render_as_string(hide_password=False)), store.data_dir)
    masks = {"ana": mask_with((0, 4, 0, 4)), "ben": mask_with((6, 10, 6, 10))}
    errors: list[BaseException] = []

    def writer(author: str, target: Store) -> None:
        try:
            for _ in range(4):
                save_correction(target, frame.id, masks[author], author)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=("ana", store)), threading.Thread(target=writer, args=("ben", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    rows = history(store, frame.id)
    assert len(rows) == 8 and sorted(r.author for r in rows).count("ana") == 4
    # Each save replaced exactly the row before it: one linear chain, nothing lost or forked.
    assert [r.parent_id for r in rows] == [None] + [r.id for r in rows[:-1]]
    assert np.array_equal(current_mask(store, frame.id), masks[rows[-1].author])
    with store.session() as s:
        assert s.query(Prediction).count() == 1
    other.close()
