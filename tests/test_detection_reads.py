"""A detection of some frames (a worker's chunk) reads those frames' rows, their neighbours' and their
predictions, not the whole film's (issue 18 point 3: 130 000 rows a chunk at feature length), and stores
the predictions a whole-film run stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import event, select

import studio.detection as detection
from db.models import Film, Frame, ModelVersion, Prediction
from db.store import Store
from studio import versions
from studio.settings import Settings
from tests.model_fixtures import tiny_model
from tests.test_jobs import make_film
from tests.worker_fixtures import make_tiny_film


@pytest.fixture
def rows_only(tmp_path: Path, monkeypatch):
    """(store, film, version) of a 300-frame film of rows only (no files: frames are made up from their
    index) with frames 0-99 already predicted by `version` (rows only), and the tiny model to predict with."""
    store = Store.open(Settings(data_dir=tmp_path / "data"))
    film_id = make_film(store, frames=300)
    with store.write() as s:
        version = ModelVersion(path="/models/x.pt", sha256="0" * 64, arch="tiny", encoder=None, config={}, metrics={})
        s.add(version)
        s.flush()
        for frame in s.scalars(select(Frame).where(Frame.film_id == film_id, Frame.index < 100)):
            s.add(Prediction(frame_id=frame.id, model_version_id=version.id, path="p.png", sha256="0" * 64,
                             defect_pixels=0, uncertainty=0.5))
        film = s.get(Film, film_id)
    monkeypatch.setattr(detection, "frame_gray",
                        lambda store_, frame: np.random.default_rng(frame.index).random((48, 64), dtype=np.float32))
    torch.manual_seed(0)
    model = tiny_model("efficient-correlnet").eval()
    yield store, film, version, (lambda *_: model)
    store.close()


def test_a_chunk_reads_its_frames_their_neighbours_and_their_predictions_only(rows_only, monkeypatch):
    store, film, version, load = rows_only
    loaded: list[int] = []

    def count(frame: Frame, _context) -> None:
        loaded.append(frame.index)

    read_predictions, seen = detection._predicted_frame_ids, []

    def predicted(*args, **kwargs):
        seen.append(read_predictions(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(detection, "_predicted_frame_ids", predicted)
    event.listen(Frame, "load", count)
    try:  # frames 90-129, as a worker's chunk (studio.detection_jobs.run_chunk) asks
        result = detection.detect_film(store, film, version, device="cpu", frame_indices=range(90, 130), load=load)
    finally:
        event.remove(Frame, "load", count)
    assert (result.predicted, result.skipped) == (30, 10)  # frames 90-99 were predicted already
    assert sorted(loaded) == [89, *range(90, 130), 130]  # the chunk and the neighbours of its ends, once each
    with store.session() as s:
        index_of = dict(s.execute(select(Frame.id, Frame.index).where(Frame.film_id == film.id)).all())
        stored = sorted(index_of[i] for i in s.scalars(select(Prediction.frame_id).where(Prediction.path != "p.png")))
    assert [sorted(index_of[i] for i in ids) for ids in seen] == [list(range(90, 100))]  # none outside the chunk
    assert stored == list(range(100, 130))


def test_frames_around_reads_the_frames_asked_for_and_their_neighbours(rows_only):
    from studio.frame_queries import frames_around

    store, film, _, _ = rows_only
    with store.write() as s:  # frame 11 is a duplicate: its next neighbour skips 12
        s.execute(Frame.__table__.update().where(Frame.film_id == film.id, Frame.index == 11).values(next_index=13))
    assert sorted(frames_around(store, film, [11, 10, 11])) == [9, 10, 11, 13]
    assert sorted(frames_around(store, film, [0, 299, 150])) == [0, 1, 149, 150, 151, 298, 299]  # scattered
    assert sorted(frames_around(store, film, range(5, 8))) == list(range(4, 9))
    assert frames_around(store, film, [400]) == {} and frames_around(store, film, []) == {}
    assert all(f.film_id == film.id and f.index == i for i, f in frames_around(store, film, range(300)).items())


def test_a_detection_in_chunks_stores_what_a_whole_film_run_stores(tmp_path: Path):
    """The reference: one run over the whole film (every row read, as before); the same film and model
    predicted chunk by chunk, out of order, gives the same stored predictions frame for frame."""
    whole = make_tiny_film(tmp_path / "whole", corrected=())
    chunked = make_tiny_film(tmp_path / "chunked", corrected=())
    registered = [versions.register_model_version(tf.store, tf.model_path) for tf in (whole, chunked)]
    assert detection.detect_film(whole.store, whole.film, registered[0], device="cpu").predicted == whole.film.frame_count
    for chunk in ([3, 4, 5], range(0, 3), [6, 7]):
        detection.detect_film(chunked.store, chunked.film, registered[1], device="cpu", frame_indices=chunk)
    stored = []
    for tf in (whole, chunked):
        with tf.store.session() as s:
            rows = s.execute(select(Frame.index, Frame.uncertainty, Prediction).join(
                Prediction, Prediction.frame_id == Frame.id).order_by(Frame.index)).all()
        stored.append([(i, u, detection.load_prediction(tf.store, p)) for i, u, p in rows])
    assert [r[:2] for r in stored[0]] == [r[:2] for r in stored[1]] and len(stored[0]) == whole.film.frame_count
    for (_, _, a), (_, _, b) in zip(*stored):
        np.testing.assert_array_equal(a, b)
